"""Planning for SMS, push and webhooks: fallback rules, render-time limits, deliveries
to partner endpoints (pure: no I/O)."""

from __future__ import annotations

import json
from typing import Any

from notifier.core.model import NotificationStatus
from notifier.core.plan import BatchPlan
from tests.unit.test_pipeline import Harness, ev

Q = NotificationStatus
SHIPMENT = {"id": "p1", "carrier": "DHL", "tracking_number": "JD1"}
#: the channels with a provider; in-app (the feed) is always reachable
PROVIDERS = frozenset({"email", "sms", "push"})
ALL = PROVIDERS | {"inapp"}


def customer(**contacts: Any) -> dict[str, Any]:
    return {"id": "c1", "locale": "en", **contacts}


def by_channel(plan: BatchPlan, template: str) -> dict[str, tuple[str, int | None]]:
    return {
        n.channel: (n.status.value, n.fallback_rank)
        for n in plan.notifications
        if n.template == template
    }


def test_a_fallback_rule_queues_the_first_reachable_channel_and_holds_the_rest() -> None:
    h = Harness(ALL)
    plan = h.apply(
        h.message(
            ev(
                "o",
                "out_for_delivery",
                0,
                shipment=SHIPMENT,
                customer=customer(email="a@example.com", phone="+14155550100", push_tokens=["t"]),
            )
        )
    )
    # in-app is sent alongside the chain, never a link of it (its own rule)
    assert by_channel(plan, "out_for_delivery") == {
        "push": ("queued", 0),
        "sms": ("standby", 1),
        "email": ("standby", 2),
        "inapp": ("queued", None),
    }
    groups = {n.fallback_group for n in plan.notifications if n.template == "out_for_delivery"}
    assert len(groups - {None}) == 1


def test_without_a_push_token_the_sms_goes_first() -> None:
    h = Harness(ALL)
    plan = h.apply(
        h.message(
            ev(
                "o",
                "out_for_delivery",
                0,
                shipment=SHIPMENT,
                customer=customer(email="a@example.com", phone="+14155550100"),
            )
        )
    )
    assert by_channel(plan, "out_for_delivery") == {
        "push": ("suppressed", 0),
        "sms": ("queued", 1),
        "email": ("standby", 2),
        "inapp": ("queued", None),
    }


def test_a_disabled_channel_is_skipped_in_the_chain() -> None:
    h = Harness(frozenset({"email"}))
    plan = h.apply(
        h.message(
            ev(
                "o",
                "out_for_delivery",
                0,
                shipment=SHIPMENT,
                customer=customer(email="a@example.com", phone="+14155550100", push_tokens=["t"]),
            )
        )
    )
    assert by_channel(plan, "out_for_delivery")["email"] == ("queued", 2)


def test_rules_without_fallback_send_on_every_reachable_channel() -> None:
    h = Harness(ALL)
    plan = h.apply(
        h.message(
            ev(
                "o",
                "shipped",
                0,
                shipment=SHIPMENT,
                customer=customer(email="a@example.com", phone="+14155550100", push_tokens=["t"]),
            )
        )
    )
    assert by_channel(plan, "shipped") == {
        "email": ("queued", None),
        "push": ("queued", None),
        "sms": ("queued", None),
        "inapp": ("queued", None),
    }


def test_a_rendering_a_channel_cannot_carry_fails_at_render_time() -> None:
    h = Harness(ALL)
    h.pipeline.checks = {"sms": lambda _subject, text: "too long" if "DHL" in text else None}
    plan = h.apply(
        h.message(
            ev(
                "o",
                "shipped",
                0,
                shipment=SHIPMENT,
                customer=customer(email="a@example.com", phone="+14155550100"),
            )
        )
    )
    sms = next(n for n in plan.notifications if n.channel == "sms")
    assert sms.status is Q.FAILED
    assert sms.last_error == "template output not sendable on sms: too long"
    assert sms.recipient is None


def test_each_applied_transition_goes_to_the_endpoints_that_want_it() -> None:
    h = Harness(frozenset({"email", "webhook"}))
    h.pipeline.webhooks = lambda source, state: ["erp"] if state != "placed" else []
    plan = h.apply(
        h.message(
            ev("o", "placed", 0, customer=customer(email="a@example.com", phone="+14155550100"))
        ),
        h.message(
            ev(
                "o",
                "shipped",
                1,
                shipment=SHIPMENT,
                customer=customer(email="a@example.com", phone="+14155550100"),
            )
        ),
    )
    hooks = [n for n in plan.notifications if n.channel == "webhook"]
    assert [(n.state, n.recipient, n.status) for n in hooks] == [("shipped", "erp", Q.QUEUED)]
    body = json.loads(hooks[0].body_text or "")
    assert body["delivery_id"] == hooks[0].id
    assert body["transition"] == {
        "from": None,
        "to": "shipped",
        "shipment_id": "p1",
        "order_state": "shipped",
    }
    assert "a@example.com" not in (hooks[0].body_text or "")
    assert "+14155550100" not in (hooks[0].body_text or "")


def test_a_revision_after_a_webhook_was_sent_is_a_new_delivery_with_the_correction() -> None:
    h = Harness(frozenset({"email", "webhook"}))
    h.pipeline.webhooks = lambda source, state: ["erp"]
    first = ev("o", "shipped", 1, shipment=SHIPMENT)
    h.apply(h.message(first))
    for stored in h.orders["o"].notifications.values():
        stored.status = Q.SENT.value
    revised = dict(first, shipment={**SHIPMENT, "tracking_number": "JD2"})
    plan = h.apply(h.message(revised))
    hooks = [n for n in plan.notifications if n.channel == "webhook"]
    assert len(hooks) == 1
    body = json.loads(hooks[0].body_text or "")
    assert body["event"]["shipment"]["tracking_number"] == "JD2"
    assert body["correction"]["retracted"] is False
