"""The rate sweep and the replicas comparison: which rate is sustained, where the sweep
stops, the tables in results.md, the plot, and the options refused."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from notifier.bench.budget import evaluate_budget
from notifier.bench.plot import plot
from notifier.bench.replicas import scaling
from notifier.bench.report import to_markdown
from notifier.bench.settings import REPLICAS_NEED_POSTGRES, BenchConfig
from notifier.bench.sweep import (
    SUSTAINED_P99_MS,
    is_sustained,
    parse_rates,
    run_sweep,
    summarize,
    sustainable_rate,
    sweep_row,
)
from notifier.bench.sweep_report import replicas_table, sweep_summary, sweep_table
from notifier.cli import app

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def phase(
    rate: float,
    p99: float | None,
    *,
    unsent: int = 0,
    achieved: float | None = None,
    sms_p99: float | None = None,
) -> dict[str, Any]:
    """A fixed-rate phase's results as ``DeliveryBench`` reports them; ``p99=None`` with
    ``unsent`` is a phase whose p99 fell among sends never made."""

    def channel(p: float | None, late: int) -> dict[str, Any]:
        p50 = None if p is None else p / 4
        return {"count": 100, "unsent": late, "p50_ms": p50, "p95_ms": p, "p99_ms": p}

    every = channel(p99, unsent)
    return {
        "rate_per_s": rate,
        "duration_s": 5.0,
        "events": int(rate * 5),
        "achieved_rate_per_s": rate if achieved is None else achieved,
        "settled": not unsent,
        "untraced_sends": 0,
        "channels": {
            "email": channel(p99, unsent),
            "sms": channel(p99 if sms_p99 is None else sms_p99, 0),
            "push": channel(p99, 0),
            "all": every | {"max_ms": None if p99 is None else p99 * 2},
        },
    }


@pytest.mark.parametrize(
    ("text", "rates"),
    [
        ("100,200,400", (100.0, 200.0, 400.0)),
        ("400, 100,200,", (100.0, 200.0, 400.0)),
        ("50,50,25.5", (25.5, 50.0)),
        ("7", (7.0,)),
    ],
)
def test_rates_are_parsed_lowest_first_each_once(text: str, rates: tuple[float, ...]) -> None:
    assert parse_rates(text) == rates


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "at least one rate"),
        (" , ", "at least one rate"),
        ("100,fast", "'fast' is not a rate"),
        ("100,0", "positive"),
        ("-5", "positive"),
        ("nan", "positive"),
        ("inf", "positive"),
    ],
)
def test_a_bad_rate_list_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_rates(text)


@pytest.mark.parametrize(
    ("result", "sustained"),
    [
        (phase(100, 150.0), True),
        (phase(100, SUSTAINED_P99_MS), True),
        (phase(100, SUSTAINED_P99_MS + 0.1), False),
        # p99 among the sends never made: infinitely late
        (phase(100, None, unsent=40), False),
        # a quick p99, but the publisher never offered the rate
        (phase(1000, 40.0, achieved=900.0), False),
        (phase(1000, 40.0, achieved=951.0), True),
        # no sends at all: nothing shows the rate was kept
        ({"rate_per_s": 10.0, "channels": {}}, False),
    ],
)
def test_a_rate_is_sustained_when_its_p99_stays_within_two_seconds(
    result: dict[str, Any], sustained: bool
) -> None:
    assert is_sustained(result) is sustained


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([(50, True), (100, True), (200, False)], 100.0),
        ([(50, True), (100, True), (200, True)], 200.0),
        ([(50, False), (100, True)], None),
        # a rate above a failed one that happened to pass says nothing
        ([(50, True), (100, False), (200, True)], 50.0),
        ([(200, False), (50, True), (100, True)], 100.0),
        ([], None),
    ],
)
def test_the_sustainable_rate_is_the_highest_below_the_first_failure(
    verdicts: list[tuple[float, bool]], expected: float | None
) -> None:
    rows = [{"rate": rate, "sustained": ok} for rate, ok in verdicts]
    assert sustainable_rate(rows) == expected


def test_a_row_carries_the_percentiles_per_rate_and_per_channel() -> None:
    row = sweep_row(phase(200, 800.0, sms_p99=1200.0))
    assert {k: row[k] for k in ("rate", "events", "p50_ms", "p99_ms", "max_ms")} == {
        "rate": 200,
        "events": 1000,
        "p50_ms": 200.0,
        "p99_ms": 800.0,
        "max_ms": 1600.0,
    }
    assert set(row["per_channel"]) == {"email", "sms", "push"}
    assert row["per_channel"]["sms"]["p99_ms"] == 1200.0
    assert row["sustained"] is True


class Service:
    """The sweep's view of the service: p99 grows with the rate past what it keeps up
    with; records the rates it was asked for."""

    def __init__(self, keeps_up_to: float) -> None:
        self.keeps_up_to = keeps_up_to
        self.asked: list[float] = []

    async def __call__(self, rate: float) -> Mapping[str, Any]:
        self.asked.append(rate)
        if rate <= self.keeps_up_to:
            return phase(rate, rate / 2)
        return phase(rate, None, unsent=int(rate))


@pytest.mark.parametrize(
    ("keeps_up_to", "asked", "best", "half_p99"),
    [
        (250, [50, 100, 200, 400, 100], 200.0, 50.0),
        (1000, [50, 100, 200, 400, 200], 400.0, 100.0),
        (10, [50], None, None),
    ],
)
async def test_the_sweep_stops_at_the_first_rate_not_kept_then_measures_half_the_best(
    keeps_up_to: float, asked: list[float], best: float | None, half_p99: float | None
) -> None:
    service = Service(keeps_up_to)
    sweep, half = await run_sweep([400, 100, 50, 200], service)
    assert service.asked == asked
    assert sweep["sustainable_rate"] == best
    assert sweep["p99_at_half_sustainable_ms"] == half_p99
    assert (half is None) is (best is None)
    assert [row["rate"] for row in sweep["rates"]] == asked[: len(sweep["rates"])]
    assert sweep["top_rate_sustained"] is (keeps_up_to >= 400)


def sweep_results(rows: list[dict[str, Any]], half: dict[str, Any] | None) -> dict[str, Any]:
    return {"sweep": summarize([sweep_row(r) for r in rows], half)}


STOPPED = sweep_results(
    [phase(50, 80.0), phase(100, 140.0), phase(200, None, unsent=300)], phase(50, 60.0)
)
TOP = sweep_results([phase(50, 80.0), phase(100, 140.0)], phase(50, 60.0))
NONE = sweep_results([phase(50, 2500.0)], None)
SHORT = sweep_results([phase(800, 30.0, achieved=500.0)], None)


@pytest.mark.parametrize(
    ("results", "cells"),
    [
        (
            STOPPED,
            [
                ["50", "250", "20.0 ms", "80.0 ms", "80.0 ms", "160.0 ms"],
                ["200", "1,000", "late", "late", "late", "late", "late"],
                ["50 (half)", "250", "15.0 ms", "60.0 ms", "60.0 ms", "120.0 ms"],
            ],
        ),
        (NONE, [["50", "250", "625.0 ms", "2500.0 ms", "2500.0 ms", "5000.0 ms"]]),
        (SHORT, [["800", "4,000", "7.5 ms", "30.0 ms"]]),
    ],
)
def test_the_sweep_table_has_a_row_per_rate_and_the_half_rate_last(
    results: dict[str, Any], cells: list[list[str]]
) -> None:
    table = sweep_table(results)
    assert table is not None
    header, rows = table
    assert header[:6] == ["Rate (ev/s)", "Events", "p50", "p95", "p99", "max"]
    assert all(len(row) == len(header) for row in rows)
    for expected in cells:
        assert any(row[: len(expected)] == expected for row in rows), (expected, rows)


@pytest.mark.parametrize(
    ("results", "verdicts"),
    [
        (STOPPED, ["yes", "yes", "no (300 unsent at the end)", "yes"]),
        (NONE, ["no"]),
        (SHORT, ["no (published only 500 ev/s)"]),
    ],
)
def test_the_sweep_table_says_why_a_rate_was_not_kept(
    results: dict[str, Any], verdicts: list[str]
) -> None:
    table = sweep_table(results)
    assert table is not None
    assert [row[-1] for row in table[1]] == verdicts


@pytest.mark.parametrize(
    ("results", "sentence"),
    [
        (
            STOPPED,
            "Sustainable rate: 100 ev/s (the highest rate swept with p99 within 2 s; the "
            "sweep stopped at 200 ev/s). p99 at half of it (50 ev/s): 60.0 ms.",
        ),
        (
            TOP,
            "Sustainable rate: at least 100 ev/s (every rate swept kept p99 within 2 s). "
            "p99 at half of it (50 ev/s): 60.0 ms.",
        ),
        (NONE, "Sustainable rate: none; even 50 ev/s kept no p99 within 2 s."),
    ],
)
def test_the_sweep_summary_names_the_sustainable_rate(
    results: dict[str, Any], sentence: str
) -> None:
    assert sweep_summary(results) == sentence


def test_a_run_without_a_sweep_or_replicas_has_no_such_tables() -> None:
    assert sweep_table({}) is None
    assert replicas_table({}) is None
    text = to_markdown({}, evaluate_budget({}))
    assert "## Rate sweep" not in text and "## Replicas" not in text


def test_results_md_shows_the_sweep_and_the_replicas() -> None:
    one = {"ingest": {"events_per_s": 1000.0}, "e2e": {"events_per_s": 200.0, "sends_per_s": 190}}
    many = {"ingest": {"events_per_s": 1500.0}, "e2e": {"events_per_s": 180.0, "sends_per_s": 171}}
    results = STOPPED | {"replicas": scaling(2, one, many)}
    text = to_markdown(results, evaluate_budget(results))
    assert "## Rate sweep" in text and "## Replicas" in text
    assert "| 50 (half) | 250 | 15.0 ms | 60.0 ms | 60.0 ms | 120.0 ms |" in text
    assert "| Ingest (sends excluded) | 1,000 ev/s | 1,500 ev/s | 1.5\u00d7 |" in text
    assert "| End to end | 200 ev/s | 180 ev/s | 0.90\u00d7 |" in text
    assert "| End to end, sends | 190 sends/s | 171 sends/s | 0.90\u00d7 |" in text


@pytest.mark.parametrize(
    ("one", "many", "factor"),
    [(1000.0, 3500.0, 3.5), (1000.0, None, None), (None, 3500.0, None), (0.0, 10.0, None)],
)
def test_the_scaling_factor_is_n_replicas_over_one(
    one: float | None, many: float | None, factor: float | None
) -> None:
    got = scaling(4, {"ingest": {"events_per_s": one}}, {"ingest": {"events_per_s": many}})
    assert got["n"] == 4
    assert got["ingest"]["1"] == one and got["ingest"]["4"] == many
    assert got["ingest"]["factor"] == factor
    assert got["e2e"]["factor"] is None


@pytest.mark.parametrize("results", [STOPPED, TOP, NONE, SHORT])
def test_the_plot_draws_the_sweep(results: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "bench.png"
    plot(results, path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_replicas_without_postgres_are_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", "--replicas", "2", "--out", str(out)])
    assert result.exit_code == 2
    assert REPLICAS_NEED_POSTGRES in result.output
    assert not out.exists()
    with pytest.raises(ValueError, match="--replicas needs --postgres"):
        BenchConfig(out_dir=out, command="notifier bench", replicas=2)


def test_a_bad_rate_list_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--rates", "100,fast", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "'fast' is not a rate" in result.output
