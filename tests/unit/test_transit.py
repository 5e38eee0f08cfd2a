"""The predicted-late model: percentiles per carrier, fallbacks, and when it stays silent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.core.transit import TransitModel, TransitSample, percentile

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def history(carrier: str, source: str, hours: list[float]) -> list[TransitSample]:
    return [TransitSample(carrier, source, T0, T0 + timedelta(hours=h)) for h in hours]


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([1.0], 90, 1.0),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 100, 10),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50, 5),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 1, 1),
    ],
)
def test_nearest_rank_percentile(values: list[float], pct: float, expected: float) -> None:
    assert percentile(sorted(values), pct) == expected


@pytest.mark.parametrize("pct", [0, -5, 101])
def test_a_percentile_out_of_range_is_refused(pct: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], pct)


# 40 UPS parcels: 36 within two days, 4 take five: the 90th percentile is 48 h
UPS = history("UPS", "web", [24.0] * 20 + [48.0] * 16 + [120.0] * 4)


def test_warns_once_the_carriers_percentile_has_passed_before_the_promise() -> None:
    model = TransitModel.learn(UPS, min_sample=30)
    shipped = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    promised = shipped + timedelta(days=4)
    assert model.warn_at("ups", "web", shipped, promised, 90) == shipped + timedelta(hours=48)
    # the 95th percentile is five days: after the promise, so the promise rule speaks
    assert model.warn_at("ups", "web", shipped, promised, 95) is None


def test_silent_where_the_percentile_is_not_exceeded_before_the_promise() -> None:
    model = TransitModel.learn(UPS, min_sample=30)
    shipped = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert model.warn_at("UPS", "web", shipped, shipped + timedelta(hours=30), 90) is None
    assert model.warn_at("UPS", "web", shipped, None, 90) is None


def test_too_little_history_or_an_unknown_carrier_predicts_nothing() -> None:
    model = TransitModel.learn(UPS[:29], min_sample=30)
    shipped = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert model.estimate("ups", "web", 90) is None
    assert model.warn_at("ups", "web", shipped, shipped + timedelta(days=9), 90) is None
    full = TransitModel.learn(UPS, min_sample=30)
    assert full.estimate("dhl", "web", 90) is None
    assert full.estimate(None, "web", 90) is None


def test_a_source_with_enough_history_of_its_own_is_used_before_the_carrier() -> None:
    shop = history("UPS", "shopify", [72.0] * 30)
    model = TransitModel.learn(UPS + shop, min_sample=30)
    own = model.estimate("ups", "shopify", 90)
    assert own is not None and (own.group, own.sample, own.hours) == ("ups/shopify", 30, 72.0)
    # a source with too little of its own falls back to the carrier as a whole
    thin = TransitModel.learn(UPS + shop[:5], min_sample=30)
    carrier = thin.estimate("ups", "shopify", 90)
    assert carrier is not None and (carrier.group, carrier.sample) == ("ups", 45)


def test_deliveries_stamped_before_their_shipping_are_left_out() -> None:
    wrong = [TransitSample("UPS", "web", T0, T0 - timedelta(hours=3))] * 50
    model = TransitModel.learn(wrong, min_sample=30)
    assert model.estimate("ups", "web", 90) is None
    assert model.groups() == {}
