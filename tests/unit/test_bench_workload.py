"""The benchmark's workload and its latency arithmetic."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from notifier.bench.latency import LedgerRow, Received, latencies, percentile, report
from notifier.bench.workload import Workload
from notifier.contracts.events import OrderEvent


def test_workload_mix_is_realistic_and_valid() -> None:
    workload = Workload(run_id="t", seed=3)
    messages = list(workload.take(20_000))
    counts = workload.counts
    assert counts.messages == len(messages) == 20_000
    assert 0.17 < counts.duplicates / counts.messages < 0.23
    assert counts.revisions > 0 and counts.poison > 0
    ids = [m.msg_id for m in messages]
    assert len(set(ids)) == len(ids), "every message passes JetStream's own dedup"
    per_order: dict[str, list[str]] = {}
    for m in messages:
        if m.kind == "poison":
            continue
        event = OrderEvent.model_validate(json.loads(m.data))
        if m.kind == "event":
            per_order.setdefault(event.order_id, []).append(event.event_id)
    # each order's events come in lifecycle order, interleaved with other orders'
    assert all(
        ids == sorted(ids, key=lambda i: int(i.rsplit("-", 1)[1])) for ids in per_order.values()
    )
    assert messages[0].data != messages[1].data


def test_duplicates_repeat_an_earlier_event_exactly() -> None:
    messages = list(Workload(run_id="t", seed=5).take(2_000))
    first = {m.event_id: m.data for m in messages if m.kind == "event"}
    for m in messages:
        if m.kind == "duplicate":
            assert first[m.event_id] == m.data
        if m.kind == "revision":
            assert first[m.event_id] != m.data


def test_email_only_workload_has_no_other_contacts() -> None:
    for m in Workload(run_id="t", email_only=True).take(200):
        if m.kind in ("event", "duplicate"):
            customer = json.loads(m.data)["customer"]
            assert "phone" not in customer and "push_tokens" not in customer


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert math.isnan(percentile([], 50))


def test_latency_joins_sends_to_the_publish_that_caused_them() -> None:
    ledger = [
        LedgerRow("n1", "e1", "email", "<m1@x>"),
        LedgerRow("n2", "e1", "push", None),
        LedgerRow("n3", "e2", "sms", "SM1"),
    ]
    published = {"e1": [10.0], "e2": [11.0, 12.0]}  # e2 was revised at 12.0
    received = [
        Received("email", "<m1@x>", 10.05),
        Received("push", "n2", 10.2),
        Received("sms", "SM1", 12.01),
        Received("sms", "SM-unknown", 12.5),
    ]
    traced, untraced = latencies(received, ledger, published)
    assert untraced == 1
    assert [(c, round(s, 3)) for c, _, s in traced] == [
        ("email", 0.05),
        ("push", 0.2),
        ("sms", 0.01),
    ]
    summary = report(traced, [10.0, 11.0, 12.0], origin=10.0)
    assert summary["channels"]["all"]["count"] == 3
    assert round(summary["channels"]["push"]["max_ms"]) == 200
    assert [row["published"] for row in summary["timeline"]] == [1, 1, 1]
    assert [row["sent"] for row in summary["timeline"]] == [2, 0, 1]


def test_sends_still_waiting_count_as_late_not_as_missing() -> None:
    traced = [("email", 10.0 + i, 0.01) for i in range(98)]
    summary = report(traced, [10.0], origin=10.0, unsent={"email": 2, "sms": 1})
    email = summary["channels"]["email"]
    assert (email["count"], email["unsent"]) == (98, 2)
    assert round(email["p50_ms"]) == 10
    assert email["p99_ms"] is None  # among the unsent: later than the run waited
    assert summary["channels"]["sms"]["p50_ms"] is None
    assert summary["channels"]["all"]["unsent"] == 3


def test_no_event_lies_in_the_future_however_long_the_run() -> None:
    # notifier refuses an occurred_at minutes ahead of its clock; an order's time once
    # grew by a second per order, and past ~7,000 orders the workload was in the future
    now = datetime.now(UTC)
    workload = Workload(run_id="t", seed=9)
    for m in workload.take(60_000):
        if m.kind == "event" and workload.counts.orders > 7_000:
            assert datetime.fromisoformat(json.loads(m.data)["occurred_at"]) < now
    assert workload.counts.orders > 8_000


def test_the_bench_rules_are_the_shipped_transition_ones_without_in_app() -> None:
    import yaml

    from notifier.bench.settings import bench_rules_file
    from notifier.config import DEFAULT_RULES_FILE

    shipped = yaml.safe_load(DEFAULT_RULES_FILE.read_text())["rules"]
    bench = yaml.safe_load(bench_rules_file().read_text())["rules"]
    assert all("inapp" not in rule["channels"] for rule in bench)
    assert any("inapp" in rule["channels"] for rule in shipped), "the shipped rules send it"
    assert [r for r in bench] == [
        {**r, "channels": [c for c in r["channels"] if c != "inapp"]}
        for r in shipped
        if r["channels"] != ["inapp"] and "state" in r["when"]
    ]
    assert any("state" not in r["when"] for r in shipped), "the shipped rules watch time"
