"""Planning-time staleness and quiet hours: what a batch queues, suppresses, or holds."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from notifier.core.model import NotificationStatus, OrderAggregate
from notifier.core.plan import BatchPlan, NewNotification
from notifier.core.quiet_hours import QuietHours, QuietWindow
from notifier.core.timing import is_exempt
from tests.unit.test_pipeline import Harness, ev

NIGHT = QuietWindow(time(21, 0), time(8, 0))


class FixedClock:
    """A clock that says what the test says."""

    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


def harness(now: datetime | None = None, quiet: QuietHours | None = None) -> Harness:
    h = Harness(frozenset({"email", "push", "sms", "inapp"}))
    if now is not None:
        h.pipeline.clock = FixedClock(now)
    if quiet is not None:
        h.pipeline.quiet = quiet
    return h


def customer(tz: str = "Europe/Paris") -> dict[str, Any]:
    return {
        "id": "c1",
        "email": "ada@example.com",
        "phone": "+33612345678",
        "push_tokens": ["tok-1"],
        "locale": "en",
        "timezone": tz,
    }


def shipment_event(state: str, minute: int) -> dict[str, Any]:
    return ev("O-1", state, minute, customer=customer(), shipment={"id": "p1"})


def rows(plan: BatchPlan, state: str) -> list[NewNotification]:
    return [n for n in plan.notifications if n.state == state]


def test_out_for_delivery_and_delivered_together_queue_only_delivered() -> None:
    h = harness()
    plan = h.apply(
        h.message(shipment_event("out_for_delivery", 1)),
        h.message(shipment_event("delivered", 2)),
    )
    early = rows(plan, "out_for_delivery")
    assert early  # planned, in the ledger, with why it is not sent
    assert {n.status for n in early} == {NotificationStatus.SUPPRESSED}
    assert {n.last_error for n in early} == {"stale: shipment is delivered"}
    delivered = rows(plan, "delivered")
    assert {n.channel for n in delivered if n.status is NotificationStatus.QUEUED} >= {
        "email",
        "push",
    }


def test_one_shipment_delivered_leaves_another_shipments_progress_alone() -> None:
    h = harness()
    other = ev("O-1", "out_for_delivery", 1, customer=customer(), shipment={"id": "p2"})
    plan = h.apply(h.message(other), h.message(shipment_event("delivered", 2)))
    assert NotificationStatus.QUEUED in {n.status for n in rows(plan, "out_for_delivery")}


def test_a_cancellation_in_the_same_batch_suppresses_the_confirmation() -> None:
    h = harness()
    plan = h.apply(
        h.message(ev("O-1", "confirmed", 1, customer=customer())),
        h.message(ev("O-1", "cancelled", 2, customer=customer())),
    )
    confirmed = rows(plan, "confirmed")
    assert confirmed
    assert {n.last_error for n in confirmed} == {"stale: order is cancelled"}
    assert NotificationStatus.QUEUED in {n.status for n in rows(plan, "cancelled")}


def test_across_batches_the_queued_row_is_left_to_the_claim() -> None:
    # planning judges only what it plans; a row queued by an earlier batch is judged
    # when a dispatcher claims it (tests/integration/test_timing.py)
    h = harness()
    first = h.apply(h.message(shipment_event("shipped", 1)))
    assert NotificationStatus.QUEUED in {n.status for n in rows(first, "shipped")}
    second = h.apply(h.message(shipment_event("delivered", 2)))
    assert not second.updates


MIDNIGHT_PARIS = datetime(2026, 6, 10, 22, 0, tzinfo=UTC)
MORNING_PARIS = datetime(2026, 6, 11, 6, 0, tzinfo=UTC)


def test_quiet_hours_hold_normal_push_and_sms_but_not_email_or_inapp() -> None:
    h = harness(MIDNIGHT_PARIS, QuietHours(NIGHT))
    plan = h.apply(h.message(shipment_event("shipped", 1)))  # normal: email, push, sms, inapp
    held = {n.channel: n.not_before for n in rows(plan, "shipped")}
    assert held == {"email": None, "push": MORNING_PARIS, "sms": MORNING_PARIS, "inapp": None}
    assert {n.status for n in rows(plan, "shipped")} == {NotificationStatus.QUEUED}


def test_quiet_hours_never_hold_a_high_priority_message() -> None:
    h = harness(MIDNIGHT_PARIS, QuietHours(NIGHT))
    plan = h.apply(h.message(shipment_event("out_for_delivery", 1)))  # high in the rules
    assert all(n.not_before is None for n in plan.notifications)


def test_quiet_hours_follow_the_customers_time_zone() -> None:
    h = harness(MIDNIGHT_PARIS, QuietHours(NIGHT))
    body = ev("O-1", "shipped", 1, customer=customer("America/New_York"), shipment={"id": "p1"})
    plan = h.apply(h.message(body))  # 18:00 in New York: not quiet yet
    assert all(n.not_before is None for n in plan.notifications)


def test_quiet_hours_off_by_default_in_the_pipeline() -> None:
    h = harness(MIDNIGHT_PARIS)
    plan = h.apply(h.message(shipment_event("shipped", 1)))
    assert all(n.not_before is None for n in plan.notifications)


def test_partner_webhooks_get_every_transition_even_stale_ones() -> None:
    h = Harness(frozenset({"email", "push", "webhook"}))
    h.pipeline.webhooks = lambda _source, _state: ("partner",)
    plan = h.apply(
        h.message(shipment_event("out_for_delivery", 1)),
        h.message(shipment_event("delivered", 2)),
    )
    hooks = {n.state: n.status for n in plan.notifications if n.channel == "webhook"}
    assert hooks == {
        "out_for_delivery": NotificationStatus.QUEUED,
        "delivered": NotificationStatus.QUEUED,
    }


def test_corrections_and_webhooks_are_exempt() -> None:
    assert is_exempt("webhook", "O-1:e1:out_for_delivery:webhook:partner")
    assert is_exempt("push", "O-1:e1:shipped:push:correction:1")
    assert not is_exempt("push", "O-1:e1:shipped:push")


def test_a_customers_stored_quiet_hours_and_time_zone_replace_the_defaults() -> None:
    from notifier.contracts.preferences import CustomerPreferences

    h = harness(MIDNIGHT_PARIS, QuietHours(NIGHT))
    message = h.message(shipment_event("shipped", 1))
    owners = {eid: o.order_id for o in h.orders.values() for eid in o.events}
    h.orders["O-1"] = OrderAggregate(order_id="O-1", exists=False)
    # awake until 01:00 in Paris: nothing held at midnight
    late = CustomerPreferences.model_validate({"quiet_hours": {"start": "01:00", "end": "07:00"}})
    plan = h.pipeline.plan_batch({"O-1": h.orders["O-1"]}, [message], owners, {"c1": late})
    assert all(n.not_before is None for n in plan.notifications)
    # moved to New York (18:00 there): not quiet yet for them
    h.orders["O-2"] = OrderAggregate(order_id="O-2", exists=False)
    body = ev("O-2", "shipped", 1, customer=customer(), shipment={"id": "p1"})
    moved = CustomerPreferences.model_validate({"timezone": "America/New_York"})
    plan = h.pipeline.plan_batch({"O-2": h.orders["O-2"]}, [h.message(body)], {}, {"c1": moved})
    assert all(n.not_before is None for n in plan.notifications)
    # without stored preferences, the default window holds the same push
    h.orders["O-3"] = OrderAggregate(order_id="O-3", exists=False)
    body = ev("O-3", "shipped", 1, customer=customer(), shipment={"id": "p1"})
    plan = h.pipeline.plan_batch({"O-3": h.orders["O-3"]}, [h.message(body)], {}, {})
    assert {n.channel: n.not_before for n in plan.notifications}["push"] == MORNING_PARIS
