"""Review findings in the pure planner (fallback rules under retraction)."""

from __future__ import annotations

from notifier.core.model import NotificationStatus
from tests.unit.test_pipeline import Harness, ev
from tests.unit.test_pipeline_channels import PROVIDERS, SHIPMENT, customer

Q = NotificationStatus


def _statuses(h: Harness, order_id: str, template: str) -> dict[str, str]:
    return {
        n.channel: n.status
        for n in h.orders[order_id].notifications.values()
        if n.template == template and n.channel in PROVIDERS  # the fallback chain
    }


def test_retracting_the_event_behind_a_fallback_rule_withdraws_its_standby_channels() -> None:
    # The later channels of a fallback rule wait as `standby`. When the event is
    # retracted they must be withdrawn with the queued one: left on standby, they
    # stay there for good, or (first channel already in flight and then failing)
    # the ledger's fallback hands the withdrawn message to SMS.
    h = Harness(PROVIDERS)
    body = ev(
        "o",
        "out_for_delivery",
        0,
        shipment=SHIPMENT,
        customer=customer(email="a@example.com", phone="+14155550100", push_tokens=["t"]),
    )
    h.apply(h.message(body))
    assert _statuses(h, "o", "out_for_delivery") == {
        "push": "queued",
        "sms": "standby",
        "email": "standby",
    }
    plan = h.apply(h.message(dict(body, retracted=True)))
    assert plan.counts == {"retraction": 1}
    assert _statuses(h, "o", "out_for_delivery") == {
        "push": "suppressed",
        "sms": "suppressed",
        "email": "suppressed",
    }
    withdrawn = {u.id: u.from_status for u in plan.updates if u.replacement is None}
    assert sorted(withdrawn.values()) == ["queued", "standby", "standby"]


def test_retraction_while_the_first_channel_is_in_flight_withdraws_the_standby_ones() -> None:
    h = Harness(PROVIDERS)
    body = ev(
        "o",
        "out_for_delivery",
        0,
        shipment=SHIPMENT,
        customer=customer(email="a@example.com", phone="+14155550100", push_tokens=["t"]),
    )
    h.apply(h.message(body))
    h.mark("o", Q.SENDING)  # the push is being handed to FCM
    h.apply(h.message(dict(body, retracted=True)))
    got = _statuses(h, "o", "out_for_delivery")
    assert got["sms"] == got["email"] == "suppressed", got


def test_a_revision_after_the_first_channel_got_through_keeps_the_rest_stood_down() -> None:
    # push got through, so the ledger stood SMS and email down ("delivered on push").
    # A revision sends a correction on push; it must not put SMS and email back on
    # standby, where nothing would ever move them again.
    h = Harness(PROVIDERS)
    body = ev(
        "o",
        "out_for_delivery",
        0,
        shipment=SHIPMENT,
        customer=customer(email="a@example.com", phone="+14155550100", push_tokens=["t"]),
    )
    h.apply(h.message(body))
    for stored in h.orders["o"].notifications.values():
        stored.status = (Q.SENT if stored.channel == "push" else Q.SUPPRESSED).value
    plan = h.apply(h.message(dict(body, shipment={**SHIPMENT, "tracking_number": "JD2"})))
    assert [n.template for n in plan.notifications] == ["correction"]
    assert _statuses(h, "o", "out_for_delivery") == {
        "push": "sent",
        "sms": "suppressed",
        "email": "suppressed",
    }
