"""How long parcels take, learned from the store's own history: the predicted-late model.

For every shipment that was delivered, the transit time is the time from its first
``shipped`` event to its ``delivered`` event. The model keeps, per carrier and per
(carrier, source), the transit times of the most recent deliveries, and answers one
question: by when has a parcel of this carrier (from this source) normally arrived, at
a chosen percentile? A shipment still undelivered at that moment, before the date the
customer was promised, will probably be late: that is when a ``predicted_late`` rule
warns. A group with fewer than ``min_sample`` deliveries has no answer (no warning):
(carrier, source) falls back to the carrier, the carrier to nothing.

Pure: the samples come from ``notifier.store.transit``; nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: fewer deliveries than this in a group, and the group predicts nothing
DEFAULT_MIN_SAMPLE = 30


@dataclass(frozen=True, slots=True)
class TransitSample:
    """One delivered shipment."""

    carrier: str
    source: str
    shipped_at: datetime
    delivered_at: datetime

    @property
    def hours(self) -> float:
        """Transit time in hours."""
        return (self.delivered_at - self.shipped_at).total_seconds() / 3600


def percentile(sorted_hours: list[float], pct: float) -> float:
    """The nearest-rank percentile of an ascending list (``pct`` in (0, 100]): the
    smallest value with at least ``pct`` percent of the values at or below it."""
    if not sorted_hours:
        raise ValueError("no values")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {pct}")
    rank = max(1, math.ceil(pct / 100 * len(sorted_hours)))
    return sorted_hours[rank - 1]


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the model knows of one group."""

    #: carrier, or carrier/source
    group: str
    sample: int
    hours: float


@dataclass(slots=True)
class TransitModel:
    """Transit-time percentiles per carrier and per (carrier, source)."""

    min_sample: int = DEFAULT_MIN_SAMPLE
    _by_carrier: Mapping[str, list[float]] = field(default_factory=dict)
    _by_source: Mapping[tuple[str, str], list[float]] = field(default_factory=dict)

    @classmethod
    def learn(cls, samples: Iterable[TransitSample], *, min_sample: int) -> TransitModel:
        """Build the model from delivered shipments; negative transit times (a delivery
        stamped before its shipping, a clock gone wrong) are left out."""
        by_carrier: dict[str, list[float]] = defaultdict(list)
        by_source: dict[tuple[str, str], list[float]] = defaultdict(list)
        for sample in samples:
            hours = sample.hours
            if hours < 0:
                continue
            carrier = sample.carrier.lower()
            by_carrier[carrier].append(hours)
            by_source[(carrier, sample.source)].append(hours)
        for values in (*by_carrier.values(), *by_source.values()):
            values.sort()
        return cls(min_sample, dict(by_carrier), dict(by_source))

    def estimate(self, carrier: str | None, source: str, pct: float) -> Estimate | None:
        """The ``pct`` percentile transit time for the most specific group with enough
        deliveries, or ``None`` (unknown carrier, too little history)."""
        if not carrier:
            return None
        carrier = carrier.lower()
        specific = self._by_source.get((carrier, source), [])
        if len(specific) >= self.min_sample:
            return Estimate(f"{carrier}/{source}", len(specific), percentile(specific, pct))
        general = self._by_carrier.get(carrier, [])
        if len(general) >= self.min_sample:
            return Estimate(carrier, len(general), percentile(general, pct))
        return None

    def warn_at(
        self,
        carrier: str | None,
        source: str,
        shipped_at: datetime,
        promised: datetime | None,
        pct: float,
    ) -> datetime | None:
        """When an undelivered shipment becomes "probably late": ``shipped_at`` plus the
        percentile's transit time, if that comes before the promise (after it, the
        promise-missed rule speaks instead). ``None``: nothing to predict."""
        if promised is None:
            return None
        estimate = self.estimate(carrier, source, pct)
        if estimate is None:
            return None
        due = shipped_at + timedelta(hours=estimate.hours)
        return due if due < promised else None

    def groups(self) -> dict[str, int]:
        """Deliveries known per group (carrier, and carrier/source), for the API."""
        known = {carrier: len(v) for carrier, v in self._by_carrier.items()}
        known.update({f"{c}/{s}": len(v) for (c, s), v in self._by_source.items()})
        return known


@dataclass(frozen=True, slots=True)
class Forecast:
    """What ``predicted_late`` rules consult: the model as last learned, and how soon to
    look again at a shipment it could not predict (too little history yet)."""

    model: TransitModel = field(default_factory=TransitModel)
    recheck: timedelta = timedelta(minutes=10)
