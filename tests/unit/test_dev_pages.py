"""``notifier dev``'s pages and defaults without a browser: which clients get a page and
which the JSON, what the outbox page escapes, the feed page's token, the dev secrets
and the demo shops (the pages in Chromium: ``tests/browser``)."""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
import yaml
from fastapi import FastAPI, Request, Response

from notifier import signing
from notifier.config import Settings
from notifier.contracts.feed import FeedItem
from notifier.devtools.demo import demo_events
from notifier.devtools.devdefaults import (
    DEMO_STORES_FILE,
    SECRETS_FILE,
    dev_defaults,
    dev_secrets,
)
from notifier.devtools.devpages import page
from notifier.devtools.feedpage import STREAM_ROUTE, feed_page_router
from notifier.devtools.mailcatcher import CaughtMessage, MailCatcher, outbox_router
from notifier.devtools.outboxpage import outbox_body

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _caught(subject: str, html: str | None, to: str = "ada@example.org") -> CaughtMessage:
    return CaughtMessage(
        message_id=f"<{subject[:8]}@shop.example>", mail_from="orders@shop.example",
        rcpt_tos=[to], subject=subject, text="plain & simple", html=html,
        received_at="2026-11-30T10:00:00+00:00",
        headers={"From": "Acme Outdoor <orders@acme.example>"},
    )  # fmt: skip


def _feed_item(item_id: str, customer: str, title: str) -> FeedItem:
    return FeedItem(
        seq=1, id=item_id, customer_id=customer, title=title, body=f"<p>body of {item_id}",
        link="https://shop.example/track/O-1?t=x", template="delivered", order_id="O-1",
        created_at=datetime(2026, 11, 30, 10, tzinfo=UTC), read=False,
    )  # fmt: skip


class _Attributes(HTMLParser):
    """Every element's attributes, decoded as a browser decodes them."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def _tags(document: str, tag: str) -> list[dict[str, str | None]]:
    parser = _Attributes()
    parser.feed(document)
    return [attrs for name, attrs in parser.found if name == tag]


@pytest.mark.parametrize(
    ("accept", "query", "gets"),
    [
        ("", "", "json"),
        ("*/*", "", "json"),
        ("application/json", "", "json"),
        ("application/json, text/html", "", "json"),
        (BROWSER_ACCEPT, "", "html"),
        ("text/html", "", "html"),
        (BROWSER_ACCEPT, "?format=json", "json"),
        ("application/json", "?format=html", "html"),
        ("*/*", "?format=html", "html"),
    ],
)
async def test_a_browser_gets_the_page_and_everyone_else_the_json(
    accept: str, query: str, gets: str
) -> None:
    catcher = MailCatcher()
    app = FastAPI()

    async def the_page(request: Request) -> Response:
        return page("outbox", f"<p>the page for {request.url.path}</p>")

    app.include_router(outbox_router(catcher, page=the_page))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as c:
        answer = await c.get(f"/dev/outbox{query}", headers={"Accept": accept})

    assert answer.status_code == 200
    if gets == "json":
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == []
    else:
        assert answer.headers["content-type"].startswith("text/html")
        assert "<p>the page for /dev/outbox</p>" in answer.text


async def test_without_a_page_and_with_a_bad_format_the_route_stays_as_it_was() -> None:
    app = FastAPI()
    app.include_router(outbox_router(MailCatcher()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as c:
        plain = await c.get("/dev/outbox", headers={"Accept": BROWSER_ACCEPT})
        bad = await c.get("/dev/outbox?format=xml")

    assert plain.json() == []
    assert bad.status_code == 422


def test_the_outbox_page_shows_each_email_in_a_sandboxed_iframe_and_escapes_the_rest() -> None:
    html = '<p class="x">Hi "Ada" &amp; <b>friends</b></p><script>alert(1)</script>'
    emails = [
        _caught("first <script>alert('s')</script>", html),
        _caught("second, text only", None, to="bob@example.org"),
    ]
    sms = [{"to": "+14155550100", "from": "ACME", "body": "<b>shipped</b>", "received_at": "t"}]
    pushes = [{"title": "Shipped", "body": "on its way", "token": "tok", "data": {"k": "<v>"}}]

    inapp = [_feed_item("n-2", "ada", "<b>Delivered</b>"), _feed_item("n-1", "x/y z", "Shipped")]

    body = outbox_body(emails, sms, pushes, inapp=inapp, feed_customers=["demo customer/1"])

    frames = _tags(body, "iframe")
    assert len(frames) == 1, "the text-only email is shown as text"
    assert frames[0]["sandbox"] == "", "no allow-* at all: no script, no same origin"
    assert frames[0]["srcdoc"] == html, "the document survives the attribute intact"
    assert "<script>alert(" not in body.replace(frames[0]["srcdoc"] or "", "")
    assert "first &lt;script&gt;" in body
    assert "plain &amp; simple" in body
    assert "&lt;b&gt;shipped&lt;/b&gt;" in body and "&lt;v&gt;" in body
    assert "Acme Outdoor &lt;orders@acme.example&gt;" in body, "the From header, not the envelope"
    titles = re.findall(r"<h3>(.*?)</h3>", body)
    assert titles[0].startswith("second"), "newest first"
    assert [a["href"] for a in _tags(body, "a")][-1] == "/dev/feed/demo%20customer%2F1"
    assert re.search(
        r"Emails \(2\).*SMS \(1\).*Push notifications \(1\).*In-app feed items \(2\)", body
    )
    items = _tags(body, "article")
    assert [a["data-item-id"] for a in items if a["class"] == "inapp"] == ["n-2", "n-1"]
    assert "&lt;b&gt;Delivered&lt;/b&gt;" in body and "&lt;p&gt;body of n-2" in body
    hrefs = [a["href"] for a in _tags(body, "a")]
    assert hrefs.index("/dev/feed/ada") < hrefs.index("/dev/feed/x%2Fy%20z"), "each links its feed"


def test_an_empty_outbox_says_how_to_fill_it() -> None:
    assert outbox_body([], [], []).count("notifier emit --demo") == 4


def test_a_page_allows_only_its_own_inline_script() -> None:
    response = page("t", "<p>x</p>", script="console.log(1)")
    policy = response.headers["Content-Security-Policy"]
    [nonce] = re.findall(r"'nonce-([^']+)'", policy)
    assert f'<script nonce="{nonce}">console.log(1)</script>' in bytes(response.body).decode()
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


async def _feed_page(settings: object, customer: str, *, with_api: bool) -> httpx.Response:
    app = FastAPI()
    app.include_router(feed_page_router(cast(Settings, settings)))
    if with_api:
        app.add_api_route(STREAM_ROUTE, lambda customer_id: Response(), methods=["GET"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as c:
        return await c.get(f"/dev/feed/{customer}")


async def test_the_feed_page_says_when_this_build_has_no_feed_api() -> None:
    answer = await _feed_page(SimpleNamespace(feed_secret="s"), "c-1", with_api=False)
    assert answer.status_code == 200
    assert 'data-state="unavailable"' in answer.text
    assert STREAM_ROUTE in answer.text
    assert "<script" not in answer.text, "nothing that could only fail"


async def test_the_feed_page_says_when_no_feed_secret_is_set() -> None:
    answer = await _feed_page(SimpleNamespace(), "c-1", with_api=True)
    assert "NOTIFIER_FEED_SECRET is not set" in answer.text


async def test_the_feed_page_holds_a_token_for_that_customer_only() -> None:
    customer = 'o"brien<1>'
    answer = await _feed_page(SimpleNamespace(feed_secret="dev-s"), customer, with_api=True)

    [main] = _tags(answer.text, "main")
    assert main["data-customer"] == customer
    token = main["data-token"] or ""
    assert signing.check("dev-s", "feed", customer, token) is None
    assert signing.check("dev-s", "feed", "someone-else", token) is not None
    assert signing.check("dev-s", "track", customer, token) is not None
    assert 'new EventSource(base + "/stream?" + auth)' in answer.text


def test_dev_secrets_are_made_once_kept_private_and_survive_a_restart(tmp_path: Path) -> None:
    first = dev_secrets(tmp_path)
    again = dev_secrets(tmp_path)

    assert first == again
    assert set(first) == {"feed_secret", "track_secret"}
    assert first["feed_secret"] != first["track_secret"]
    assert len(first["feed_secret"]) >= 40
    assert stat.S_IMODE((tmp_path / SECRETS_FILE).stat().st_mode) == 0o600


def test_a_damaged_secrets_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / SECRETS_FILE).write_text('["not", "an object"]')
    made = dev_secrets(tmp_path)
    assert json.loads((tmp_path / SECRETS_FILE).read_text()) == made


def test_dev_defaults_yield_to_the_environment_and_to_what_this_build_knows(
    tmp_path: Path,
) -> None:
    base = "http://127.0.0.1:8080"
    defaults = dev_defaults(tmp_path, base, environ={})
    user_set = dev_defaults(tmp_path, base, environ={"NOTIFIER_PUBLIC_BASE_URL": "https://x"})

    assert set(defaults) <= set(Settings.model_fields), "never a setting this build lacks"
    assert defaults["public_base_url"] == base
    assert "public_base_url" not in user_set
    for field in ("feed_secret", "track_secret", "stores_file"):
        assert (field in defaults) == (field in Settings.model_fields)
    Settings(**defaults)  # type: ignore[arg-type]


def test_the_demo_has_two_shops_with_their_own_branding_and_no_external_assets() -> None:
    stores: dict[str, dict[str, Any]] = yaml.safe_load(DEMO_STORES_FILE.read_text())["stores"]

    assert len(stores) == 2
    for field in ("name", "email_from", "brand_color", "logo_url"):
        assert len({store[field] for store in stores.values()}) == 2, field
    for store in stores.values():
        assert str(store["logo_url"]).startswith("data:image/")
        assert re.fullmatch(r"#[0-9a-f]{6}", store["brand_color"])
        assert re.fullmatch(r"[A-Za-z0-9 ]{1,11}", store["sms_sender"])
    used = {event["attributes"]["store_id"] for event in demo_events(3)}
    assert used == set(stores), "the demo sends for both shops"
