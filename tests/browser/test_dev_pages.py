"""``notifier dev``'s pages as a newcomer's browser shows them, against the real dev
stack (``notifier dev`` as a subprocess, the demo published with ``notifier emit``)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from notifier.devtools.demo import DEMO_CUSTOMER_IDS
from notifier.devtools.feedpage import STREAM_ROUTE
from tests.browser.conftest import SCREENSHOTS
from tests.browser.stack import DevStack

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.asyncio(loop_scope="session")
#: the demo's three orders (delivered, cancelled, delivered): each sends email
DEMO_ORDERS = 3
#: the demo's two shops (notifier/devtools/demo-stores.yaml)
DEMO_SHOPS = {"Analytical Coffee Co.", "Boutique Érable"}


async def _outbox(dev: DevStack) -> tuple[Any, ...]:
    return tuple([await dev.get_json(f"/dev/outbox{kind}") for kind in ("", "/sms", "/push")])


async def _load_a_still_outbox(dev: DevStack, page: Page) -> tuple[Any, ...]:
    """Load the page between two equal snapshots of what was caught, so the page shows
    exactly that snapshot even if the demo is still sending."""
    for _ in range(20):
        before = await _outbox(dev)
        await page.goto(dev.url("/dev/outbox"))
        if await _outbox(dev) == before:
            return before
        await asyncio.sleep(0.5)
    raise AssertionError("the outbox kept changing while the page loaded")


async def test_the_outbox_page_lists_the_demo_emails_each_rendered_in_a_sandboxed_iframe(
    dev: DevStack, page: Page
) -> None:
    orders = await dev.emit_demo(DEMO_ORDERS)
    await dev.wait_for_emails(
        lambda emails: all(any(o in e["subject"] for e in emails) for o in orders), timeout=60
    )

    emails, sms, pushes = await _load_a_still_outbox(dev, page)

    assert sms and pushes, "the demo customers have phones and devices"
    articles = page.locator("article.email")
    assert await articles.count() == len(emails)
    shown = await articles.locator("h3").all_inner_texts()
    assert shown == [e["subject"] for e in reversed(emails)], "newest first"
    assert await page.locator("article.sms").count() == len(sms)
    assert await page.locator("article.push").count() == len(pushes)
    newest = emails[-1]
    first = articles.first
    assert newest["rcpt_tos"][0] in await first.locator("dl").inner_text()

    frame_element = first.locator("iframe")
    assert await frame_element.get_attribute("sandbox") == ""
    srcdoc = await frame_element.get_attribute("srcdoc") or ""
    assert srcdoc.replace("\r\n", "\n") == newest["html"].replace("\r\n", "\n")
    frame = await (await frame_element.element_handle()).content_frame()
    assert frame is not None
    await frame.wait_for_load_state()
    rendered = await frame.locator("body").inner_text()
    # the newest may be an alert order's (``DEMO-STUCK-…``) as well as a lifecycle one's
    named = re.search(r"DEMO-[A-Z0-9]+-[0-9a-f]{6}", newest["subject"])
    assert named, newest["subject"]
    order = named.group(0)
    assert order in rendered
    # the email's own markup, not its source text, reached the screen
    assert "<" not in rendered and "{{" not in rendered
    # branded: the shop's logo (an inlined image) drawn in its header, its footer
    logo = frame.locator("img").first
    shop = await logo.get_attribute("alt")
    assert shop in DEMO_SHOPS
    assert await logo.evaluate("image => image.complete && image.naturalWidth > 0")
    assert shop in rendered, "the footer names the shop"
    assert "View your order" in rendered
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await frame_element.screenshot(path=SCREENSHOTS / "outbox-email-in-sandboxed-iframe.png")

    # the in-app items the demo's orders made, each naming its customer's live feed
    inapp = page.locator("#inapp article.inapp")
    deadline = time.monotonic() + 30
    while True:
        shown = "\n".join(await inapp.all_inner_texts())
        if all(o in shown for o in orders) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
        await page.reload()
    assert all(o in shown for o in orders), shown
    customers = {quote(c, safe="") for c in DEMO_CUSTOMER_IDS}
    for link in await inapp.locator("a[href^='/dev/feed/']").all():
        href = await link.get_attribute("href") or ""
        assert href.removeprefix("/dev/feed/") in customers
        assert href.endswith(quote(await link.inner_text(), safe=""))
    await inapp.first.locator("a").click()
    await page.wait_for_url("**/dev/feed/demo-customer-*")


async def test_the_dev_stack_keeps_a_feed_and_a_track_secret_for_tokens(dev: DevStack) -> None:
    kept = {field: dev.secret(field) for field in ("feed_secret", "track_secret")}
    assert all(kept.values()) and kept["feed_secret"] != kept["track_secret"]


async def test_the_same_route_still_answers_json_to_a_script(dev: DevStack, page: Page) -> None:
    answer = await page.request.get(dev.url("/dev/outbox?format=json"))
    assert answer.ok
    assert answer.headers["content-type"].startswith("application/json")
    assert isinstance(await answer.json(), list)


async def test_the_feed_page_loads_and_says_what_it_can_show(dev: DevStack, page: Page) -> None:
    from playwright.async_api import expect

    customer = f"nobody <yet> {time.monotonic_ns()}"
    assert STREAM_ROUTE in (await dev.get_json("/openapi.json"))["paths"]

    await page.goto(dev.url(f"/dev/feed/{quote(customer, safe='')}"))

    assert await page.locator("main code").first.inner_text() == customer, "shown as text"
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    assert await page.locator("#empty").is_visible()
    assert await page.locator("#items li").count() == 0
    assert await page.locator("#unread").inner_text() == "0"


def _event(customer: str, order: str, state: str, seq: int) -> dict[str, Any]:
    return {
        "event_id": f"{order}-{seq}",
        "order_id": order,
        "source": "browser-test",
        "state": state,
        "occurred_at": f"2026-11-30T10:0{seq}:00+00:00",
        "customer": {"id": customer, "name": "Ada Lovelace", "locale": "en"},
    }


async def test_a_new_feed_item_appears_live_on_the_dev_feed_page(dev: DevStack, page: Page) -> None:
    from playwright.async_api import expect

    customer = f"live-{time.monotonic_ns()}"
    order = f"LIVE-{time.monotonic_ns()}"
    await page.goto(dev.url(f"/dev/feed/{customer}"))
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    items = page.locator("#items li")
    assert await items.count() == 0

    # the page is not reloaded: each item arrives over the stream
    await dev.emit_events([_event(customer, order, "placed", 1)])
    await expect(items).to_have_count(1, timeout=20_000)
    assert order in await items.first.inner_text()
    await dev.emit_events([_event(customer, order, "cancelled", 2)])
    await expect(items).to_have_count(2, timeout=20_000)
    assert "cancel" in (await items.first.inner_text()).lower(), "newest first"
    assert await page.locator("#unread").inner_text() == "2"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "dev-feed-live.png", full_page=True)
