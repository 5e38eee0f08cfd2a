"""The shopper's order-status page, opened from the link in the email and SMS it was
sent: real NATS, real SMTP (aiosmtpd), the Twilio fake, SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from httpx import AsyncClient, Response

from notifier import signing
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.twiliofake import TwilioFake
from tests.integration.helpers import (
    T0,
    channel_settings,
    event,
    order,
    publish,
    running,
    settings_for,
)
from tests.support import wait_until

SECRET = "track-secret-0123456789abcdef"
#: the httpx client's base URL (ASGI transport): links point back at the app under test
BASE = "http://t"
LINK = re.compile(r"http://t/track/[^\s\"<>]+")
DELIVERY = "2026-11-22T16:00:00+00:00"
FORBIDDEN = "This link does not work"


def _settings(nats: NatsServer, database_url: str, mail: MailCatcher, **extra: Any) -> Any:
    return settings_for(
        nats.url,
        database_url,
        mail.port,
        public_base_url=BASE,
        track_secret=SECRET,
        **extra,
    )


def _shipment(**extra: Any) -> dict[str, Any]:
    return {
        "id": "p1",
        "carrier": "DHL",
        "tracking_number": "JD0001",
        "tracking_url": "https://track.example.com/JD0001",
        "estimated_delivery": DELIVERY,
        **extra,
    }


def _journey(order_id: str, **customer: Any) -> list[dict[str, Any]]:
    return [
        event(order_id, "placed", 0, **customer),
        event(order_id, "confirmed", 1, **customer),
        event(order_id, "shipped", 60, shipment=_shipment(), **customer),
        event(order_id, "out_for_delivery", 120, shipment=_shipment(), **customer),
    ]


async def _sent(client: AsyncClient, order_id: str, count: int) -> None:
    async def done() -> bool:
        view = await order(client, order_id)
        sent = [n for n in (view or {}).get("notifications", []) if n["status"] == "sent"]
        return len(sent) >= count

    await wait_until(done, timeout=20)


async def _open(client: AsyncClient, link: str) -> Response:
    """GET the link as a browser would: its path as written, still percent-encoded."""
    return await client.get(link.removeprefix(BASE))


class _Outline(HTMLParser):
    """The page's landmarks, headings, timeline entries and ``<time datetime>`` values."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.headings: list[str] = []
        self.times: list[str] = []
        self.timeline: list[str] = []
        self._stack: list[str] = []
        self._in_timeline = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append(tag)
        if tag == "ol" and "timeline" in (found.get("class") or ""):
            self._in_timeline = True
        if tag == "time":
            self.times.append(found.get("datetime") or "")
        if tag in ("h1", "h2", "h3", "li"):
            self._stack.append(tag)
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "ol":
            self._in_timeline = False
        if self._stack and tag == self._stack[-1]:
            self._stack.pop()
            text = " ".join("".join(self._text).split())
            if tag == "li" and self._in_timeline:
                self.timeline.append(text)
            elif tag != "li":
                self.headings.append(f"{tag}:{text}")

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def _outline(html: str) -> _Outline:
    parser = _Outline()
    parser.feed(html)
    return parser


def _assert_private(response: Response) -> None:
    headers = response.headers
    assert headers["content-type"].startswith("text/html")
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert "noindex" in headers["x-robots-tag"]
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "http" not in csp  # no source outside the page itself
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and f'<style nonce="{nonce.group(1)}">' in response.text
    # nothing loaded from elsewhere: no scripts, stylesheets, fonts or images
    for pattern in ("<script", "<link", "<img", "@import", "url(", "@font-face"):
        assert pattern not in response.text


async def test_the_emailed_and_texted_link_opens_the_order_page(
    nats: NatsServer, mail: MailCatcher, twilio: TwilioFake, database_url: str
) -> None:
    settings = channel_settings(
        nats.url,
        database_url,
        mail.port,
        twilio=twilio,
        public_base_url=BASE,
        track_secret=SECRET,
    )
    async with running(settings) as (_service, client):
        await publish(nats.url, *_journey("T-1", phone="+14155550123"))
        # confirmation and shipped emails; shipped and out-for-delivery SMS (the SMS goes
        # first for out-for-delivery, the email waits as its fallback)
        emails = await mail.wait_for(2, timeout=20)
        texts = await twilio.wait_for(2, timeout=20)
        await _sent(client, "T-1", 4)

        links = set()
        for email in emails:
            assert LINK.findall(email.text), email.text
            assert email.html is not None and LINK.findall(email.html), email.subject
            links.update(LINK.findall(email.text))
        for sms in texts:
            found = re.findall(r"https?://\S+", sms.body)
            # one URL per SMS: the page's, in place of the carrier's tracking URL
            assert len(found) == 1 and LINK.fullmatch(found[0]), sms.body
            links.add(found[0])
        # every message of one order carries a link to that order; expiries differ
        # per event (each counts from its own occurred_at)
        assert {urlsplit(link).path for link in links} == {"/track/T-1"}

        for link in links:
            response = await _open(client, link)
            assert response.status_code == 200, link
            _assert_private(response)

        page = (await _open(client, next(iter(links)))).text
        outline = _outline(page)
        assert '<html lang="en">' in page
        assert {"header", "main", "footer"} <= set(outline.tags)
        assert outline.headings[:3] == ["h1:Order T-1", "h2:Shipments", "h3:Parcel"]
        assert "h2:What happened" in outline.headings
        assert "Out for delivery" in page
        assert "DHL" in page and "JD0001" in page
        assert 'href="https://track.example.com/JD0001"' in page
        assert "Tea &amp; Co" in page  # the shop, from attributes.store_name, escaped
        # estimated delivery in the customer's zone (Europe/Paris), marked up as a time
        assert DELIVERY in outline.times
        assert "Sunday, November 22, 2026" in page
        # the timeline: applied events, newest first, each with its moment
        labels = ["Out for delivery", "Shipped", "Confirmed", "Order placed"]
        assert len(outline.timeline) == len(labels)
        for entry, label in zip(outline.timeline, labels, strict=True):
            assert entry.endswith(label), (entry, label)
        assert outline.times[-4:] == [
            (T0 + timedelta(minutes=m)).isoformat() for m in (120, 60, 1, 0)
        ]


async def test_the_page_speaks_the_customers_language(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(_settings(nats, database_url, mail)) as (_service, client):
        # an order number a URL must quote: a slash, a space, an accent
        await publish(nats.url, *_journey("FR/1 é", locale="fr-FR"))
        emails = await mail.wait_for(3, timeout=20)
        french = [e for e in emails if "Voir votre commande" in (e.html or "")]
        assert len(french) == 3
        link = LINK.findall(french[0].text)[0]
        assert "Voir votre commande :" in french[0].text
        assert urlsplit(link).path == "/track/FR%2F1%20%C3%A9"

        response = await _open(client, link)
        assert response.status_code == 200
        page = response.text
        assert '<html lang="fr">' in page
        assert "<h1>Commande FR/1 é</h1>" in page
        assert "En cours de livraison" in page and "Historique" in page
        assert "dimanche 22 novembre 2026" in page


async def test_a_link_that_is_not_this_orders_shows_nothing(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(_settings(nats, database_url, mail)) as (_service, client):
        await publish(nats.url, *_journey("T-2"), *_journey("T-3"))
        await mail.wait_for(6, timeout=20)
        now = int(time.time())
        valid = signing.mint(SECRET, "track", "T-2", now + 3600)
        assert (await client.get("/track/T-2", params={"t": valid})).status_code == 200

        refused = {
            "no token": ("T-2", None),
            "forged": ("T-2", valid[:-2] + ("AA" if not valid.endswith("AA") else "BB")),
            "malformed": ("T-2", "not-a-token"),
            "expired": ("T-2", signing.mint(SECRET, "track", "T-2", now - 1)),
            "another order's": ("T-3", valid),
            "another secret's": ("T-2", signing.mint("x" * 32, "track", "T-2", now + 3600)),
            "another purpose's": ("T-2", signing.mint(SECRET, "feed", "T-2", now + 3600)),
            "unknown order": ("T-404", signing.mint(SECRET, "track", "T-404", now + 3600)),
        }
        pages = set()
        for why, (order_id, token) in refused.items():
            params = {"t": token} if token is not None else {}
            response = await client.get(f"/track/{order_id}", params=params)
            assert response.status_code == 403, why
            _assert_private(response)
            body = response.text
            assert FORBIDDEN in body, why
            for secret in ("T-2", "T-3", "T-404", "DHL", "JD0001", "Tea"):
                assert secret not in body, (why, secret)
            pages.add(re.sub(r'nonce="[^"]+"', "", body))
        assert len(pages) == 1  # the same page whatever was wrong: no oracle


async def test_an_erased_customers_order_shows_nothing(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(_settings(nats, database_url, mail)) as (_service, client):
        await publish(nats.url, *_journey("T-E"))
        emails = await mail.wait_for(3, timeout=20)
        link = LINK.findall(emails[0].text)[0]
        assert (await _open(client, link)).status_code == 200

        erased = await client.delete("/v1/customers/cust-T-E/personal-data")
        assert erased.status_code == 200
        response = await _open(client, link)
        assert response.status_code == 403
        assert FORBIDDEN in response.text and "T-E" not in response.text


async def test_without_a_secret_there_is_no_link_and_no_page(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port, public_base_url=BASE)
    async with running(settings) as (_service, client):
        await publish(nats.url, event("T-N", "placed", 0))
        (email,) = await mail.wait_for(1, timeout=20)
        assert "/track/" not in email.text and "/track/" not in (email.html or "")
        assert "View your order" not in (email.html or "")

        token = signing.mint(SECRET, "track", "T-N", int(time.time()) + 3600)
        response = await client.get("/track/T-N", params={"t": token})
        assert response.status_code == 404
        assert "NOTIFIER_TRACK_SECRET" in response.text and "T-N" not in response.text
