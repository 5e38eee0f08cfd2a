"""The order-status page link every email and SMS carries: signed for its order,
expiring a fixed time after the event it was sent for, the same however often the
event is replayed, and never the cause of a correction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from notifier import signing
from notifier.app import track_links
from notifier.config import load_settings
from notifier.core.intents import context_digest, template_context
from notifier.core.lifecycle import Transition
from notifier.core.links import TrackLinks, no_links
from notifier.core.model import NotificationStatus
from notifier.rendering.templates import TemplateRenderer
from tests.unit.test_pipeline import Harness, ev, queued
from tests.unit.test_rendering import PARTS, SHIPPED, TEMPLATES_DIR, realistic

SECRET = "unit-track-secret-0123456789"
TTL_S = 90 * 86_400
OCCURRED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
LINKS = TrackLinks("https://notify.example.com/base/", SECRET, TTL_S)


def _token(url: str) -> tuple[str, str]:
    """(order id, token) of a tracking-page URL."""
    parts = urlsplit(url)
    assert parts.path.startswith("/base/track/"), url
    return unquote(parts.path.removeprefix("/base/track/")), parse_qs(parts.query)["t"][0]


@pytest.mark.parametrize("order_id", ["A-1", "A/1 b?c=d&e", "commande-é"])
def test_a_link_opens_its_order_until_ttl_after_the_event(order_id: str) -> None:
    url = LINKS.url(order_id, OCCURRED)
    assert url.count("?") == 1 and " " not in url
    found, token = _token(url)
    assert found == order_id
    expires = OCCURRED.timestamp() + TTL_S
    assert signing.check(SECRET, "track", order_id, token, now=expires - 1) is None
    assert signing.check(SECRET, "track", order_id, token, now=expires) == "expired"
    assert signing.check(SECRET, "track", order_id + "x", token, now=expires - 1) == "forged"
    assert signing.check(SECRET, "feed", order_id, token, now=expires - 1) == "forged"


def test_the_link_depends_on_the_event_not_on_when_it_is_rendered() -> None:
    """An expiry counted from "now" would change the link on every replay."""
    first = LINKS.url("A-1", OCCURRED)
    assert LINKS.url("A-1", OCCURRED) == first
    token = _token(first)[1]
    assert int(token.split(".")[0], 16) == int(OCCURRED.timestamp()) + TTL_S
    later = LINKS.url("A-1", OCCURRED + timedelta(minutes=5))
    assert later != first


@pytest.mark.parametrize(
    ("settings", "linked"),
    [
        ({}, False),
        ({"public_base_url": "https://n.example.com"}, False),
        ({"track_secret": SECRET}, False),
        ({"public_base_url": "https://n.example.com", "track_secret": SECRET}, True),
    ],
)
def test_links_need_both_the_base_url_and_the_secret(
    settings: dict[str, Any], linked: bool
) -> None:
    maker = track_links(load_settings(environment="test", **settings))
    assert (maker is not no_links) is linked


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(Exception, match="NOTIFIER_TRACK_SECRET"):
        load_settings(environment="test", track_secret="short")


@pytest.mark.parametrize("locale", ["en", "fr"])
@pytest.mark.parametrize("template", SHIPPED)
def test_every_email_and_sms_carries_a_link_that_opens_the_page(template: str, locale: str) -> None:
    renderer = TemplateRenderer(TEMPLATES_DIR, PARTS)
    context = realistic(template)
    order_id = context["order"]["id"]
    link = LINKS.url(order_id, OCCURRED)
    context["links"] = {"track": link}
    email = renderer.render(template, "email", locale, context)
    sms = renderer.render(template, "sms", locale, context)
    assert link in email.text
    assert email.html is not None
    escaped = link.replace("&", "&amp;")
    assert f'<a class="button" href="{escaped}">' in email.html
    assert link in sms.text
    # the SMS carries one URL: the page's rather than the carrier's tracking URL too
    assert sms.text.count("https://") == 1
    found, token = _token(link)
    assert found == order_id
    assert signing.check(SECRET, "track", order_id, token, now=OCCURRED.timestamp()) is None


def test_the_context_carries_the_link_and_its_digest_leaves_it_out() -> None:
    event = Harness().message(ev("A-1", "placed", 0)).event
    t = Transition(event.event_id, None, None, event.state, "placed")
    linked = template_context(event, t, LINKS(event))
    none = {"unsubscribe": None, "preferences": None}
    assert linked["links"] == {"track": LINKS.url("A-1", event.occurred_at), **none}
    unlinked = template_context(event, t)
    assert unlinked["links"] == {"track": None, **none}
    # a link is how the message is reached, not what it says: no correction for it
    assert context_digest(linked) == context_digest(unlinked)
    assert context_digest(linked) != context_digest({**linked, "event": {}})


def _harness(links: Any) -> Harness:
    h = Harness(channels=frozenset({"email", "sms"}))
    h.pipeline.links = links
    return h


def test_a_revision_told_the_same_sends_no_correction_however_late_it_comes() -> None:
    h = _harness(LINKS)
    customer = {"id": "c1", "email": "ada@example.com", "phone": "+14155550123"}
    first = h.apply(h.message(ev("A-1", "shipped", 0, customer=customer)))
    bodies = {n.channel: n.body_text for n in first.notifications if n.body_text}
    assert set(bodies) == {"email", "sms"}
    assert all(LINKS.url("A-1", OCCURRED) in body for body in bodies.values())
    h.mark("A-1", NotificationStatus.SENT)

    # the same event, revised in what no message says (a push token), replayed later:
    # the same link, the same digest, nothing more to tell
    revised = {**customer, "push_tokens": ["tok-1"]}
    again = h.apply(h.message(ev("A-1", "shipped", 0, customer=revised)))
    assert again.notifications == [] and again.updates == []

    # the service moved (another base URL and secret): still no correction
    h.pipeline.links = TrackLinks("https://moved.example.com", "moved-secret-0123456789", TTL_S)
    moved = h.apply(h.message(ev("A-1", "shipped", 0, customer=customer)))
    assert moved.notifications == [] and moved.updates == []

    # a revision that changes what was told is corrected, and the correction links too
    carrier = {"id": "p1", "carrier": "UPS", "tracking_number": "NEW-1"}
    fixed = h.apply(h.message(ev("A-1", "shipped", 0, customer=customer, shipment=carrier)))
    assert queued(fixed) == ["correction"] and queued(fixed, "sms") == ["correction"]
    for n in fixed.notifications:
        assert "https://moved.example.com/track/A-1?t=" in (n.body_text or ""), n.channel
