"""The pure batch planner: dedupe, revisions, retractions, reordering, suppression.

The store is played by keeping the aggregates between batches, as the database would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from notifier.channels.registry import registered, specs, template_parts
from notifier.config import DEFAULT_RULES_FILE, default_templates_dir
from notifier.core.model import (
    IncomingEvent,
    NotificationStatus,
    OrderAggregate,
    RawMessage,
    StoredNotification,
)
from notifier.core.pipeline import Pipeline
from notifier.core.plan import BatchPlan
from notifier.core.rules import load_rules
from notifier.ingest.decode import decode
from notifier.rendering.templates import TemplateRenderer

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class Harness:
    """Plans batches and applies the plans to in-memory aggregates, like the store."""

    def __init__(self, channels: frozenset[str] = frozenset({"email"})) -> None:
        plugins = registered()
        renderer = TemplateRenderer(default_templates_dir(), template_parts(plugins))
        rules = load_rules(DEFAULT_RULES_FILE, template_exists=renderer.has)
        self.pipeline = Pipeline(rules, renderer, channels, specs(plugins))
        self.orders: dict[str, OrderAggregate] = {}
        self.seq = 0

    def message(self, body: dict[str, Any], seq: int | None = None) -> IncomingEvent:
        if seq is None:
            self.seq += 1
            seq = self.seq
        result = decode(RawMessage(json.dumps(body).encode(), {}, "orders.state.web", seq))
        assert isinstance(result, IncomingEvent), result
        return result

    def apply(self, *items: IncomingEvent) -> BatchPlan:
        ids = {i.event.order_id for i in items}
        for oid in ids:
            self.orders.setdefault(oid, OrderAggregate(order_id=oid, exists=False))
        owners = {eid: o.order_id for o in self.orders.values() for eid in o.events}
        loaded = {oid: self.orders[oid] for oid in ids}
        plan = self.pipeline.plan_batch(loaded, items, owners)
        for e in plan.events:
            e.dirty = e.new = False
        for w in plan.orders:
            self.orders[w.order_id].exists = True
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
        for nid, value in plan.retold.items():
            for o in self.orders.values():
                for stored in o.notifications.values():
                    if stored.id == nid:
                        stored.digest = value
        for u in plan.updates:
            for o in self.orders.values():
                for stored in o.notifications.values():
                    if stored.id == u.id:
                        if u.replacement is None:
                            stored.status = NotificationStatus.SUPPRESSED.value
                            stored.digest = ""
                        else:
                            stored.digest = u.replacement.digest
                            stored.status = u.replacement.status.value
        return plan

    def mark(self, order_id: str, status: NotificationStatus) -> None:
        for stored in self.orders[order_id].notifications.values():
            if stored.status == NotificationStatus.QUEUED.value:
                stored.status = status.value


def ev(order_id: str, state: str, minute: int, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": extra.pop("event_id", f"{order_id}-{state}-{minute}"),
        "order_id": order_id,
        "state": state,
        "occurred_at": (T0 + timedelta(minutes=minute)).isoformat(),
        "customer": {"id": "c1", "email": "ada@example.com", "locale": "en"},
    }
    body.update(extra)
    return body


def queued(plan: BatchPlan, channel: str = "email") -> list[str]:
    return [
        n.template
        for n in plan.notifications
        if n.channel == channel and n.status is NotificationStatus.QUEUED
    ]


def test_lifecycle_calls_for_one_confirmation_and_one_message_per_step() -> None:
    # one batch per step, as the steps arrive apart (arriving together, the steps a
    # later one makes stale are suppressed: tests/unit/test_timing.py)
    h = Harness()
    steps = ["placed", "confirmed", "shipped", "out_for_delivery", "delivered"]
    plans = [h.apply(h.message(ev("o", s, i))) for i, s in enumerate(steps)]
    assert [t for plan in plans for t in queued(plan)] == [
        "order_confirmed",
        "shipped",
        "out_for_delivery",
        "delivered",
    ]
    assert all(plan.counts == {"new": 1} for plan in plans)


def test_duplicate_does_nothing_however_it_arrives() -> None:
    h = Harness()
    body = ev("o", "placed", 0)
    h.apply(h.message(body))
    again = h.apply(h.message(body), h.message(dict(reversed(list(body.items())))))
    assert again.counts == {"duplicate": 2}
    assert again.notifications == [] and again.events == [] and again.orders == []


def test_our_own_redelivery_out_of_stream_order_still_sends_the_confirmation() -> None:
    h = Harness()
    placed, shipped = h.message(ev("o", "placed", 0)), h.message(ev("o", "shipped", 1))
    assert queued(h.apply(shipped)) == ["shipped"]
    late = h.apply(placed)
    assert queued(late) == ["order_confirmed"]
    assert late.dead_letters == []
    assert late.orders[0].derived_state == "shipped"


def test_source_reordering_is_stale_and_silent() -> None:
    h = Harness()
    h.apply(h.message(ev("o", "placed", 0)), h.message(ev("o", "delivered", 10)))
    plan = h.apply(h.message(ev("o", "shipped", 5)))
    assert plan.counts == {"new": 1, "stale": 1}
    assert queued(plan) == []
    assert [e.outcome for e in plan.events] == ["stale"]


def test_revision_after_sending_sends_a_correction_and_before_sending_rerenders() -> None:
    h = Harness()
    shipped = ev("o", "shipped", 1, shipment={"id": "p", "tracking_number": "AAA"})
    h.apply(h.message(ev("o", "placed", 0)), h.message(shipped))
    fixed = dict(shipped, shipment={"id": "p", "tracking_number": "BBB"})
    before_send = h.apply(h.message(fixed))
    assert before_send.counts == {"revision": 1}
    assert [u.reason for u in before_send.updates] == ["revised before sending"] * 1
    assert before_send.notifications == []
    h.mark("o", NotificationStatus.SENT)
    again = dict(shipped, shipment={"id": "p", "tracking_number": "CCC"})
    after_send = h.apply(h.message(again))
    assert queued(after_send) == ["correction"]
    correction = after_send.notifications[0]
    # what the customer was told is the version revised before sending, not the first
    assert "New tracking number: CCC (was BBB)" in (correction.body_text or "")


def test_changing_back_after_a_correction_is_corrected_again() -> None:
    h = Harness()
    shipped = ev("o", "shipped", 1, shipment={"id": "p", "tracking_number": "AAA"})
    h.apply(h.message(ev("o", "placed", 0)), h.message(shipped))
    h.mark("o", NotificationStatus.SENT)
    revised = h.apply(h.message(dict(shipped, shipment={"id": "p", "tracking_number": "BBB"})))
    assert queued(revised) == ["correction"]
    assert len(revised.retold) == 1
    h.mark("o", NotificationStatus.SENT)
    back = h.apply(h.message(shipped, seq=99))
    assert queued(back) == ["correction"]
    assert "New tracking number: AAA (was BBB)" in (back.notifications[0].body_text or "")


def test_revision_that_changes_nothing_told_is_silent() -> None:
    h = Harness()
    h.apply(h.message(ev("o", "placed", 0)), h.message(ev("o", "processing", 1)))
    h.mark("o", NotificationStatus.SENT)
    plan = h.apply(h.message(ev("o", "processing", 2, event_id="o-processing-1")))
    assert plan.counts == {"revision": 1}
    assert plan.notifications == [] and plan.updates == []


def test_an_older_version_arriving_late_does_not_undo_a_revision() -> None:
    h = Harness()
    original = h.message(ev("o", "placed", 0, reason="a"), seq=1)
    revised = h.message(ev("o", "placed", 0, reason="b"), seq=2)
    h.apply(revised)
    late = h.apply(original)
    # it says where the event was first published, nothing more
    assert late.counts == {"moved": 1}
    assert [(e.seq, e.parsed().reason) for e in late.events] == [(1, "b")]
    assert late.notifications == [] and late.updates == []


def test_retraction_suppresses_what_is_queued_and_corrects_what_was_sent() -> None:
    h = Harness()
    cancelled = ev("o", "cancelled", 1, reason="stock")
    h.apply(h.message(ev("o", "placed", 0)), h.message(cancelled))
    h.mark("o", NotificationStatus.SENT)
    plan = h.apply(h.message(dict(cancelled, retracted=True)))
    assert plan.counts == {"retraction": 1}
    assert queued(plan) == ["correction"]
    assert plan.orders[0].derived_state == "placed"

    h2 = Harness()
    h2.apply(h2.message(ev("q", "placed", 0)), h2.message(ev("q", "shipped", 1)))
    plan = h2.apply(h2.message(dict(ev("q", "shipped", 1), retracted=True)))
    assert [u.reason for u in plan.updates] == ["withdrawn before sending"]
    assert plan.notifications == []


@pytest.mark.parametrize("told", [False, True], ids=["queued", "sent"])
def test_retracting_the_event_behind_a_once_rule_keeps_the_one_confirmation(told: bool) -> None:
    h = Harness()
    placed = ev("o", "placed", 0)
    h.apply(h.message(placed), h.message(ev("o", "confirmed", 1)))
    if told:
        h.mark("o", NotificationStatus.SENT)
    plan = h.apply(h.message(dict(placed, retracted=True)))
    # `confirmed` still justifies the confirmation: no withdrawal, no correction, no second
    assert plan.updates == [] and plan.notifications == []


def test_redelivered_placed_after_confirmed_sends_no_second_confirmation() -> None:
    h = Harness()
    placed, confirmed = h.message(ev("o", "placed", 0)), h.message(ev("o", "confirmed", 1))
    assert queued(h.apply(confirmed)) == ["order_confirmed"]
    h.mark("o", NotificationStatus.SENT)
    late = h.apply(placed)
    assert late.notifications == [] and late.updates == []


def test_revision_fixing_the_address_rewrites_what_waits_or_failed() -> None:
    h = Harness()
    wrong = ev("o", "placed", 0, customer={"id": "c1", "email": "ada@exmaple.com"})
    first = h.apply(h.message(wrong))
    assert [n.recipient for n in first.notifications if n.channel == "email"] == ["ada@exmaple.com"]
    h.mark("o", NotificationStatus.FAILED)
    fixed = h.apply(h.message(dict(wrong, customer={"id": "c1", "email": "ada@example.com"})))
    (update,) = fixed.updates
    assert update.from_status == "failed"
    assert update.replacement is not None and update.replacement.recipient == "ada@example.com"
    assert update.replacement.status is NotificationStatus.QUEUED


def test_a_withdrawn_notification_comes_back_when_its_event_does() -> None:
    h = Harness()
    shipped = ev("o", "shipped", 1)
    h.apply(h.message(ev("o", "placed", 0)), h.message(shipped))
    withdrawn = h.apply(h.message(dict(shipped, retracted=True)))
    assert [u.reason for u in withdrawn.updates] == ["withdrawn before sending"]
    restored = h.apply(h.message(dict(shipped, retracted=False, reason="it did ship")))
    assert [
        (u.from_status, u.replacement and u.replacement.status.value)
        for u in restored.updates
        if u.replacement and u.replacement.channel == "email"
    ] == [("suppressed", "queued")]


def test_back_and_forth_revisions_are_corrected_every_time() -> None:
    h = Harness()
    shipped = ev("o", "shipped", 1, shipment={"id": "p", "tracking_number": "A"})
    h.apply(h.message(ev("o", "placed", 0)), h.message(shipped))
    for tracking in ["B", "A", "B"]:
        h.mark("o", NotificationStatus.SENT)
        plan = h.apply(h.message(dict(shipped, shipment={"id": "p", "tracking_number": tracking})))
        assert queued(plan) == ["correction"], tracking
        was = "A" if tracking == "B" else "B"
        told = f"New tracking number: {tracking} (was {was})"
        assert told in (plan.notifications[0].body_text or "")


def test_illegal_transition_is_dead_lettered_and_leaves_no_trace() -> None:
    h = Harness()
    h.apply(h.message(ev("o", "placed", 0)), h.message(ev("o", "delivered", 1)))
    plan = h.apply(h.message(ev("o", "processing", 2)))
    assert [d.reason.value for d in plan.dead_letters] == ["illegal_transition"]
    assert "processing" in plan.dead_letters[0].detail
    assert "o-processing-2" not in h.orders["o"].events
    assert plan.notifications == []


def test_event_id_reused_by_another_order_is_a_conflict() -> None:
    h = Harness()
    h.apply(h.message(ev("o", "placed", 0, event_id="X")))
    plan = h.apply(h.message(ev("p", "placed", 0, event_id="X")))
    assert [d.reason.value for d in plan.dead_letters] == ["event_id_conflict"]


@pytest.mark.parametrize(
    ("customer", "channel", "reason"),
    [
        ({"id": "c", "locale": "en"}, "email", "customer has no email"),
        (
            {"id": "c", "email": "a@example.com", "channels": ["sms"]},
            "email",
            "customer did not opt into email",
        ),
        (
            {"id": "c", "email": "a@example.com", "push_tokens": ["t"]},
            "push",
            "channel push is not enabled",
        ),
    ],
)
def test_each_notification_not_sent_is_in_the_ledger_with_why(
    customer: dict[str, Any], channel: str, reason: str
) -> None:
    h = Harness()
    plan = h.apply(h.message(dict(ev("o", "placed", 0), customer=customer)))
    rows = [n for n in plan.notifications if n.channel == channel]
    assert len(rows) == 1
    assert rows[0].status is NotificationStatus.SUPPRESSED
    assert rows[0].last_error == reason
    assert rows[0].body_text is None and rows[0].recipient is None


def test_broken_template_fails_the_notification_not_the_event(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(default_templates_dir(), tmp_path / "t")
    (tmp_path / "t" / "shipped" / "en" / "email.subject.j2").write_text("{{ nope.nope }}")
    h = Harness()
    h.pipeline.renderer = TemplateRenderer(tmp_path / "t", template_parts(registered()))
    plan = h.apply(h.message(ev("o", "shipped", 0)))
    failed = [n for n in plan.notifications if n.channel == "email"]
    assert failed[0].status is NotificationStatus.FAILED
    assert "template error" in (failed[0].last_error or "")
    assert plan.orders[0].derived_state == "shipped"


def test_notification_ids_are_deterministic() -> None:
    a, b = Harness(), Harness()
    ids_a = [n.id for n in a.apply(a.message(ev("o", "placed", 0))).notifications]
    ids_b = [n.id for n in b.apply(b.message(ev("o", "placed", 0))).notifications]
    assert ids_a == ids_b


def test_a_template_error_quoting_a_contact_is_kept_without_it(tmp_path: Path) -> None:
    """Jinja2 quotes the key it could not find; a template that looks the customer's
    name up must not leave that name in the ledger's ``last_error``."""
    import shutil

    shutil.copytree(default_templates_dir(), tmp_path / "t")
    subject = tmp_path / "t" / "shipped" / "en" / "email.subject.j2"
    subject.write_text("{{ order[customer.name] }}")
    h = Harness()
    h.pipeline.renderer = TemplateRenderer(tmp_path / "t", template_parts(registered()))
    name = "Ada Lovelace"
    customer = {"id": "c1", "email": "ada@example.com", "name": name}
    plan = h.apply(h.message(ev("o", "shipped", 0, customer=customer)))
    failed = [n for n in plan.notifications if n.channel == "email"]
    error = failed[0].last_error or ""
    assert failed[0].status is NotificationStatus.FAILED
    assert "template error" in error
    assert name not in error
    assert "<contact>" in error
