"""What a bench run found, for people: the budget verdicts, Markdown, a PNG, and JSON.

Input is the runner's results dict. Any phase may be missing (``--quick`` or
``--skip``), and any number in it may be ``None``; a missing value shows as "—" and a
budget it would decide is "not measured". A budget stated at a scale the run did not
reach (1,000 ev/s for 60 s, a million events) is also "not measured", with the value
the run did get beside it: a quick run neither passes nor fails those.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DASH = "\u2014"
TIMES = "\u00d7"
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


def _at(results: Mapping[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _fmt(value: Any, spec: str, unit: str = "") -> str:
    number = _num(value)
    return DASH if number is None else f"{number:{spec}}{unit}"


_count = partial(_fmt, spec=",.0f")
_ms = partial(_fmt, spec=".1f", unit=" ms")
_mb = partial(_fmt, spec=".1f", unit=" MB")


def _ratio(value: Any) -> str:
    number = _num(value)
    if number is None:
        return DASH
    return f"{number:.2f}{TIMES}" if number < 1 else f"{number:.1f}{TIMES}"


def _megabytes(size: Any) -> float | None:
    number = _num(size)
    return None if number is None else number / 1_000_000


def _rows(counts: Any) -> str:
    if not isinstance(counts, Mapping) or not counts:
        return DASH
    return ", ".join(f"{name} {_count(n)}" for name, n in counts.items())


def _ingest_ratio(results: Mapping[str, Any]) -> float | None:
    ratio = _num(_at(results, "ingest", "ratio_to_ceiling"))
    if ratio is not None:
        return ratio
    ingest = _num(_at(results, "ingest", "events_per_s"))
    ceiling = _num(_at(results, "ceiling", "events_per_s"))
    return ingest / ceiling if ingest is not None and ceiling else None


def _latency_line(results: Mapping[str, Any]) -> BudgetLine:
    name, target = "End-to-end p99", f"<= {P99_TARGET_MS:.0f} ms at 1,000 ev/s for 60 s"
    p99 = _num(_at(results, "latency", "channels", "all", "p99_ms"))
    unsent = _num(_at(results, "latency", "channels", "all", "unsent")) or 0
    if p99 is None and unsent:
        waited = _count(_at(results, "latency", "waited_s"))
        return BudgetLine(name, target, f"> {waited} s after publishing ended", False,
                          f"{_count(unsent)} sends (or events) not done by then; the service "
                          "could not keep up with the rate")
    if p99 is None:
        return BudgetLine(name, target, DASH, None, "latency phase not run")
    channels = _at(results, "latency", "channels") or {}
    per_channel = {c: _num(_at(channels, c, "p99_ms")) for c in LATENCY_CHANNELS}
    measured_channels = {c: v for c, v in per_channel.items() if v is not None}
    notes = []
    if measured_channels:
        worst = max(measured_channels, key=lambda c: measured_channels[c])
        notes.append(f"worst channel: {worst} {_ms(measured_channels[worst])}")
    rate = _num(_at(results, "latency", "rate_per_s"))
    duration = _num(_at(results, "latency", "duration_s"))
    achieved = _num(_at(results, "latency", "achieved_rate_per_s"))
    met: bool | None = p99 <= P99_TARGET_MS
    if (rate or 0) < LATENCY_RATE_PER_S or (duration or 0) < LATENCY_DURATION_S:
        met = None
        notes.append(
            f"run at {_count(rate)} ev/s for {_count(duration)} s; "
            "budget needs 1,000 ev/s for 60 s"
        )
    elif missing := [c for c in LATENCY_CHANNELS if c not in measured_channels]:
        met = None
        notes.append(f"no sends measured on {', '.join(missing)}")
    elif achieved is not None and achieved < 0.95 * LATENCY_RATE_PER_S:
        met = False
        notes.append(f"publishing reached only {_count(achieved)} ev/s")
    return BudgetLine(name, target, f"{_ms(p99)} (all channels)", met, "; ".join(notes))


def evaluate_budget(results: Mapping[str, Any]) -> list[BudgetLine]:
    """The performance budget, line by line, judged on one run's results."""
    ingest = _num(_at(results, "ingest", "events_per_s"))
    share = _ingest_ratio(results)
    memory_events = _num(_at(results, "memory", "events"))
    peak = _num(_at(results, "memory", "peak_rss_mb"))
    final = _num(_at(results, "memory", "final_rss_mb"))
    judged_rss = peak if peak is not None else final
    growth = _num(_at(results, "memory", "growth_mb_per_100k"))
    growth_note = ("slope over the second half of the run, once caches and pools are warm; "
                   "5 MB/100k is 50 MB per million events: a leak, not noise")
    growth_met = None if growth is None else growth <= GROWTH_TARGET_MB_PER_100K
    if memory_events is not None and memory_events < GROWTH_MIN_EVENTS:
        growth_met = None
        growth_note = (f"run processed {_count(memory_events)} events; a slope needs at least "
                       f"{GROWTH_MIN_EVENTS:,} (below that, start-up warm-up dominates)")
    after = _at(results, "memory", "store_rows_after_retention")
    kept = [_num(n) for n in after.values()] if isinstance(after, Mapping) and after else None
    rss_met: bool | None = None
    rss_note = "judged on peak RSS"
    if memory_events is None:
        rss_note = "memory phase not run"
    elif memory_events < RSS_EVENTS:
        rss_note = f"run processed {_count(memory_events)} events; budget is for 1,000,000"
    elif judged_rss is not None:
        rss_met = judged_rss <= RSS_TARGET_MB

    return [
        BudgetLine(
            "Ingest throughput", ">= 10,000 ev/s", _fmt(ingest, ",.0f", " ev/s"),
            None if ingest is None else ingest >= INGEST_TARGET_PER_S,
            "consume, dedupe, lifecycle, rules, queue; sends excluded",
        ),
        BudgetLine(
            "Ingest vs raw NATS ceiling", ">= 50% of the ceiling", _ratio(share),
            None if share is None else share >= CEILING_SHARE_TARGET,
            "ceiling: a bare JetStream consumer measured in the same run",
        ),
        _latency_line(results),
        BudgetLine(
            "Memory", "RSS <= 200 MB after 1,000,000 events",
            f"peak {_mb(peak)}, final {_mb(final)}", rss_met, rss_note,
        ),
        BudgetLine(
            "Memory growth", "<= 5.0 MB per 100k events", _fmt(growth, ".1f", " MB/100k"),
            growth_met, growth_note,
        ),
        BudgetLine(
            "Storage bounded by retention", "0 rows left past retention", _rows(after),
            *_retention_verdict(results, kept),
        ),
    ]


def _retention_verdict(
    results: Mapping[str, Any], kept: list[float | None] | None
) -> tuple[bool | None, str]:
    if kept is None or None in kept:
        return None, "retention pass not run"
    if _at(results, "ingest", "dispatch_settled") is False:
        return None, ("sends were still in flight when the store was measured, and "
                      "retention keeps unsent notifications")
    return all(n == 0 for n in kept), (
        "rows older than the retention period are removed by the retention pass")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def _null_sends(r: Mapping[str, Any]) -> str:
    made = _num(_at(r, "ingest", "notifications"))
    unsent = _num(_at(r, "ingest", "notifications_unsent")) or 0
    seconds = _fmt(_num(_at(r, "ingest", "with_dispatch_seconds")), ".1f", " s")
    if made is None:
        return DASH
    if not unsent:
        return f"all {_count(made)} notifications sent {seconds} after ingest began"
    return (f"{_count(made - unsent)} of {_count(made)} notifications sent {seconds} after "
            f"ingest began; {_count(unsent)} still queued when the run stopped waiting")


def _results_rows(results: Mapping[str, Any]) -> list[list[str]]:
    r = results
    rows = [
        ["Raw NATS ceiling", "ceiling", f"{_count(_at(r, 'ceiling', 'events_per_s'))} ev/s "
         f"({_count(_at(r, 'ceiling', 'events'))} events)"],
        ["Ingest (sends excluded)", "ingest", f"{_count(_at(r, 'ingest', 'events_per_s'))} "
         f"ev/s, {_ratio(_ingest_ratio(r))} the ceiling"],
        ["Ingest + null sends", "ingest", _null_sends(r)],
        ["End-to-end throughput", "end_to_end",
         f"{_count(_at(r, 'end_to_end', 'events_per_s'))} ev/s, "
         f"{_count(_at(r, 'end_to_end', 'sends_per_s'))} sends/s "
         f"({_rows(_at(r, 'end_to_end', 'sends'))})"],
    ]
    rate = f"{_count(_at(r, 'latency', 'rate_per_s'))} ev/s"
    channels = _at(r, "latency", "channels")
    if not isinstance(channels, Mapping) or not channels:
        rows.append(["Latency (p50 / p95 / p99 / max)", "latency", DASH])
    for channel in channels if isinstance(channels, Mapping) else []:
        stats = [_at(channels, channel, f"{p}_ms") for p in ("p50", "p95", "p99", "max")]
        late = _num(_at(channels, channel, "unsent")) or 0
        rows.append([f"Latency {channel} at {rate} (p50 / p95 / p99 / max)", "latency",
                     " / ".join(_ms(v) if v is not None or not late else "late" for v in stats)
                     + (f" ({_count(late)} not sent within "
                        f"{_count(_at(r, 'latency', 'waited_s'))} s of the end)" if late else "")])
    rows += [
        ["RSS (peak / final)", "memory", f"{_mb(_at(r, 'memory', 'peak_rss_mb'))} / "
         f"{_mb(_at(r, 'memory', 'final_rss_mb'))} after "
         f"{_count(_at(r, 'memory', 'events'))} events"],
        ["Store size", "memory", f"{_mb(_megabytes(_at(r, 'memory', 'store_bytes')))}; "
         f"rows {_rows(_at(r, 'memory', 'store_rows'))}"],
        ["Email: notifier vs Apprise", "peer", f"{_count(_at(r, 'peer', 'notifier', 'per_s'))}"
         f" vs {_count(_at(r, 'peer', 'apprise', 'per_s'))} msg/s, "
         f"{_ratio(_at(r, 'peer', 'ratio'))} ({_count(_at(r, 'peer', 'messages'))} messages)"],
    ]
    # a phase the run skipped is one dash, not a row of them
    return [[label, text if _at(r, phase) else DASH] for label, phase, text in rows]


def to_markdown(results: Mapping[str, Any], budget: Sequence[BudgetLine]) -> str:
    """The run as a compact Markdown document: what was measured, then the budget."""
    meta = _at(results, "meta") or {}
    machine = _at(meta, "machine") or {}
    lines = [
        "# notifier bench",
        "",
        f"`{meta.get('command', DASH)}` at {meta.get('started_at', DASH)} on "
        f"{machine.get('cpus', DASH)} CPUs ({machine.get('cpu_model', DASH)}), "
        f"Python {machine.get('python', DASH)}, database {meta.get('database', DASH)}",
        "",
        "## Results",
        "",
        *_table(["Measure", "Result"], _results_rows(results)),
        "",
        "## Budget",
        "",
        *_table(
            ["Budget", "Target", "Measured", "Verdict", "Note"],
            [[b.name, b.target, b.measured, _verdict(b.met), b.note] for b in budget],
        ),
    ]
    return "\n".join(lines) + "\n"


def console_table(results: Mapping[str, Any], budget: Sequence[BudgetLine]) -> str:
    """What the terminal shows at the end of a run: the Markdown reads fine as text."""
    return to_markdown(results, budget)


def _series(rows: Any, x: str, y: str) -> tuple[list[float], list[float]]:
    points = [(_num(_at(row, x)), _num(_at(row, y))) for row in rows or []]
    kept = [(a, b) for a, b in points if a is not None and b is not None]
    return [a for a, _ in kept], [b for _, b in kept]


def _latency_panel(ax: Axes, timeline: Any) -> None:
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        ax.plot(*_series(timeline, "t", key), label=label, marker=".")
    ax.axhline(P99_TARGET_MS, color="red", linestyle="--", label="p99 budget (50 ms)")
    ax.set(title="End-to-end latency", xlabel="seconds since publishing began", ylabel="ms")
    worst = max(_series(timeline, "t", "p99_ms")[1], default=0.0)
    if worst > 20 * P99_TARGET_MS:
        # an overloaded run climbs to minutes; the budget line must stay readable
        ax.set_yscale("log")


def _throughput_panel(ax: Axes, timeline: Any) -> None:
    for key, label in (("published", "published/s"), ("sent", "sent/s")):
        ax.plot(*_series(timeline, "t", key), label=label, marker=".")
    ax.set(title="Throughput", xlabel="seconds since publishing began", ylabel="per second")


def _memory_panel(ax: Axes, samples: Any) -> None:
    ax.plot(*_series(samples, "events", "rss_mb"), label="RSS", marker=".")
    ax.axhline(RSS_TARGET_MB, color="red", linestyle="--", label="budget (200 MB)")
    ax.set(title="Memory", xlabel="events processed", ylabel="RSS (MB)")
    ax.xaxis.set_major_formatter("{x:,.0f}")


def plot(results: Mapping[str, Any], path: Path) -> None:
    """Draw latency and throughput over time and RSS against events into a PNG at
    ``path``; a panel whose data the run lacks is left out (the PNG is always written).

    Uses a bare ``Figure`` on the Agg canvas: no pyplot, so no global backend choice.
    """
    timeline = _at(results, "latency", "timeline")
    samples = _at(results, "memory", "samples")
    panels = [
        (draw, data)
        for draw, data in ((_latency_panel, timeline), (_throughput_panel, timeline),
                           (_memory_panel, samples))
        if data
    ]
    fig = Figure(figsize=(9, 3.2 * max(len(panels), 1)), layout="constrained")
    FigureCanvasAgg(fig)
    meta = _at(results, "meta") or {}
    machine = _at(meta, "machine") or {}
    fig.suptitle(
        f"notifier bench, {meta.get('database', DASH)}, {meta.get('started_at', DASH)}\n"
        f"{machine.get('cpus', DASH)} CPUs ({machine.get('cpu_model', DASH)}), "
        f"Python {machine.get('python', DASH)}, {machine.get('platform', DASH)}",
        fontsize=9,
    )
    if not panels:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no latency timeline or memory samples in this run",
                ha="center", va="center")
        ax.set_axis_off()
    for index, (draw, data) in enumerate(panels, start=1):
        ax = fig.add_subplot(len(panels), 1, index)
        draw(ax, data)
        if ax.get_yscale() == "linear":
            ax.set_ylim(0, max(ax.dataLim.y1, 1.0) * 1.08)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.savefig(path, format="png", dpi=100)


def write_outputs(results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``results.json`` (with the budget), ``results.md`` and ``results.png``
    into ``out_dir`` and return their paths by kind (``json``, ``markdown``, ``png``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = evaluate_budget(results)
    paths = {
        "json": out_dir / "results.json",
        "markdown": out_dir / "results.md",
        "png": out_dir / "results.png",
    }
    document = {**results, "budget": [asdict(line) for line in budget]}
    paths["json"].write_text(json.dumps(document, indent=2, default=str) + "\n")
    paths["markdown"].write_text(to_markdown(results, budget))
    plot(results, paths["png"])
    return paths
