"""The bench report: budget verdicts at and below the budget's scale, Markdown, PNG, JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from notifier.bench.budget import BudgetLine, evaluate_budget
from notifier.bench.plot import plot
from notifier.bench.report import console_table, to_markdown, write_outputs
from notifier.bench.values import DASH

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _channel(p50: float, p99: float, count: int) -> dict[str, float]:
    return {"count": count, "p50_ms": p50, "p95_ms": p50 * 2, "p99_ms": p99, "max_ms": p99 * 1.5}


def _ceiling(sends: int, seconds: float, ours: float) -> dict[str, Any]:
    most = sends / seconds
    return {
        "sends": sends,
        "errors": 0,
        "concurrency": 8,
        "seconds": seconds,
        "sends_per_s": most,
        "end_to_end_sends_per_s": ours,
        "ratio": ours / most,
    }


def full_run() -> dict[str, Any]:
    """A run at the budget's scale that meets every line."""
    return {
        "meta": {
            "started_at": "2026-11-22T15:00:00+00:00",
            "command": "notifier bench",
            "quick": False,
            "database": "sqlite",
            "machine": {
                "cpus": 16,
                "python": "3.11.7",
                "platform": "Linux-6.1-x86_64",
                "cpu_model": "Example CPU @ 2.0GHz",
            },
        },
        "workload": {
            "orders": 1000,
            "events": 5000,
            "duplicates": 1000,
            "revisions": 50,
            "poison": 10,
        },
        "ceiling": {"events": 200_000, "seconds": 8.0, "events_per_s": 25_000.0},
        "ingest": {
            "events": 200_000,
            "seconds": 14.0,
            "events_per_s": 14_285.7,
            "ratio_to_ceiling": 0.5714,
        },
        "end_to_end": {
            "events": 2000,
            "seconds": 4.0,
            "events_per_s": 500.0,
            "sends": {"email": 900, "sms": 300, "push": 800},
            "sends_per_s": 500.0,
        },
        "client_ceiling": {
            "channels": {
                "email": _ceiling(900, 1.5, 225.0),
                "sms": _ceiling(300, 0.5, 75.0),
                "push": _ceiling(800, 1.6, 200.0),
            },
            "sends": 2000,
            "errors": 0,
            "seconds": 2.5,
            "sends_per_s": 800.0,
            "events_per_s": 700.0,
            "end_to_end_sends_per_s": 500.0,
            "ratio": 0.625,
        },
        # the shapes the sweep and the replica runs write
        "sweep": {
            "rates": [
                {"rate": 100.0, "p99_ms": 40.0, "sustained": True},
                {"rate": 200.0, "p99_ms": 45.0, "sustained": True},
                {"rate": 400.0, "p99_ms": 900.0, "sustained": True},
                {"rate": 800.0, "p99_ms": 30_000.0, "sustained": False},
            ],
            "sustainable_rate": 400.0,
            "p99_at_half_sustainable_ms": 45.0,
            "half_rate": {"rate": 200.0, "p99_ms": 45.0, "unsent": 0},
            "top_rate_sustained": False,
        },
        "replicas": {
            "n": 4,
            "ingest": {"1": 1000.0, "4": 3500.0, "factor": 3.5},
            "e2e": {"1": 200.0, "4": 640.0, "factor": 3.2},
        },
        "latency": {
            "rate_per_s": 1000.0,
            "duration_s": 60.0,
            "events": 60_000,
            "achieved_rate_per_s": 998.0,
            "channels": {
                "email": _channel(18.0, 44.0, 27_000),
                "sms": _channel(15.0, 47.5, 9_000),
                "push": _channel(12.0, 30.0, 24_000),
                "all": _channel(15.0, 41.0, 60_000),
            },
            "timeline": [
                {
                    "t": float(t),
                    "published": 1000,
                    "sent": 990 + t % 3,
                    "p50_ms": 15.0 + t % 5,
                    "p99_ms": 38.0 + t % 7,
                }
                for t in range(60)
            ],
        },
        "memory": {
            "events": 1_000_000,
            "peak_rss_mb": 150.0,
            "final_rss_mb": 140.0,
            "growth_mb_per_100k": 0.8,
            "samples": [{"t": i * 0.5, "events": i * 50_000, "rss_mb": 100 + i} for i in range(21)],
            "store_bytes": 12_345_678,
            "store_rows": {"events": 1_000_000, "notifications": 1_500_000},
            "store_rows_after_retention": {"events": 0, "notifications": 0},
        },
        "peer": {
            "messages": 500,
            "notifier": {"seconds": 1.0, "per_s": 512.0},
            "apprise": {"seconds": 20.0, "per_s": 25.0},
            "ratio": 20.48,
        },
    }


def quick_run() -> dict[str, Any]:
    """A ``--quick`` run: below the budget's scale for latency and memory."""
    run = full_run()
    run["meta"]["quick"] = True
    run["latency"].update(rate_per_s=200.0, duration_s=10.0, achieved_rate_per_s=199.5)
    run["memory"]["events"] = 20_000
    return run


def verdicts(results: dict[str, Any]) -> dict[str, bool | None]:
    return {line.name: line.met for line in evaluate_budget(results)}


def line(results: dict[str, Any], name: str) -> BudgetLine:
    return next(b for b in evaluate_budget(results) if b.name == name)


def test_a_full_run_within_budget_meets_every_line() -> None:
    assert set(verdicts(full_run()).values()) == {True}


def test_a_quick_run_leaves_the_scaled_budgets_unmeasured_but_shows_the_values() -> None:
    run = quick_run()
    memory = line(run, "Memory")
    assert memory.met is None
    assert "150.0 MB" in memory.measured and "140.0 MB" in memory.measured
    assert "run processed 20,000 events; budget is for 1,000,000" in memory.note
    assert verdicts(run)["End to end vs client ceiling"] is True


def _set(run: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = run
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return run


DELETE = object()
CLIENT = "End to end vs client ceiling"
INGEST = "Ingest vs raw NATS ceiling"
BEYOND = "Ingest vs raw NATS ceiling, beyond"
REPLICAS_INGEST = "Replicas: ingest"
REPLICAS_E2E = "Replicas: end to end"
HALF = "p99 at half the sustainable rate"
SUSTAINABLE = "Sustainable rate vs client ceiling"


@pytest.mark.parametrize(
    ("path", "value", "names"),
    [
        (("client_ceiling", "ratio"), 0.59, {CLIENT}),
        (("ingest", "ratio_to_ceiling"), 0.42, {BEYOND}),
        (("ingest", "ratio_to_ceiling"), 0.24, {INGEST, BEYOND}),
        (("replicas", "ingest", "factor"), 2.9, {REPLICAS_INGEST}),
        (("replicas", "e2e", "factor"), 2.0, {REPLICAS_E2E}),
        (("sweep", "p99_at_half_sustainable_ms"), 100.5, {HALF}),
        (("sweep", "sustainable_rate"), 300.0, {SUSTAINABLE}),
        (("client_ceiling", "events_per_s"), 900.0, {SUSTAINABLE}),
        (("memory", "peak_rss_mb"), 201.0, {"Memory"}),
        (("memory", "growth_mb_per_100k"), 5.5, {"Memory growth"}),
        (("memory", "store_rows_after_retention", "events"), 3, {"Storage bounded by retention"}),
    ],
)
def test_a_value_past_its_target_is_not_met(
    path: tuple[str, ...], value: float, names: set[str]
) -> None:
    found = verdicts(_set(full_run(), path, value))
    assert {name for name, met in found.items() if met is not True} == names
    assert all(found[name] is False for name in names)


@pytest.mark.parametrize(
    ("path", "value", "names", "note"),
    [
        (("client_ceiling",), DELETE, {CLIENT, SUSTAINABLE}, "not run"),
        (("meta", "machine", "cpus"), 4, {REPLICAS_INGEST, REPLICAS_E2E}, "only on 8 or more"),
        (("replicas", "n"), 2, {REPLICAS_INGEST, REPLICAS_E2E}, "the budget is for 4"),
        (("replicas",), DELETE, {REPLICAS_INGEST, REPLICAS_E2E}, "run without --replicas"),
        (("sweep",), DELETE, {HALF, SUSTAINABLE}, "sweep not run"),
        (("memory", "events"), 999_999, {"Memory"}, "budget is for 1,000,000"),
    ],
)
def test_what_the_run_did_not_measure_is_not_measured(
    path: tuple[str, ...], value: Any, names: set[str], note: str
) -> None:
    budget = evaluate_budget(_set(full_run(), path, value))
    assert {b.name for b in budget if b.met is not True} == names
    for b in budget:
        if b.name in names:
            assert b.met is None and note in b.note, b


def test_a_sweep_whose_highest_rate_held_cannot_fail_the_sustainable_rate() -> None:
    run = full_run()
    run["sweep"]["rates"] = [{"rate": r, "p99_ms": 50.0, "sustained": True} for r in (100, 300)]
    run["sweep"].update(sustainable_rate=300.0, top_rate_sustained=True)
    found = line(run, SUSTAINABLE)
    assert found.met is None
    assert "sweep higher" in found.note
    run["client_ceiling"]["events_per_s"] = 500.0
    assert line(run, SUSTAINABLE).met is True


def test_a_sweep_that_sustained_nothing_fails_and_has_no_half_rate() -> None:
    run = full_run()
    run["sweep"] = {
        "rates": [{"rate": 100.0, "p99_ms": 9000.0, "sustained": False}],
        "sustainable_rate": None,
        "half_rate": None,
    }
    rate = line(run, SUSTAINABLE)
    assert rate.met is False
    assert "below 100 ev/s" in rate.measured
    half = line(run, HALF)
    assert half.met is None
    assert "no rate of the sweep was sustained" in half.note


def test_a_half_rate_phase_with_sends_left_unsent_is_not_met() -> None:
    run = full_run()
    run["sweep"]["p99_at_half_sustainable_ms"] = None
    run["sweep"]["half_rate"] = {"rate": 200.0, "p99_ms": None, "unsent": 12}
    half = line(run, HALF)
    assert half.met is False
    assert "later than the run waited" in half.measured


def test_the_readers_take_plain_shapes_and_compute_what_is_not_stored() -> None:
    run = full_run()
    run["sweep"] = {
        "rows": [
            {"rate_per_s": 100.0, "channels": {"all": {"p99_ms": 30.0}}},
            {"rate_per_s": 400.0, "channels": {"all": {"p99_ms": 1500.0}}},
            {"rate_per_s": 800.0, "channels": {"all": {"p99_ms": 2500.0}}},
        ],
        "half": {"rate_per_s": 200.0, "channels": {"all": {"p99_ms": 60.0}}},
    }
    run["replicas"] = {"replicas": 4, "ingest": {"1": 1000.0, "4": 2500.0}}
    found = {b.name: b for b in evaluate_budget(run)}
    assert found[SUSTAINABLE].met is True
    assert "400 ev/s" in found[SUSTAINABLE].measured
    assert found[HALF].met is True
    assert "60.0 ms at 200 ev/s" in found[HALF].measured
    assert found[REPLICAS_INGEST].met is False
    assert found[REPLICAS_INGEST].measured.startswith("2.5")
    assert found[REPLICAS_E2E].met is None


def test_the_ceiling_ratio_is_computed_when_the_runner_left_it_out() -> None:
    run = full_run()
    del run["ingest"]["ratio_to_ceiling"]
    assert line(run, INGEST).measured == "0.57\u00d7 (14,286 ev/s)"


def test_skipped_phases_are_not_measured_and_render_a_dash() -> None:
    run = {"meta": full_run()["meta"], "ingest": {"events_per_s": None}, "latency": None}
    budget = evaluate_budget(run)
    assert {b.met for b in budget} == {None}
    text = to_markdown(run, budget)
    for skipped in [
        "Raw NATS ceiling",
        "End-to-end throughput",
        "RSS (peak / final)",
        "Latency (p50 / p95 / p99 / max)",
        "Email: notifier vs Apprise",
    ]:
        assert f"| {skipped} | {DASH} |" in text
    assert f"| Ingest (sends excluded) | {DASH} ev/s, {DASH} the ceiling |" in text
    assert text.count("not measured") == len(budget)


def test_markdown_shows_the_numbers() -> None:
    run = quick_run()
    text = to_markdown(run, evaluate_budget(run))
    for expected in [
        "## Results",
        "## Budget",
        "| Raw NATS ceiling | 25,000 ev/s (200,000 events) |",
        "14,286 ev/s, 0.57\u00d7 the ceiling",
        "500 ev/s, 500 sends/s (email 900, sms 300, push 800)",
        "| Latency email at 200 ev/s (p50 / p95 / p99 / max) | "
        "18.0 ms / 36.0 ms / 44.0 ms / 66.0 ms |",
        "150.0 MB / 140.0 MB after 20,000 events",
        "12.3 MB; rows events 1,000,000, notifications 1,500,000",
        "512 vs 25 msg/s, 20.5\u00d7 (500 messages)",
        "| Client ceiling (our clients alone) | 800 sends/s (email 600, sms 600, push 500), "
        "700 ev/s; 2,000 sends |",
        "| End to end vs client ceiling | 0.62\u00d7 in sends/s "
        "(email 0.38\u00d7, sms 0.12\u00d7, push 0.40\u00d7) |",
        "| End to end vs client ceiling | >= 0.60\u00d7 the client ceiling "
        "| 0.62\u00d7 (500 vs 800 sends/s) | met |",
        "| Memory | RSS <= 200 MB after 1,000,000 events | peak 150.0 MB, final 140.0 MB "
        "| not measured |",
    ]:
        assert expected in text, expected
    assert console_table(run, evaluate_budget(run)) == text


@pytest.mark.parametrize("results", [full_run(), quick_run(), {}], ids=["full", "quick", "empty"])
def test_plot_writes_a_png(results: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "bench.png"
    plot(results, path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000


def test_write_outputs_writes_json_with_the_budget_markdown_and_png(tmp_path: Path) -> None:
    run = quick_run()
    original = copy.deepcopy(run)
    paths = write_outputs(run, tmp_path / "out")
    assert set(paths) == {"json", "markdown", "png"}
    saved = json.loads(paths["json"].read_text())
    assert saved["ingest"] == original["ingest"]
    assert [b["name"] for b in saved["budget"]] == [b.name for b in evaluate_budget(run)]
    assert {b["name"]: b["met"] for b in saved["budget"]}["Memory"] is None
    assert paths["markdown"].read_text().startswith("# notifier bench")
    assert paths["png"].read_bytes().startswith(PNG_SIGNATURE)
    assert run == original
