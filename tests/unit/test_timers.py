"""Timers, pure: what an order's history arms, and what a due timer finds when the
clock (a ManualClock, never a sleep) says it is due."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from notifier.channels.registry import registered, specs, template_parts
from notifier.clock import ManualClock
from notifier.config import default_templates_dir
from notifier.core.model import (
    IncomingEvent,
    NotificationStatus,
    OrderAggregate,
    RawMessage,
    StoredNotification,
)
from notifier.core.pipeline import Pipeline
from notifier.core.plan import BatchPlan
from notifier.core.rules import parse_rules
from notifier.core.timers import end_of_local_day
from notifier.core.transit import Forecast, TransitModel, TransitSample
from notifier.ingest.decode import decode
from notifier.rendering.templates import TemplateRenderer

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

RULES = """version: 1
rules:
  - name: shipped
    when: {state: [shipped]}
    template: shipped
    channels: [email]
  - name: processing_stuck
    when: {held: {state: [processing], for: 48h}}
    template: on_hold
    channels: [email]
    category: alerts
  - name: parcel_silent
    when: {held: {state: [shipped, in_transit], for: 24h}}
    template: shipped
    channels: [email]
    conditions: {carrier: [DHL]}
  - name: not_today
    when: {held: {state: [out_for_delivery], until: end_of_local_day}}
    template: delivery_failed
    channels: [email]
  - name: promise_missed
    when: {promise_missed: {grace: 12h}}
    template: delivery_failed
    channels: [email]
  - name: new_delivery_date
    when: {estimate_revised: {later: true}}
    template: shipped
    channels: [email]
  - name: ops_stuck
    when: {held: {state: [on_hold], for: 1d}}
    template: on_hold
    channels: [email]
    audience: ops
"""


class Store:
    """Plans batches and due timers and keeps what they write, as the database would."""

    def __init__(self, rules: str = RULES, ops_email: str | None = "ops@shop.example") -> None:
        plugins = registered()
        renderer = TemplateRenderer(default_templates_dir(), template_parts(plugins))
        ruleset = parse_rules(rules, "test", template_exists=renderer.has, ops_channels=["email"])
        self.pipeline = Pipeline(
            ruleset, renderer, frozenset({"email"}), specs(plugins), ops_email=ops_email
        )
        self.orders: dict[str, OrderAggregate] = {}
        self.clock = ManualClock(T0)
        self.seq = 0

    def ingest(self, *bodies: dict[str, Any], keep_timers: bool = False) -> BatchPlan:
        items = []
        for body in bodies:
            self.seq += 1
            raw = RawMessage(json.dumps(body).encode(), {}, "orders.state.web", self.seq)
            item = decode(raw)
            assert isinstance(item, IncomingEvent), item
            items.append(item)
        ids = {i.event.order_id for i in items}
        for oid in ids:
            self.orders.setdefault(oid, OrderAggregate(order_id=oid, exists=False))
        owners = {eid: o.order_id for o in self.orders.values() for eid in o.events}
        plan = self.pipeline.plan_batch({o: self.orders[o] for o in ids}, items, owners)
        for e in plan.events:
            e.dirty = e.new = False
        for w in plan.orders:
            self.orders[w.order_id].exists = True
        self._keep(plan, timers=not keep_timers)
        return plan

    def due(self) -> BatchPlan:
        """What the poller would plan now: every unfired timer due by the clock."""
        now = self.clock.now()
        due = [
            t
            for o in self.orders.values()
            for t in o.timers.values()
            if t.fired_at is None and t.due_at <= now
        ]
        plan = self.pipeline.plan_timers(self.orders, due, now)
        self._keep(plan)
        return plan

    def _keep(self, plan: BatchPlan, *, timers: bool = True) -> None:
        for n in plan.notifications:
            self.orders[n.order_id].notifications[n.idempotency_key] = StoredNotification(
                n.id,
                n.idempotency_key,
                n.event_id,
                n.channel,
                n.template,
                n.status.value,
                n.digest,
                n.state,
            )
        if not timers:
            return
        for w in plan.timers:
            found = self.orders[w.timer.order_id].timers
            if w.delete:
                found.pop((w.timer.rule, w.timer.shipment), None)
            else:
                found[w.timer.rule, w.timer.shipment] = w.timer

    def timer(self, order_id: str, rule: str, shipment: str = "") -> datetime | None:
        found = self.orders[order_id].timers.get((rule, shipment))
        return found.due_at if found else None


def ev(order_id: str, state: str, at: datetime, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": extra.pop("event_id", f"{order_id}-{state}-{at.isoformat()}"),
        "order_id": order_id,
        "source": "web",
        "state": state,
        "occurred_at": at.isoformat(),
        "customer": {
            "id": "c1",
            "email": "ada@example.com",
            "locale": "en",
            "timezone": "Europe/Paris",
        },
    }
    if state in {"shipped", "in_transit", "out_for_delivery", "delivered"}:
        body["shipment"] = extra.pop("shipment", {"id": "p1", "carrier": "DHL"})
    body.update(extra)
    return body


def sent(plan: BatchPlan) -> list[tuple[str, str]]:
    return [
        (n.template, n.idempotency_key.split(":")[2])
        for n in plan.notifications
        if n.status is NotificationStatus.QUEUED and n.idempotency_key.startswith("timer:")
    ]


def test_processing_held_48h_fires_when_due_never_before_and_once() -> None:
    s = Store()
    s.ingest(ev("A", "processing", T0))
    assert s.timer("A", "processing_stuck") == T0 + timedelta(hours=48)
    s.clock.advance(timedelta(hours=47, minutes=59))
    assert s.due().notifications == []
    s.clock.advance(timedelta(minutes=1))
    plan = s.due()
    assert sent(plan) == [("on_hold", "processing_stuck")]
    (note,) = plan.notifications
    assert note.idempotency_key == (
        f"timer:A:processing_stuck:order:{(T0 + timedelta(hours=48)).isoformat()}:email"
    )
    assert note.recipient == "ada@example.com"
    s.clock.advance(timedelta(hours=5))
    assert s.due().notifications == []  # fired: never twice


def test_an_order_that_moved_on_clears_its_timer_and_nothing_is_sent() -> None:
    s = Store()
    s.ingest(ev("A", "processing", T0))
    plan = s.ingest(ev("A", "cancelled", T0 + timedelta(hours=3)))
    assert [w.delete for w in plan.timers] == [True]
    s.clock.advance(timedelta(days=3))
    assert s.due().notifications == []


def test_a_due_timer_whose_order_moved_on_records_why_nothing_was_sent() -> None:
    s = Store()
    s.ingest(ev("A", "processing", T0))
    # the order moves on, but (as in a race with the poller) the timer is still there
    s.ingest(ev("A", "shipped", T0 + timedelta(hours=1)), keep_timers=True)
    s.clock.advance(timedelta(hours=48))
    plan = s.due()
    (row,) = [n for n in plan.notifications if n.idempotency_key.startswith("timer:")]
    assert row.status is NotificationStatus.SUPPRESSED
    assert row.last_error == "moved on: order is shipped"
    assert [w.timer.fired_at for w in plan.timers] == [s.clock.now()]


def test_a_new_carrier_scan_rearms_the_silent_parcel_timer() -> None:
    s = Store()
    s.ingest(ev("A", "shipped", T0))
    assert s.timer("A", "parcel_silent", "p1") == T0 + timedelta(hours=24)
    s.ingest(ev("A", "in_transit", T0 + timedelta(hours=20)))
    assert s.timer("A", "parcel_silent", "p1") == T0 + timedelta(hours=44)
    # another scan in the same state (repeated) is a carrier event too
    s.ingest(ev("A", "in_transit", T0 + timedelta(hours=30), event_id="scan-2"))
    assert s.timer("A", "parcel_silent", "p1") == T0 + timedelta(hours=54)
    s.clock.advance(timedelta(hours=53))
    assert sent(s.due()) == []
    s.clock.advance(timedelta(hours=1))
    assert sent(s.due()) == [("shipped", "parcel_silent")]


def test_a_condition_keeps_a_timer_from_being_armed() -> None:
    s = Store()
    s.ingest(ev("A", "shipped", T0, shipment={"id": "p1", "carrier": "UPS"}))
    assert s.timer("A", "parcel_silent", "p1") is None


def test_out_for_delivery_is_due_at_the_end_of_the_customers_day() -> None:
    s = Store()
    s.ingest(ev("A", "out_for_delivery", T0))  # 10:00 in Paris
    assert s.timer("A", "not_today", "p1") == datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    s.ingest(ev("A", "delivered", T0 + timedelta(hours=4)))
    assert s.timer("A", "not_today", "p1") is None


def test_end_of_local_day_follows_the_zone_across_a_clock_change() -> None:
    # 25 October 2026: Paris went back to UTC+1 that night, New York is still UTC-4
    at = datetime(2026, 10, 25, 22, 30, tzinfo=UTC)  # 23:30 in Paris
    assert end_of_local_day(at, "Europe/Paris") == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)
    assert end_of_local_day(at, "America/New_York") == datetime(2026, 10, 26, 4, 0, tzinfo=UTC)


def test_a_missed_promise_fires_and_a_later_estimate_rearms_it_and_is_news() -> None:
    s = Store()
    eta = T0 + timedelta(days=2)
    s.ingest(ev("A", "shipped", T0, shipment={"id": "p1", "estimated_delivery": eta.isoformat()}))
    assert s.timer("A", "promise_missed", "p1") == eta + timedelta(hours=12)
    later = eta + timedelta(days=1)
    plan = s.ingest(
        ev(
            "A",
            "in_transit",
            T0 + timedelta(hours=30),
            shipment={"id": "p1", "estimated_delivery": later.isoformat()},
        )
    )
    assert [
        n.template
        for n in plan.notifications
        if n.idempotency_key.endswith(":new_delivery_date:email")
    ] == ["shipped"]
    assert s.timer("A", "promise_missed", "p1") == later + timedelta(hours=12)
    s.clock.advance(eta + timedelta(hours=12) - T0)
    assert sent(s.due()) == []
    s.clock.advance(timedelta(days=1))
    assert sent(s.due()) == [("delivery_failed", "promise_missed")]


def test_an_earlier_estimate_is_not_news() -> None:
    s = Store()
    eta = T0 + timedelta(days=2)
    s.ingest(ev("A", "shipped", T0, shipment={"id": "p1", "estimated_delivery": eta.isoformat()}))
    plan = s.ingest(
        ev(
            "A",
            "in_transit",
            T0 + timedelta(hours=3),
            shipment={"id": "p1", "estimated_delivery": (eta - timedelta(hours=5)).isoformat()},
        )
    )
    assert not [n for n in plan.notifications if "new_delivery_date" in n.idempotency_key]


def test_delivered_keeps_the_promise() -> None:
    s = Store()
    eta = T0 + timedelta(hours=5)
    s.ingest(ev("A", "shipped", T0, shipment={"id": "p1", "estimated_delivery": eta.isoformat()}))
    s.ingest(ev("A", "delivered", T0 + timedelta(hours=4)))
    assert s.timer("A", "promise_missed", "p1") is None
    s.clock.advance(timedelta(days=2))
    assert sent(s.due()) == []


def test_an_order_level_promise_counts_until_delivery() -> None:
    s = Store()
    s.ingest(ev("A", "confirmed", T0, attributes={"promised_delivery": "2026-11-22"}))
    # by the end of 22 November in Paris, plus the grace
    due = datetime(2026, 11, 22, 23, 0, tzinfo=UTC) + timedelta(hours=12)
    assert s.timer("A", "promise_missed") == due
    s.clock.advance(due - T0)
    assert sent(s.due()) == [("delivery_failed", "promise_missed")]


def test_a_late_event_is_due_at_once() -> None:
    s = Store()
    s.clock.advance(timedelta(days=10))
    s.ingest(ev("A", "processing", T0))  # happened ten days ago, heard of now
    assert sent(s.due()) == [("on_hold", "processing_stuck")]


def test_an_ops_rule_goes_to_the_ops_address() -> None:
    s = Store()
    s.ingest(ev("A", "on_hold", T0))
    s.clock.advance(timedelta(days=1))
    plan = s.due()
    (note,) = [n for n in plan.notifications if "ops_stuck" in n.idempotency_key]
    assert note.recipient == "ops@shop.example"
    assert note.status is NotificationStatus.QUEUED


def test_the_demo_alert_orders_are_due_under_the_shipped_rules() -> None:
    from notifier.config import DEFAULT_RULES_FILE
    from notifier.devtools.demo_alerts import alert_events

    s = Store(rules=DEFAULT_RULES_FILE.read_text())
    now = datetime.now(UTC)
    s.clock.advance(now - T0)
    events = alert_events(now=now, run_id="r1")
    for body in events:
        s.ingest(body)
    fired = {(n.order_id, n.idempotency_key.split(":")[2]) for n in s.due().notifications}
    assert fired == {
        ("DEMO-STUCK-r1", "processing_stuck"),
        ("DEMO-SILENT-r1", "parcel_silent"),
        ("DEMO-LATE-r1", "promise_missed"),
    }
    # the slow parcel waits for the model to learn the history the demo brings
    at = {(b["order_id"], b["state"]): datetime.fromisoformat(b["occurred_at"]) for b in events}
    history = [
        TransitSample("Colissimo", "web", at[o, "shipped"], at[o, "delivered"])
        for o, state in at
        if o.startswith("DEMO-HISTORY-") and state == "delivered"
    ]
    s.pipeline.forecast = Forecast(TransitModel.learn(history, min_sample=30))
    s.clock.advance(timedelta(minutes=11))  # the provisional timer looks again
    fired = {(n.order_id, n.idempotency_key.split(":")[2]) for n in s.due().notifications}
    assert fired == {("DEMO-SLOW-r1", "predicted_late")}
