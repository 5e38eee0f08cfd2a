"""What a bench run found, for people: the budget verdicts, Markdown, a PNG, and JSON.

Input is the runner's results dict. The verdicts are ``budget.py``'s and the PNG is
``plot.py``'s; this module writes the Markdown (also what the terminal shows) and puts
the three outputs and the JSON side by side. A missing value shows as "—"
(``values.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from notifier.bench.budget import BudgetLine, evaluate_budget, ingest_ratio
from notifier.bench.plot import plot
from notifier.bench.sweep_report import replicas_table, sweep_summary, sweep_table
from notifier.bench.values import DASH, at, count, fmt, mb, megabytes, ms, num, per_name, ratio

#: the CLI takes the verdicts from here with the outputs they go into
__all__ = ["BudgetLine", "console_table", "evaluate_budget", "to_markdown", "write_outputs"]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def _null_sends(r: Mapping[str, Any]) -> str:
    made = num(at(r, "ingest", "notifications"))
    unsent = num(at(r, "ingest", "notifications_unsent")) or 0
    seconds = fmt(num(at(r, "ingest", "with_dispatch_seconds")), ".1f", " s")
    if made is None:
        return DASH
    if not unsent:
        return f"all {count(made)} notifications sent {seconds} after ingest began"
    return (
        f"{count(made - unsent)} of {count(made)} notifications sent {seconds} after "
        f"ingest began; {count(unsent)} still queued when the run stopped waiting"
    )


def _client_ceiling(r: Mapping[str, Any]) -> str:
    channels = at(r, "client_ceiling", "channels") or {}
    rates = ", ".join(f"{c} {count(at(channels, c, 'sends_per_s'))}" for c in channels)
    failed = num(at(r, "client_ceiling", "errors")) or 0
    return (
        f"{count(at(r, 'client_ceiling', 'sends_per_s'))} sends/s ({rates}), "
        f"{count(at(r, 'client_ceiling', 'events_per_s'))} ev/s; "
        f"{count(at(r, 'client_ceiling', 'sends'))} sends"
        + (f", {count(failed)} failed" if failed else "")
    )


def _client_shares(r: Mapping[str, Any]) -> str:
    channels = at(r, "client_ceiling", "channels") or {}
    shares = ", ".join(f"{c} {ratio(at(channels, c, 'ratio'))}" for c in channels)
    return f"{ratio(at(r, 'client_ceiling', 'ratio'))} in sends/s ({shares})"


def _cores(meta: Mapping[str, Any]) -> str:
    cores = at(meta, "cores")
    if not isinstance(cores, Mapping):
        return ""
    load = fmt(cores.get("load_average_at_start"), ".1f")
    return f"Cores: {cores.get('note', DASH)}; load average {load} when the run began."


def _results_rows(results: Mapping[str, Any]) -> list[list[str]]:
    r = results
    rows = [
        [
            "Raw NATS ceiling",
            "ceiling",
            f"{count(at(r, 'ceiling', 'events_per_s'))} ev/s "
            f"({count(at(r, 'ceiling', 'events'))} events)",
        ],
        [
            "Ingest (sends excluded)",
            "ingest",
            f"{count(at(r, 'ingest', 'events_per_s'))} ev/s, {ratio(ingest_ratio(r))} the ceiling",
        ],
        ["Ingest + null sends", "ingest", _null_sends(r)],
        [
            "End-to-end throughput",
            "end_to_end",
            f"{count(at(r, 'end_to_end', 'events_per_s'))} ev/s, "
            f"{count(at(r, 'end_to_end', 'sends_per_s'))} sends/s "
            f"({per_name(at(r, 'end_to_end', 'sends'))})",
        ],
        ["Client ceiling (our clients alone)", "client_ceiling", _client_ceiling(r)],
        ["End to end vs client ceiling", "client_ceiling", _client_shares(r)],
    ]
    rate = f"{count(at(r, 'latency', 'rate_per_s'))} ev/s"
    channels = at(r, "latency", "channels")
    if not isinstance(channels, Mapping) or not channels:
        rows.append(["Latency (p50 / p95 / p99 / max)", "latency", DASH])
    for channel in channels if isinstance(channels, Mapping) else []:
        stats = [at(channels, channel, f"{p}_ms") for p in ("p50", "p95", "p99", "max")]
        late = num(at(channels, channel, "unsent")) or 0
        rows.append(
            [
                f"Latency {channel} at {rate} (p50 / p95 / p99 / max)",
                "latency",
                " / ".join(ms(v) if v is not None or not late else "late" for v in stats)
                + (
                    f" ({count(late)} not sent within "
                    f"{count(at(r, 'latency', 'waited_s'))} s of the end)"
                    if late
                    else ""
                ),
            ]
        )
    rows += [
        [
            "RSS (peak / final)",
            "memory",
            f"{mb(at(r, 'memory', 'peak_rss_mb'))} / "
            f"{mb(at(r, 'memory', 'final_rss_mb'))} after "
            f"{count(at(r, 'memory', 'events'))} events",
        ],
        [
            "Store size",
            "memory",
            f"{mb(megabytes(at(r, 'memory', 'store_bytes')))}; "
            f"rows {per_name(at(r, 'memory', 'store_rows'))}",
        ],
        [
            "Email: notifier vs Apprise",
            "peer",
            f"{count(at(r, 'peer', 'notifier', 'per_s'))}"
            f" vs {count(at(r, 'peer', 'apprise', 'per_s'))} msg/s, "
            f"{ratio(at(r, 'peer', 'ratio'))} ({count(at(r, 'peer', 'messages'))} messages)",
        ],
    ]
    # a phase the run skipped is one dash, not a row of them
    return [[label, text if at(r, phase) else DASH] for label, phase, text in rows]


def _sweep_sections(results: Mapping[str, Any]) -> list[str]:
    """The rate sweep and the replicas comparison, where the run has them."""
    lines: list[str] = []
    if sweep := sweep_table(results):
        lines += ["## Rate sweep", "", *_table(*sweep), "", sweep_summary(results), ""]
    if replicas := replicas_table(results):
        lines += ["## Replicas", "", *_table(*replicas), ""]
    return lines


def to_markdown(results: Mapping[str, Any], budget: Sequence[BudgetLine]) -> str:
    """The run as a compact Markdown document: what was measured, then the budget."""
    meta = at(results, "meta") or {}
    machine = at(meta, "machine") or {}
    lines = [
        "# notifier bench",
        "",
        f"`{meta.get('command', DASH)}` at {meta.get('started_at', DASH)} on "
        f"{machine.get('cpus', DASH)} CPUs ({machine.get('cpu_model', DASH)}), "
        f"Python {machine.get('python', DASH)}, database {meta.get('database', DASH)}",
        "",
        *([_cores(meta), ""] if _cores(meta) else []),
        "## Results",
        "",
        *_table(["Measure", "Result"], _results_rows(results)),
        "",
        *_sweep_sections(results),
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
