"""The shopper's order-status page as Chromium shows it, opened from the link an email
of the real dev stack carried (``notifier dev``, the demo published with ``notifier
emit``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import SCREENSHOTS, ConsoleWatch
from tests.browser.stack import DevStack

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.asyncio(loop_scope="session")
#: the link every message carries: the page, with its signed token
TRACK_LINK = re.compile(r"https?://[^\s\"'<>]+/track/[^\s\"'<>?]+\?t=[0-9a-f]+\.[A-Za-z0-9_-]+")
#: a phone's screen
PHONE = {"width": 390, "height": 844}


async def _delivered_order_link(dev: DevStack) -> tuple[str, str]:
    """(order id, the tracking link of its delivery email)."""
    orders = await dev.emit_demo(1)
    [order] = orders
    emails = await dev.wait_for_emails(
        lambda found: any(order in e["subject"] and "deliver" in e["subject"].lower()
                          for e in found),
        timeout=60,
    )  # fmt: skip
    delivered = next(
        e for e in emails if order in e["subject"] and "deliver" in e["subject"].lower()
    )
    match = TRACK_LINK.search(delivered["text"])
    assert match, "the delivery email carries the order-status link"
    return order, match.group(0)


async def test_the_tracking_page_from_an_email_shows_the_orders_timeline(
    dev: DevStack, page: Page
) -> None:
    order, link = await _delivered_order_link(dev)
    await page.set_viewport_size(PHONE)

    answer = await page.goto(link)

    assert answer is not None and answer.status == 200
    await page.locator("h1").wait_for()
    assert order in await page.locator("h1").inner_text()
    steps = page.locator("ol.timeline > li")
    # the demo's order went placed → … → shipped → out for delivery → delivered
    assert await steps.count() >= 4
    newest = await steps.first.locator(".what").inner_text()
    assert "delivered" in newest.lower()
    assert await steps.first.locator("time").get_attribute("datetime")
    parcel = page.locator("article.card").first
    assert await parcel.locator("dd").count() >= 2, "carrier and tracking number are shown"
    # one column on a phone: nothing is wider than the screen
    for box in [await el.bounding_box() for el in await page.locator("main *").all()]:
        if box is not None:
            assert box["x"] + box["width"] <= PHONE["width"] + 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "track-page-phone.png", full_page=True)


async def test_a_tampered_tracking_link_shows_nothing_of_the_order(
    dev: DevStack, page: Page, console: ConsoleWatch
) -> None:
    console.allow(r"status of 403")
    order, link = await _delivered_order_link(dev)
    base, _, token = link.partition("?t=")
    tampered = f"{base}?t={token[:-2]}{'AA' if not token.endswith('AA') else 'BB'}"

    answer = await page.goto(tampered)

    assert answer is not None and answer.status == 403
    assert order not in await page.locator("body").inner_text()
    assert await page.locator("ol.timeline").count() == 0
