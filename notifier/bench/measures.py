"""Reading the phases the budget judges but other modules write: the rate sweep
(``results["sweep"]``) and the replica runs (``results["replicas"]``).

Either may be missing (a run without ``--rates`` or ``--replicas``, or an older
results file), and their shapes are read leniently: the keys the sweep and the replica
runs write today first, then the plain alternatives (``rate_per_s`` for ``rate``, a
factor computed from the two rates when none is stored). What cannot be found is None,
and the budget says "not measured".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from notifier.bench.values import at, num

#: the promise a sustained rate keeps: p99 from publish to provider within 2 s
SUSTAINED_P99_MS = 2000.0


@dataclass(frozen=True, slots=True)
class SweepView:
    """What the budget needs from the rate sweep."""

    #: the rates swept, lowest first
    rates: tuple[float, ...]
    #: the highest rate sustained (below the lowest one that was not); None: none was
    sustainable: float | None
    #: the highest rate swept was sustained, so the real limit lies above it
    top_sustained: bool
    #: the rate of the phase at half the sustainable rate, and its p99 (None: later than
    #: the run waited, or not run)
    half_rate: float | None
    half_p99_ms: float | None
    #: sends of the half-rate phase not made when the run stopped waiting
    half_unsent: float | None


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What the budget needs from the replica runs: N, and N replicas' rate over one's."""

    replicas: int | None
    ingest: float | None
    end_to_end: float | None


def _first(mapping: Any, *keys: str) -> Any:
    if not isinstance(mapping, Mapping):
        return None
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)


def _rate(row: Any) -> float | None:
    return num(_first(row, "rate", "rate_per_s"))


def _p99(row: Any) -> float | None:
    found = num(_first(row, "p99_ms"))
    return found if found is not None else num(at(row, "channels", "all", "p99_ms"))


def _sustained(row: Any) -> bool:
    said = _first(row, "sustained")
    if isinstance(said, bool):
        return said
    p99 = _p99(row)
    return p99 is not None and p99 <= SUSTAINED_P99_MS


def sweep_view(results: Mapping[str, Any]) -> SweepView | None:
    """The sweep as the budget reads it; None when the run has none."""
    sweep = at(results, "sweep")
    if not isinstance(sweep, Mapping):
        return None
    rows: Sequence[Any] = _first(sweep, "rates", "rows", "steps") or []
    if not isinstance(rows, Sequence):
        rows = []
    ordered = sorted((r for r in rows if _rate(r) is not None), key=lambda r: _rate(r) or 0.0)
    sustainable = num(_first(sweep, "sustainable_rate", "sustainable_rate_per_s"))
    if sustainable is None:
        for row in ordered:
            if not _sustained(row):
                break
            sustainable = _rate(row)
    rates = tuple(r for r in (_rate(row) for row in ordered) if r is not None)
    half = _first(sweep, "half_rate", "half")
    half_p99 = num(_first(sweep, "p99_at_half_sustainable_ms"))
    return SweepView(
        rates=rates,
        sustainable=sustainable,
        top_sustained=bool(rates) and sustainable is not None and sustainable >= rates[-1],
        half_rate=_rate(half),
        half_p99_ms=half_p99 if half_p99 is not None else _p99(half),
        half_unsent=num(_first(half, "unsent")),
    )


def replica_view(results: Mapping[str, Any]) -> ReplicaView | None:
    """The replica runs as the budget reads them; None when the run has none."""
    replicas = at(results, "replicas")
    if not isinstance(replicas, Mapping):
        return None
    n = num(_first(replicas, "n", "replicas", "count"))
    count = int(n) if n is not None else None

    def factor(*names: str) -> float | None:
        section = _first(replicas, *names)
        stored = num(_first(section, "factor", "scaling"))
        if stored is not None or count is None:
            return stored
        one, many = num(_first(section, "1")), num(_first(section, str(count)))
        return many / one if one and many is not None else None

    return ReplicaView(
        replicas=count,
        ingest=factor("ingest"),
        end_to_end=factor("end_to_end", "e2e"),
    )
