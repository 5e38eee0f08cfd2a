"""The rate sweep and the replicas comparison as tables for ``results.md``: a header
and rows of cells each, which ``report.py`` writes as Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from notifier.bench.sweep import ACHIEVED_SHARE, CHANNELS, SUSTAINED_P99_MS
from notifier.bench.values import DASH, at, count, fmt, ms, num, ratio

Table = tuple[list[str], list[list[str]]]

SWEEP_HEADER = [
    "Rate (ev/s)",
    "Events",
    "p50",
    "p95",
    "p99",
    "max",
    *(f"{channel} p99" for channel in CHANNELS),
    "p99 <= 2 s",
]


def _late(value: Any, unsent: Any) -> str:
    """A percentile, or "late" where it fell among sends not made when the run stopped
    waiting."""
    return "late" if value is None and (num(unsent) or 0) > 0 else ms(value)


def _verdict(row: Mapping[str, Any]) -> str:
    if row.get("sustained"):
        return "yes"
    rate, achieved = num(row.get("rate")), num(row.get("achieved_rate_per_s"))
    if rate is not None and achieved is not None and achieved < ACHIEVED_SHARE * rate:
        return f"no (published only {count(achieved)} ev/s)"
    unsent = num(row.get("unsent")) or 0
    return f"no ({count(unsent)} unsent at the end)" if unsent else "no"


def _sweep_row(row: Mapping[str, Any], label: str) -> list[str]:
    unsent = row.get("unsent")
    channels = row.get("per_channel") or {}
    return [
        label,
        count(row.get("events")),
        *(_late(row.get(key), unsent) for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
        *(
            _late(at(channels, channel, "p99_ms"), at(channels, channel, "unsent"))
            for channel in CHANNELS
        ),
        _verdict(row),
    ]


def sweep_table(results: Mapping[str, Any]) -> Table | None:
    """One row per rate swept, then the phase at half the sustainable rate; None when
    the run had no sweep."""
    rows = at(results, "sweep", "rates")
    if not isinstance(rows, Sequence) or not rows:
        return None
    cells = [_sweep_row(row, count(row.get("rate"))) for row in rows]
    half = at(results, "sweep", "half_rate")
    if isinstance(half, Mapping):
        cells.append(_sweep_row(half, f"{count(half.get('rate'))} (half)"))
    return SWEEP_HEADER, cells


def sweep_summary(results: Mapping[str, Any]) -> str:
    """The sustainable rate and the p99 at half of it, in one sentence."""
    rows = at(results, "sweep", "rates") or []
    best = num(at(results, "sweep", "sustainable_rate"))
    target = f"{SUSTAINED_P99_MS / 1000:g} s"
    if best is None:
        lowest = count(rows[0].get("rate")) if rows else DASH
        return f"Sustainable rate: none; even {lowest} ev/s kept no p99 within {target}."
    if at(results, "sweep", "top_rate_sustained"):
        reach = f"at least {count(best)} ev/s (every rate swept kept p99 within {target})"
    else:
        stopped: Mapping[str, Any] = next((r for r in rows if not r.get("sustained")), {})
        reach = (
            f"{count(best)} ev/s (the highest rate swept with p99 within {target}; "
            f"the sweep stopped at {count(stopped.get('rate'))} ev/s)"
        )
    half = at(results, "sweep", "half_rate") or {}
    p99 = _late(at(results, "sweep", "p99_at_half_sustainable_ms"), half.get("unsent"))
    return f"Sustainable rate: {reach}. p99 at half of it ({count(half.get('rate'))} ev/s): {p99}."


def replicas_table(results: Mapping[str, Any]) -> Table | None:
    """Ingest and end-to-end events/s with one service and with N, and the factor; None
    when the run had no ``--replicas``."""
    n = num(at(results, "replicas", "n"))
    if n is None:
        return None
    many = str(int(n))
    header = ["Phase", "1 service", f"{many} services", "Factor"]

    def row(label: str, *path: str, unit: str) -> list[str]:
        line = at(results, "replicas", *path) or {}
        return [
            label,
            fmt(line.get("1"), ",.0f", unit),
            fmt(line.get(many), ",.0f", unit),
            ratio(line.get("factor")),
        ]

    return header, [
        row("Ingest (sends excluded)", "ingest", unit=" ev/s"),
        row("End to end", "e2e", unit=" ev/s"),
        row("End to end, sends", "e2e", "sends_per_s", unit=" sends/s"),
    ]
