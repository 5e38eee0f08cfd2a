"""The performance budget, judged on one bench run's results.

A budget line is met, not met, or not measured. Any phase may be missing (``--quick``
or ``--skip``), and any number in it may be ``None``; a budget it would decide is then
"not measured". A budget stated at a scale the run did not reach (a million events,
eight cores for replicas) is also "not measured", with the value the run did get beside
it: a quick run neither passes nor fails those.

Throughput is judged as ratios to ceilings measured in the same run (absolute figures
depend on the machine): end to end against the client ceiling (``clients.py``), ingest
against the raw NATS consumer (``ceiling.py``), N replicas against one, the sustainable
rate against the client ceiling's events/s. The sweep and the replica runs are read
through ``measures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from notifier.bench.measures import SweepView, replica_view, sweep_view
from notifier.bench.values import DASH, at, count, fmt, mb, ms, num, per_name, ratio

#: end-to-end sends/s of one process, as a share of the client ceiling
CLIENT_SHARE_TARGET = 0.6
#: ingest (sends excluded) as a share of the raw NATS ceiling; and the line beyond
CEILING_SHARE_TARGET = 0.25
CEILING_SHARE_STRETCH = 0.5
#: four replicas against one, judged only on a machine with this many cores
REPLICAS = 4
REPLICA_FACTOR_TARGET = 3.0
REPLICA_MIN_CORES = 8
#: p99 at half the sustainable rate; the sustainable rate against the client ceiling
P99_TARGET_MS = 100.0
SUSTAINABLE_SHARE_TARGET = 0.5
HALF_LINE = ("p99 at half the sustainable rate", f"<= {P99_TARGET_MS:.0f} ms")
RATE_LINE = (
    "Sustainable rate vs client ceiling",
    f">= {ratio(SUSTAINABLE_SHARE_TARGET)} the ceiling's events/s (p99 <= 2 s)",
)
RSS_TARGET_MB = 200.0
RSS_EVENTS = 1_000_000
GROWTH_TARGET_MB_PER_100K = 5.0
#: below this many events the RSS slope is start-up warm-up, not growth
GROWTH_MIN_EVENTS = 200_000


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One line of the performance budget; ``met`` is ``None`` when the run did not
    measure it at the scale the budget is stated for."""

    name: str
    target: str
    measured: str
    met: bool | None
    note: str = ""


def ingest_ratio(results: Mapping[str, Any]) -> float | None:
    """Ingest throughput as a share of the raw NATS ceiling measured in the same run."""
    measured = num(at(results, "ingest", "ratio_to_ceiling"))
    if measured is not None:
        return measured
    ingest = num(at(results, "ingest", "events_per_s"))
    ceiling = num(at(results, "ceiling", "events_per_s"))
    return ingest / ceiling if ingest is not None and ceiling else None


def _client_line(results: Mapping[str, Any]) -> BudgetLine:
    name, target = (
        "End to end vs client ceiling",
        f">= {ratio(CLIENT_SHARE_TARGET)} the client ceiling",
    )
    share = num(at(results, "client_ceiling", "ratio"))
    ours = at(results, "client_ceiling", "end_to_end_sends_per_s")
    most = at(results, "client_ceiling", "sends_per_s")
    if share is None:
        return BudgetLine(name, target, DASH, None, "client ceiling or end-to-end burst not run")
    channels = at(results, "client_ceiling", "channels") or {}
    notes = [
        "sends/s of one process; per channel "
        + ", ".join(f"{c} {ratio(at(channels, c, 'ratio'))}" for c in channels)
    ]
    if failed := num(at(results, "client_ceiling", "errors")):
        notes.append(f"{count(failed)} ceiling sends failed")
    return BudgetLine(
        name,
        target,
        f"{ratio(share)} ({count(ours)} vs {count(most)} sends/s)",
        share >= CLIENT_SHARE_TARGET,
        "; ".join(notes),
    )


def _ingest_lines(results: Mapping[str, Any]) -> list[BudgetLine]:
    share = ingest_ratio(results)
    measured = f"{ratio(share)} ({count(at(results, 'ingest', 'events_per_s'))} ev/s)"
    note = "sends excluded; ceiling: a bare JetStream consumer measured in the same run"
    return [
        BudgetLine(
            "Ingest vs raw NATS ceiling",
            f">= {ratio(CEILING_SHARE_TARGET)} the ceiling",
            measured,
            None if share is None else share >= CEILING_SHARE_TARGET,
            note,
        ),
        BudgetLine(
            "Ingest vs raw NATS ceiling, beyond",
            f">= {ratio(CEILING_SHARE_STRETCH)} the ceiling",
            measured,
            None if share is None else share >= CEILING_SHARE_STRETCH,
            "the line beyond the budget",
        ),
    ]


def _replica_lines(results: Mapping[str, Any]) -> list[BudgetLine]:
    view = replica_view(results)
    cores = num(at(results, "meta", "machine", "cpus"))
    target = f">= {ratio(REPLICA_FACTOR_TARGET)} one replica, {REPLICAS} replicas"
    lines = []
    for name, factor in (
        ("Replicas: ingest", view.ingest if view else None),
        ("Replicas: end to end", view.end_to_end if view else None),
    ):
        met: bool | None = None
        if view is None:
            note = "run without --replicas"
        elif cores is None or cores < REPLICA_MIN_CORES:
            note = f"{count(cores)} cores; judged only on {REPLICA_MIN_CORES} or more"
        elif view.replicas != REPLICAS:
            note = f"run with {count(view.replicas)} replicas; the budget is for {REPLICAS}"
        elif factor is None:
            note = "no rate for one of the two runs"
        else:
            met, note = factor >= REPLICA_FACTOR_TARGET, "on one PostgreSQL"
        measured = ratio(factor)
        if view is not None and view.replicas is not None and factor is not None:
            measured += f" with {view.replicas}"
        lines.append(BudgetLine(name, target, measured, met, note))
    return lines


def _sweep_lines(results: Mapping[str, Any]) -> list[BudgetLine]:
    view = sweep_view(results)
    if view is None:
        return [
            BudgetLine(*line, DASH, None, "rate sweep not run") for line in (HALF_LINE, RATE_LINE)
        ]
    most = num(at(results, "client_ceiling", "events_per_s"))
    return [_half_line(view, *HALF_LINE), _rate_line(view, most, *RATE_LINE)]


def _half_line(view: SweepView, name: str, target: str) -> BudgetLine:
    at_rate = f"at {count(view.half_rate)} ev/s"
    if view.half_p99_ms is not None:
        met = view.half_p99_ms <= P99_TARGET_MS
        return BudgetLine(name, target, f"{ms(view.half_p99_ms)} {at_rate}", met, "all channels")
    if view.half_rate is not None and view.half_unsent:
        return BudgetLine(
            name, target, f"later than the run waited {at_rate}", False, "sends left unsent"
        )
    note = "no rate of the sweep was sustained" if view.sustainable is None else "not run"
    return BudgetLine(name, target, DASH, None, note)


def _rate_line(view: SweepView, most: float | None, name: str, target: str) -> BudgetLine:
    if not view.rates:
        return BudgetLine(name, target, DASH, None, "the sweep has no rates")
    sustainable = view.sustainable or 0.0
    share = sustainable / most if most else None
    if view.sustainable is None:
        measured = f"below {count(view.rates[0])} ev/s, the lowest rate swept"
    else:
        measured = f"{count(sustainable)} ev/s, {ratio(share)} the ceiling's {count(most)} ev/s"
    if share is None:
        return BudgetLine(name, target, measured, None, "client ceiling not run")
    met: bool | None = share >= SUSTAINABLE_SHARE_TARGET
    note = f"rates swept: {', '.join(count(r) for r in view.rates)} ev/s"
    if view.top_sustained and not met:
        met = None
        note += "; the highest rate swept was sustained: sweep higher"
    return BudgetLine(name, target, measured, met, note)


def evaluate_budget(results: Mapping[str, Any]) -> list[BudgetLine]:
    """The performance budget, line by line, judged on one run's results."""
    memory_events = num(at(results, "memory", "events"))
    peak = num(at(results, "memory", "peak_rss_mb"))
    final = num(at(results, "memory", "final_rss_mb"))
    judged_rss = peak if peak is not None else final
    growth = num(at(results, "memory", "growth_mb_per_100k"))
    growth_note = (
        "slope over the second half of the run, once caches and pools are warm; "
        "5 MB/100k is 50 MB per million events: a leak, not noise"
    )
    growth_met = None if growth is None else growth <= GROWTH_TARGET_MB_PER_100K
    if memory_events is not None and memory_events < GROWTH_MIN_EVENTS:
        growth_met = None
        growth_note = (
            f"run processed {count(memory_events)} events; a slope needs at least "
            f"{GROWTH_MIN_EVENTS:,} (below that, start-up warm-up dominates)"
        )
    after = at(results, "memory", "store_rows_after_retention")
    kept = [num(n) for n in after.values()] if isinstance(after, Mapping) and after else None
    rss_met: bool | None = None
    rss_note = "judged on peak RSS"
    if memory_events is None:
        rss_note = "memory phase not run"
    elif memory_events < RSS_EVENTS:
        rss_note = f"run processed {count(memory_events)} events; budget is for 1,000,000"
    elif judged_rss is not None:
        rss_met = judged_rss <= RSS_TARGET_MB

    return [
        _client_line(results),
        *_ingest_lines(results),
        *_replica_lines(results),
        *_sweep_lines(results),
        BudgetLine(
            "Memory",
            "RSS <= 200 MB after 1,000,000 events",
            f"peak {mb(peak)}, final {mb(final)}",
            rss_met,
            rss_note,
        ),
        BudgetLine(
            "Memory growth",
            "<= 5.0 MB per 100k events",
            fmt(growth, ".1f", " MB/100k"),
            growth_met,
            growth_note,
        ),
        BudgetLine(
            "Storage bounded by retention",
            "0 rows left past retention",
            per_name(after),
            *_retention_verdict(results, kept),
        ),
    ]


def _retention_verdict(
    results: Mapping[str, Any], kept: list[float | None] | None
) -> tuple[bool | None, str]:
    if kept is None or None in kept:
        return None, "retention pass not run"
    if at(results, "ingest", "dispatch_settled") is False:
        return None, (
            "sends were still in flight when the store was measured, and "
            "retention keeps unsent notifications"
        )
    return all(n == 0 for n in kept), (
        "rows older than the retention period are removed by the retention pass"
    )
