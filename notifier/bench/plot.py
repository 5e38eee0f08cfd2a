"""The bench run as a PNG: the rate sweep, latency and throughput over time, RSS
against events.

Drawn on a bare ``Figure`` with the Agg canvas, never pyplot, so that no global
backend is chosen; the budget lines drawn are ``budget.py``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from notifier.bench.budget import P99_TARGET_MS, RSS_TARGET_MB
from notifier.bench.sweep import SUSTAINED_P99_MS
from notifier.bench.values import DASH, at, num


def _series(rows: Any, x: str, y: str) -> tuple[list[float], list[float]]:
    points = [(num(at(row, x)), num(at(row, y))) for row in rows or []]
    kept = [(a, b) for a, b in points if a is not None and b is not None]
    return [a for a, _ in kept], [b for _, b in kept]


def _latency_panel(ax: Axes, timeline: Any) -> None:
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        ax.plot(*_series(timeline, "t", key), label=label, marker=".")
    ax.axhline(
        P99_TARGET_MS, color="red", linestyle="--", label=f"p99 budget ({P99_TARGET_MS:.0f} ms)"
    )
    ax.set(title="End-to-end latency", xlabel="seconds since publishing began", ylabel="ms")
    worst = max(_series(timeline, "t", "p99_ms")[1], default=0.0)
    if worst > 20 * P99_TARGET_MS:
        # an overloaded run climbs to minutes; the budget line must stay readable
        ax.set_yscale("log")


def _throughput_panel(ax: Axes, timeline: Any) -> None:
    for key, label in (("published", "published/s"), ("sent", "sent/s")):
        ax.plot(*_series(timeline, "t", key), label=label, marker=".")
    ax.set(title="Throughput", xlabel="seconds since publishing began", ylabel="per second")


def _sweep_panel(ax: Axes, sweep: Any) -> None:
    rows = at(sweep, "rates") or []
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        ax.plot(*_series(rows, "rate", key), label=label, marker="o")
    # a rate whose percentile fell among unsent sends has no number: mark it at the top
    late = [num(at(row, "rate")) for row in rows if at(row, "p99_ms") is None]
    if late_rates := [rate for rate in late if rate is not None]:
        ax.plot(
            late_rates,
            [1.0] * len(late_rates),
            "r^",
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="p99 later than the run waited",
        )
    ax.axhline(SUSTAINED_P99_MS, color="red", linestyle="--", label="p99 limit (2 s)")
    best = num(at(sweep, "sustainable_rate"))
    if best is not None:
        ax.axvline(best, color="green", linestyle=":", label=f"sustainable: {best:,.0f} ev/s")
    half = at(sweep, "half_rate")
    rate, p99 = num(at(half, "rate")), num(at(half, "p99_ms"))
    if rate is not None and p99 is not None:
        ax.plot([rate], [p99], "g*", markersize=10, label="p99 at half the sustainable rate")
    ax.set(title="Rate sweep", xlabel="offered rate (events/s)", ylabel="latency (ms)")
    ax.set_xscale("log", base=2)
    swept = [num(at(row, "rate")) for row in [*rows, half]]
    ticks = sorted({r for r in swept if r is not None})
    ax.set_xticks(ticks, [f"{r:,.0f}" for r in ticks])
    ax.set_yscale("log")


def _memory_panel(ax: Axes, samples: Any) -> None:
    ax.plot(*_series(samples, "events", "rss_mb"), label="RSS", marker=".")
    ax.axhline(RSS_TARGET_MB, color="red", linestyle="--", label="budget (200 MB)")
    ax.set(title="Memory", xlabel="events processed", ylabel="RSS (MB)")
    ax.xaxis.set_major_formatter("{x:,.0f}")


def plot(results: Mapping[str, Any], path: Path) -> None:
    """Draw the rate sweep (p50 and p99 against the offered rate), latency and
    throughput over time (the phase at half the sustainable rate) and RSS against
    events into a PNG at ``path``; a panel whose data the run lacks is left out (the
    PNG is always written).

    Uses a bare ``Figure`` on the Agg canvas: no pyplot, so no global backend choice.
    """
    timeline = at(results, "latency", "timeline")
    samples = at(results, "memory", "samples")
    sweep = at(results, "sweep")
    panels = [
        (draw, data)
        for draw, data in (
            (_sweep_panel, sweep if at(sweep, "rates") else None),
            (_latency_panel, timeline),
            (_throughput_panel, timeline),
            (_memory_panel, samples),
        )
        if data
    ]
    fig = Figure(figsize=(9, 3.2 * max(len(panels), 1)), layout="constrained")
    FigureCanvasAgg(fig)
    meta = at(results, "meta") or {}
    machine = at(meta, "machine") or {}
    fig.suptitle(
        f"notifier bench, {meta.get('database', DASH)}, {meta.get('started_at', DASH)}\n"
        f"{machine.get('cpus', DASH)} CPUs ({machine.get('cpu_model', DASH)}), "
        f"Python {machine.get('python', DASH)}, {machine.get('platform', DASH)}",
        fontsize=9,
    )
    if not panels:
        ax = fig.add_subplot()
        ax.text(
            0.5,
            0.5,
            "no rate sweep, latency timeline or memory samples in this run",
            ha="center",
            va="center",
        )
        ax.set_axis_off()
    for index, (draw, data) in enumerate(panels, start=1):
        ax = fig.add_subplot(len(panels), 1, index)
        draw(ax, data)
        if ax.get_yscale() == "linear":
            ax.set_ylim(0, max(ax.dataLim.y1, 1.0) * 1.08)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.savefig(path, format="png", dpi=100)
