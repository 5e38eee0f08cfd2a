"""predicted_late, pure: a shipment warned about once it outlasts its carrier's usual
transit time before the promised date, silent where it does not, and provisional
while the model knows too little (a ManualClock, never a sleep)."""

from __future__ import annotations

from datetime import timedelta

from notifier.core.transit import Forecast, TransitModel, TransitSample
from tests.unit.test_timers import T0, Store, ev, sent

RULES = """version: 1
rules:
  - name: predicted_late
    when: {predicted_late: {percentile: 90}}
    template: promise_missed
    channels: [email]
    category: alerts
"""

#: 40 UPS deliveries: 36 within two days, 4 in five: the 90th percentile is 48 h
HISTORY = [
    TransitSample("UPS", "web", T0 - timedelta(days=30), T0 - timedelta(days=30, hours=-h))
    for h in [24.0] * 20 + [48.0] * 16 + [120.0] * 4
]
UPS = {"id": "p1", "carrier": "UPS", "estimated_delivery": (T0 + timedelta(days=4)).isoformat()}


def store(*, learned: bool = True) -> Store:
    s = Store(rules=RULES)
    model = TransitModel.learn(HISTORY if learned else [], min_sample=30)
    s.pipeline.forecast = Forecast(model, timedelta(minutes=10))
    return s


def test_warns_when_the_carriers_90th_percentile_passes_before_the_promise() -> None:
    s = store()
    s.ingest(ev("A", "shipped", T0, shipment=UPS))
    assert s.timer("A", "predicted_late", "p1") == T0 + timedelta(hours=48)
    s.clock.advance(timedelta(hours=47, minutes=59))
    assert s.due().notifications == []  # never early
    s.clock.advance(timedelta(minutes=1))
    assert sent(s.due()) == [("promise_missed", "predicted_late")]
    s.clock.advance(timedelta(days=1))
    assert s.due().notifications == []  # once


def test_a_carrier_scan_does_not_restart_the_prediction() -> None:
    s = store()
    s.ingest(ev("A", "shipped", T0, shipment=UPS))
    s.ingest(ev("A", "in_transit", T0 + timedelta(hours=20), shipment=UPS))
    # transit counts from the shipping, not from the last scan
    assert s.timer("A", "predicted_late", "p1") == T0 + timedelta(hours=48)


def test_silent_when_the_percentile_is_not_passed_before_the_promise() -> None:
    s = store()
    soon = {**UPS, "estimated_delivery": (T0 + timedelta(hours=30)).isoformat()}
    s.ingest(ev("A", "shipped", T0, shipment=soon))
    assert s.timer("A", "predicted_late", "p1") is None
    s.clock.advance(timedelta(days=3))
    assert s.due().notifications == []


def test_silent_when_delivered_in_time_and_the_ledger_says_why() -> None:
    s = store()
    s.ingest(ev("A", "shipped", T0, shipment=UPS))
    s.ingest(ev("A", "delivered", T0 + timedelta(hours=40), shipment=UPS))
    assert s.timer("A", "predicted_late", "p1") is None
    s.clock.advance(timedelta(days=3))
    assert s.due().notifications == []


def test_no_promise_no_prediction() -> None:
    s = store()
    s.ingest(ev("A", "shipped", T0, shipment={"id": "p1", "carrier": "UPS"}))
    assert s.timer("A", "predicted_late", "p1") is None


def test_too_little_history_looks_again_and_uses_what_was_learned_since() -> None:
    s = store(learned=False)
    s.ingest(ev("A", "shipped", T0, shipment=UPS))
    assert s.timer("A", "predicted_late", "p1") == T0 + timedelta(minutes=10)  # provisional
    s.clock.advance(timedelta(hours=50))
    assert s.due().notifications == []  # nothing to predict from: looks again later
    assert s.timer("A", "predicted_late", "p1") == T0 + timedelta(hours=50, minutes=10)
    s.pipeline.forecast = Forecast(TransitModel.learn(HISTORY, min_sample=30))
    s.clock.advance(timedelta(minutes=10))
    assert sent(s.due()) == [("promise_missed", "predicted_late")]


def test_once_the_promise_has_passed_the_prediction_says_nothing() -> None:
    s = store(learned=False)
    s.ingest(ev("A", "shipped", T0, shipment=UPS))
    s.pipeline.forecast = Forecast(TransitModel.learn(HISTORY, min_sample=30))
    s.clock.advance(timedelta(days=5))  # past the promise: promise_missed's turn
    plan = s.due()
    assert plan.notifications == []
    assert s.orders["A"].timers["predicted_late", "p1"].fired_at is not None
