"""Corrections say what changed, on the channels that carried the wrong message, and a
retraction names the message it withdraws."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from notifier.contracts.events import OrderEvent, OrderState
from notifier.core.drafts import DraftContext
from notifier.core.intents import context_digest, template_context
from notifier.core.lifecycle import Transition
from notifier.core.model import NotificationStatus
from notifier.core.plan import BatchPlan, NewNotification
from tests.unit.test_pipeline import Harness, ev

CUSTOMER = {
    "id": "c1",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+14155550100",
    "push_tokens": ["tok-1"],
    "locale": "en",
    "timezone": "Europe/Paris",
}
ALL = frozenset({"email", "sms", "push"})
SENT_AT = datetime(2026, 11, 20, 9, 5, tzinfo=UTC)


def corrections(plan: BatchPlan) -> dict[str, NewNotification]:
    found = {
        n.channel: n
        for n in plan.notifications
        if n.template == "correction" and n.status is NotificationStatus.QUEUED
    }
    assert len(found) == len([n for n in plan.notifications if n.template == "correction"])
    return found


def sent(h: Harness, order_id: str, subjects: dict[str, str] | None = None) -> None:
    """Mark what is queued as sent, with the subject it had and when it went out."""
    for stored in h.orders[order_id].notifications.values():
        if stored.status == NotificationStatus.QUEUED.value:
            stored.status = NotificationStatus.SENT.value
            stored.subject = (subjects or {}).get(stored.channel)
            stored.sent_at = SENT_AT


def shipped(locale: str = "en", **shipment: Any) -> dict[str, Any]:
    parcel = {"id": "p1", "carrier": "DHL", "tracking_number": "JD0001", **shipment}
    return ev("A-1", "shipped", 1, customer={**CUSTOMER, "locale": locale}, shipment=parcel)


def test_a_new_tracking_number_is_corrected_on_every_channel_that_told_the_old_one() -> None:
    h = Harness(ALL)
    placed = ev("A-1", "placed", 0, customer=CUSTOMER)
    h.apply(h.message(placed), h.message(shipped()))
    sent(h, "A-1")
    plan = h.apply(h.message(shipped(tracking_number="JD0002")))
    found = corrections(plan)
    assert set(found) == {"email", "sms", "push"}  # the shipped rule's channels
    assert "New tracking number: JD0002 (was JD0001)" in (found["email"].body_text or "")
    assert "New tracking number" in (found["email"].body_html or "")
    assert found["email"].subject == "Correction: a new tracking number for your order A-1"
    assert "new tracking number JD0002 (was JD0001)" in (found["sms"].body_text or "")
    assert "new tracking number JD0002 (was JD0001)" in (found["push"].body_text or "")
    # the confirmation (email, push) was about another event: nothing to correct there
    assert all(n.state == "shipped" for n in found.values())


def test_a_new_delivery_date_and_carrier_are_said_in_french() -> None:
    h = Harness(ALL)
    h.apply(h.message(shipped("fr", estimated_delivery="2026-11-24T12:00:00+01:00")))
    sent(h, "A-1")
    later = shipped("fr", carrier="Colissimo", estimated_delivery="2026-11-26T12:00:00+01:00")
    plan = h.apply(h.message(later))
    found = corrections(plan)
    text = found["email"].body_text or ""
    assert "Transporteur : Colissimo (au lieu de DHL)" in text
    assert "Livraison prévue : 26 nov. 2026 (au lieu du 24 nov. 2026)" in text
    assert "Transporteur : Colissimo (au lieu de DHL)" in (found["sms"].body_text or "")
    assert found["email"].subject == (
        "Correction : nouvelle date de livraison pour votre commande A-1"
    )


def test_a_fallback_message_is_corrected_only_where_it_got_through() -> None:
    h = Harness(ALL)
    out = ev(
        "A-1",
        "out_for_delivery",
        1,
        customer=CUSTOMER,
        shipment={"id": "p1", "tracking_number": "JD0001"},
    )
    first = h.apply(h.message(out))
    # in-app has a rule of its own, beside the fallback chain (and is off here)
    statuses = {n.channel: n.status for n in first.notifications if n.channel != "inapp"}
    assert statuses == {
        "push": NotificationStatus.QUEUED,
        "sms": NotificationStatus.STANDBY,
        "email": NotificationStatus.STANDBY,
    }
    sent(h, "A-1")  # push got through; sms and email never said anything
    plan = h.apply(h.message(dict(out, shipment={"id": "p1", "tracking_number": "JD0002"})))
    assert set(corrections(plan)) == {"push"}
    assert "new tracking number JD0002 (was JD0001)" in (corrections(plan)["push"].body_text or "")


def test_a_retraction_names_the_message_it_withdraws() -> None:
    h = Harness(ALL)
    h.apply(h.message(shipped()))
    sent(h, "A-1", {"email": "Your order A-1 is on its way", "push": "On its way"})
    plan = h.apply(h.message(dict(shipped(), retracted=True)))
    found = corrections(plan)
    assert set(found) == {"email", "sms", "push"}
    email = found["email"]
    assert email.subject == "Please disregard our last message about order A-1"
    # sent at 09:05 UTC, shown in the customer's time zone (Paris)
    assert (
        "Please disregard our message of Nov 20, 2026, 10:05:00\u202fAM about your order A-1, "
        '"Your order A-1 is on its way". It was sent in error' in (email.body_text or "")
    )
    assert "“Your order A-1 is on its way”" in (email.body_html or "")
    sms = found["sms"].body_text or ""
    assert 'please ignore our message of Nov 20, 10:05 ("Shipped")' in sms
    assert 'please ignore our message "On its way"' in (found["push"].body_text or "")
    # a retraction tells nothing new about the parcel
    assert "New tracking number" not in (email.body_text or "")


def test_store_and_greeting_are_not_news_but_a_reason_code_is() -> None:
    """A row told before stores, first names and reason codes existed keeps its digest:
    a revision that changes nothing told sends no correction after an upgrade."""
    body = ev("A-1", "cancelled", 1, customer=CUSTOMER, reason="Out of stock")
    event = OrderEvent.model_validate({**body, "source": "web"})
    cancelled = Transition(event.event_id, None, None, OrderState.CANCELLED, "cancelled")
    values = template_context(event, cancelled, store={"name": "Acme", "logo_url": None})
    before_upgrade = {k: v for k, v in values.items() if k not in ("store", "links")}
    before_upgrade["customer"] = {k: v for k, v in values["customer"].items() if k != "first_name"}
    before_upgrade["event"] = {k: v for k, v in values["event"].items() if k != "reason_code"}
    told = context_digest({"context": before_upgrade, "to": "ada@example.com"})
    assert DraftContext(lambda: values).digest_to("ada@example.com") == told

    coded = OrderEvent.model_validate({**body, "source": "web", "reason_code": "out_of_stock"})
    with_code = template_context(coded, cancelled)
    assert DraftContext(lambda: with_code).digest_to("ada@example.com") != told


def test_an_event_without_the_new_fields_hashes_as_before() -> None:
    """A copy of an event stored before ``given_name`` and ``reason_code`` existed, re-sent
    since, is a duplicate rather than a revision."""
    h = Harness()
    plain = h.message(ev("A-1", "placed", 0, customer=CUSTOMER))
    assert '"reason_code"' not in plain.payload and '"given_name"' not in plain.payload
    named = h.message(ev("A-1", "placed", 0, customer={**CUSTOMER, "given_name": "Ada"}))
    assert '"given_name":"Ada"' in named.payload and named.content_hash != plain.content_hash
    h.apply(plain)
    assert h.apply(h.message(ev("A-1", "placed", 0, customer=CUSTOMER))).counts == {"duplicate": 1}
