"""A tiny run of `notifier bench`, as a user runs it: it must keep working end to end.

Nothing here asserts a time; the numbers only have to exist and add up.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.integration.conftest import POSTGRES_ADMIN, REQUIRE_POSTGRES

pytestmark = pytest.mark.slow


def test_bench_runs_end_to_end_and_writes_its_outputs(tmp_path: Path) -> None:  # noqa: PLR0915
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "notifier",
        "bench",
        "--out",
        str(out),
        "--events",
        "400",
        "--e2e-events",
        "60",
        "--rates",
        "20,40",
        "--duration",
        "2",
        "--peer",
        "20",
        "--no-progress",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Budget" in done.stdout

    results = json.loads((out / "results.json").read_text())
    workload = results["workload"]
    assert workload["messages"] == 400
    assert workload["duplicates"] > 0
    # every message published was consumed by the ceiling and by the service
    assert results["ceiling"]["events"] == 400
    assert results["ingest"]["events"] == 400
    assert results["ingest"]["notifications"] > 0
    assert results["memory"]["peak_rss_mb"] > 0
    assert results["memory"]["store_rows"]["events"] == workload["events"]
    assert results["memory"]["store_rows_after_retention"] == {"events": 0, "notifications": 0}

    burst = results["end_to_end"]
    assert burst["settled"] is True
    assert burst["sends"]["email"] > 0 and burst["sends"]["push"] > 0

    # the client ceiling replayed exactly the burst's sends, and the fakes got every one
    ceiling = results["client_ceiling"]
    assert ceiling["replayed"] == burst["sends"]
    assert ceiling["received"] == burst["sends"]
    assert ceiling["errors"] == 0
    assert ceiling["sends"] == sum(burst["sends"].values())
    sent = {channel: n for channel, n in burst["sends"].items() if n}
    assert {c: ch["sends"] for c, ch in ceiling["channels"].items()} == sent
    cores = results["meta"]["cores"]
    assert cores["service_cores"] > 0 and cores["load_cores"] > 0

    sweep = results["sweep"]
    rows = sweep["rates"]
    # lowest first; the sweep goes on only past a rate it kept
    assert [row["rate"] for row in rows] == [20, 40][: len(rows)]
    assert all(row["sustained"] for row in rows[:-1])
    for row in rows:
        assert row["events"] == row["rate"] * 2
        assert row["untraced_sends"] == 0
        assert row["sends"] > 0
        assert set(row["per_channel"]) <= {"email", "sms", "push"}
    best = sweep["sustainable_rate"]
    assert best == max([row["rate"] for row in rows if row["sustained"]], default=None)
    if best is not None:
        # the phase at half the sustainable rate, with its per-second timeline
        latency = results["latency"]
        assert latency["rate_per_s"] == best / 2 == sweep["half_rate"]["rate"]
        assert latency["untraced_sends"] == 0
        assert sum(row["published"] for row in latency["timeline"]) == best

    peer = results["peer"]
    assert peer["notifier"]["messages"] == peer["messages"] == peer["apprise"]["messages"]
    assert peer["apprise"]["errors"] == 0

    budget = {line["name"]: line for line in results["budget"]}
    assert len(budget) == 10
    assert budget["End to end vs client ceiling"]["met"] is not None
    assert (out / "results.md").read_text().count("|") > 20
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")
    # the service's log holds no customer contact
    for log in [*out.glob("service-*.log"), *out.glob("bench-*.log")]:
        text = log.read_text()
        assert "@bench.example.com" not in text and "+1415555" not in text


@pytest.mark.postgres
async def test_bench_with_replicas_runs_one_and_two_services_on_postgres(tmp_path: Path) -> None:
    try:
        await (await asyncpg.connect(POSTGRES_ADMIN, timeout=5)).close()
    except (OSError, asyncpg.PostgresError) as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL required but unreachable at {POSTGRES_ADMIN}: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    out = tmp_path / "results"
    command = [
        *(sys.executable, "-m", "notifier", "bench", "--out", str(out), "--no-progress"),
        *("--events", "300", "--e2e-events", "40", "--rates", "20", "--duration", "1"),
        *("--peer", "10", "--postgres", POSTGRES_ADMIN, "--replicas", "2"),
    ]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=400, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Replicas" in done.stdout

    replicas = json.loads((out / "results.json").read_text())["replicas"]
    assert replicas["n"] == 2
    ingest_one, ingest_two = replicas["ingest"]["runs"]
    assert (ingest_one["replicas"], ingest_two["replicas"]) == (1, 2)
    # every message of the same backlog acked, by one service and by two
    assert ingest_one["events"] == ingest_two["events"] == 300
    burst_one, burst_two = replicas["e2e"]["runs"]
    # the same burst, every send made once, whether one service sent it or two
    assert burst_one["settled"] is burst_two["settled"] is True
    assert burst_one["sends"] == burst_two["sends"]
    assert burst_one["sends"]["email"] > 0
    assert len(list(out.glob("service-ingest-2-*.log"))) == 2
    assert len(list(out.glob("service-replicas-2-*.log"))) == 2
