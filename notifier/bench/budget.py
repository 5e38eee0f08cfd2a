"""The performance budget, judged on one bench run's results.

A budget line is met, not met, or not measured. Any phase may be missing (``--quick``
or ``--skip``), and any number in it may be ``None``; a budget it would decide is then
"not measured". A budget stated at a scale the run did not reach (1,000 ev/s for 60 s,
a million events) is also "not measured", with the value the run did get beside it: a
quick run neither passes nor fails those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from notifier.bench.values import DASH, at, count, fmt, mb, ms, num, per_name, ratio

INGEST_TARGET_PER_S = 10_000.0
CEILING_SHARE_TARGET = 0.5
P99_TARGET_MS = 50.0
LATENCY_RATE_PER_S = 1_000.0
LATENCY_DURATION_S = 60.0
LATENCY_CHANNELS = ("email", "sms", "push")
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


def _latency_line(results: Mapping[str, Any]) -> BudgetLine:
    name, target = "End-to-end p99", f"<= {P99_TARGET_MS:.0f} ms at 1,000 ev/s for 60 s"
    p99 = num(at(results, "latency", "channels", "all", "p99_ms"))
    unsent = num(at(results, "latency", "channels", "all", "unsent")) or 0
    if p99 is None and unsent:
        waited = count(at(results, "latency", "waited_s"))
        return BudgetLine(
            name,
            target,
            f"> {waited} s after publishing ended",
            False,
            f"{count(unsent)} sends (or events) not done by then; the service "
            "could not keep up with the rate",
        )
    if p99 is None:
        return BudgetLine(name, target, DASH, None, "latency phase not run")
    channels = at(results, "latency", "channels") or {}
    per_channel = {c: num(at(channels, c, "p99_ms")) for c in LATENCY_CHANNELS}
    measured_channels = {c: v for c, v in per_channel.items() if v is not None}
    notes = []
    if measured_channels:
        worst = max(measured_channels, key=lambda c: measured_channels[c])
        notes.append(f"worst channel: {worst} {ms(measured_channels[worst])}")
    rate = num(at(results, "latency", "rate_per_s"))
    duration = num(at(results, "latency", "duration_s"))
    achieved = num(at(results, "latency", "achieved_rate_per_s"))
    met: bool | None = p99 <= P99_TARGET_MS
    if (rate or 0) < LATENCY_RATE_PER_S or (duration or 0) < LATENCY_DURATION_S:
        met = None
        notes.append(
            f"run at {count(rate)} ev/s for {count(duration)} s; budget needs 1,000 ev/s for 60 s"
        )
    elif missing := [c for c in LATENCY_CHANNELS if c not in measured_channels]:
        met = None
        notes.append(f"no sends measured on {', '.join(missing)}")
    elif achieved is not None and achieved < 0.95 * LATENCY_RATE_PER_S:
        met = False
        notes.append(f"publishing reached only {count(achieved)} ev/s")
    return BudgetLine(name, target, f"{ms(p99)} (all channels)", met, "; ".join(notes))


def evaluate_budget(results: Mapping[str, Any]) -> list[BudgetLine]:
    """The performance budget, line by line, judged on one run's results."""
    ingest = num(at(results, "ingest", "events_per_s"))
    share = ingest_ratio(results)
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
        BudgetLine(
            "Ingest throughput",
            ">= 10,000 ev/s",
            fmt(ingest, ",.0f", " ev/s"),
            None if ingest is None else ingest >= INGEST_TARGET_PER_S,
            "consume, dedupe, lifecycle, rules, queue; sends excluded",
        ),
        BudgetLine(
            "Ingest vs raw NATS ceiling",
            ">= 50% of the ceiling",
            ratio(share),
            None if share is None else share >= CEILING_SHARE_TARGET,
            "ceiling: a bare JetStream consumer measured in the same run",
        ),
        _latency_line(results),
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
