"""The ``notifier`` command line as a user runs it: a subprocess (``python -m notifier``)
with ``NOTIFIER_*`` settings in its environment, against a real nats-server and SQLite."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats as nats_client
import pytest
from nats.js.errors import NotFoundError
from sqlalchemy import select

from notifier.config import DEFAULT_RULES_FILE, PACKAGE_DIR
from notifier.devtools.natsserver import NatsServer
from notifier.ingest.deadletters import list_dead_letters
from notifier.store.db import create_engine
from notifier.store.tables import dead_letters, events, notifications
from tests.integration.helpers import event, order, publish, running, settings_for
from tests.support import free_port, wait_until

TIMEOUT_S = 60
SCHEMA_DOC = PACKAGE_DIR.parent / "docs" / "order-event.v1.schema.json"


def _cli(
    *args: str, cwd: Path, timeout: float = TIMEOUT_S, **settings: str
) -> subprocess.CompletedProcess[str]:
    """``notifier ARGS`` in ``cwd`` with only the given ``NOTIFIER_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(settings)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


async def _stream_messages(url: str, stream: str) -> int:
    nc = await nats_client.connect(url)
    try:
        try:
            info = await nc.jetstream().stream_info(stream)
        except NotFoundError:
            return 0
        messages: int = info.state.messages
        return messages
    finally:
        await nc.close()


def test_run_refuses_a_bad_setting_with_one_line_naming_it(tmp_path: Path) -> None:
    result = _cli(
        "run",
        cwd=tmp_path,
        NOTIFIER_SMTP_PORT="abc",
        NOTIFIER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode == 2, result.stderr
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("notifier: NOTIFIER_SMTP_PORT"), lines[0]
    assert "integer" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "x.db").exists()


def test_run_refuses_dispatch_workers_on_sqlite_with_one_line(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    result = _cli("run", "--workers", "2", cwd=tmp_path, NOTIFIER_DATABASE_URL=database)
    assert result.returncode == 2, result.stderr
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "dispatch workers (--workers, NOTIFIER_DISPATCH_WORKERS) need PostgreSQL" in lines[0]
    assert not (tmp_path / "x.db").exists()


def test_run_refuses_a_rules_file_with_a_typo_naming_file_and_rule(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    shutil.copy(DEFAULT_RULES_FILE, rules)
    text = rules.read_text()
    assert "when: {state: [on_hold]}" in text
    rules.write_text(text.replace("when: {state: [on_hold]}", "when: {state: [on_hodl]}"))
    result = _cli(
        "run",
        cwd=tmp_path,
        NOTIFIER_RULES_FILE=str(rules),
        NOTIFIER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        NOTIFIER_NATS_URL=f"nats://127.0.0.1:{free_port()}",
        NOTIFIER_HTTP_PORT=str(free_port()),
    )
    assert result.returncode == 2, result.stderr
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"notifier: {rules}:"), line
    assert "rule 2 (on_hold)" in line
    assert "when.state" in line


def test_emit_names_the_line_of_invalid_json(tmp_path: Path, nats: NatsServer) -> None:
    events_file = tmp_path / "events.jsonl"
    events_file.write_text(
        json.dumps(event("J-1", "placed", 0))
        + "\n"
        + '{"event_id": "J-1-confirmed", "order_id": \n'
        + json.dumps(event("J-1", "shipped", 2))
        + "\n"
    )
    result = _cli("emit", str(events_file), cwd=tmp_path, NOTIFIER_NATS_URL=nats.url)
    assert result.returncode == 2, result.stderr
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("notifier: ")
    assert f"{events_file}:2:" in lines[0]
    assert "invalid JSON" in lines[0]
    assert "published" not in result.stdout
    # nothing at all was published: the file is checked before anything is sent
    assert asyncio.run(_stream_messages(nats.url, "ORDERS")) == 0


def test_emit_publishes_a_file(tmp_path: Path, nats: NatsServer) -> None:
    events_file = tmp_path / "events.jsonl"
    events_file.write_text(
        "\n".join(json.dumps(event("G-1", s, i)) for i, s in enumerate(["placed", "confirmed"]))
        + "\n"
    )
    result = _cli("emit", str(events_file), cwd=tmp_path, NOTIFIER_NATS_URL=nats.url)
    assert result.returncode == 0, result.stderr
    assert f"published 2 event(s) to {nats.url}" in result.stdout
    assert asyncio.run(_stream_messages(nats.url, "ORDERS")) == 2
    # the same file again: JetStream recognises every Nats-Msg-Id
    again = _cli("emit", str(events_file), cwd=tmp_path, NOTIFIER_NATS_URL=nats.url)
    assert again.returncode == 0, again.stderr
    assert "published 0 event(s)" in again.stdout
    assert "(2 duplicate(s), 0 error(s))" in again.stdout
    assert asyncio.run(_stream_messages(nats.url, "ORDERS")) == 2
    # a revision of one of them (same event_id, new content) gets through at once
    revision = tmp_path / "revision.json"
    revision.write_text(json.dumps(dict(event("G-1", "confirmed", 1), reason="phoned in")))
    revised = _cli("emit", str(revision), cwd=tmp_path, NOTIFIER_NATS_URL=nats.url)
    assert "published 1 event(s)" in revised.stdout, revised.stdout + revised.stderr
    assert asyncio.run(_stream_messages(nats.url, "ORDERS")) == 3


def test_emit_demo_publishes_the_demo_and_its_alert_orders(
    tmp_path: Path, nats: NatsServer
) -> None:
    result = _cli("emit", "--demo", cwd=tmp_path, NOTIFIER_NATS_URL=nats.url)
    assert result.returncode == 0, result.stderr
    # 3 lifecycle orders (14 events), 5 alert orders (14), 32 orders of carrier history (96)
    assert "published 124 event(s)" in result.stdout
    assert nats.url in result.stdout
    listed = result.stdout.split("demo orders: ")[1].split(" (see")[0].split(", ")
    assert [o.rsplit("-", 1)[0] for o in listed] == [
        "DEMO-1001",
        "DEMO-1002",
        "DEMO-1003",
        "DEMO-FAILED",
        "DEMO-LATE",
        "DEMO-SILENT",
        "DEMO-SLOW",
        "DEMO-STUCK",
    ]
    assert "and 32 delivered orders of carrier history" in result.stdout
    assert asyncio.run(_stream_messages(nats.url, "ORDERS")) == 124


def test_emit_needs_a_file_or_demo(tmp_path: Path) -> None:
    result = _cli("emit", cwd=tmp_path)
    assert result.returncode == 2
    assert _lines(result.stderr) == ["notifier: give a FILE or --demo (one of them)"]


async def test_dlq_list_prints_one_json_line_per_dead_letter_then_the_counts(
    tmp_path: Path, nats: NatsServer
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}"
    async with running(settings_for(nats.url, database_url, None)) as (service, _client):
        await publish(
            nats.url,
            b"{not json",
            b"{nor this",
            event("T-1", "teleported", 0),
            msg_ids=["bad-1", "bad-2", "bad-3"],
        )
        await publish(nats.url, b"[", msg_ids=["bad-4"], subject="orders.state.pos")
        assert service.nc is not None
        js = service.nc.jetstream()

        async def dead_lettered() -> bool:
            return len(await list_dead_letters(js)) == 4

        await wait_until(dead_lettered, timeout=15)
    env = {"NOTIFIER_NATS_URL": nats.url, "NOTIFIER_DATABASE_URL": database_url}
    result = await asyncio.to_thread(_cli, "dlq", "list", cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    *letters, counts = [json.loads(line) for line in _lines(result.stdout)]
    assert [letter["reason"] for letter in letters] == [
        "invalid_json",
        "invalid_json",
        "unknown_state",
        "invalid_json",
    ]
    first = letters[0]
    assert first["body"] == "{not json"
    assert "data" not in first
    assert first["original_subject"] == "orders.state.web"
    assert first["original_seq"] == 1
    assert first["detail"]
    assert counts == {
        "counts": {
            "total": 4,
            "by_reason": [
                {"reason": "invalid_json", "count": 3},
                {"reason": "unknown_state", "count": 1},
            ],
            "by_source": [{"source": "web", "count": 3}, {"source": "pos", "count": 1}],
        }
    }
    # filtering by a reason: its dead letters, and its counts
    other = await asyncio.to_thread(
        _cli, "dlq", "list", "--reason", "unknown_state", cwd=tmp_path, **env
    )
    assert other.returncode == 0, other.stderr
    *letters, counts = [json.loads(line) for line in _lines(other.stdout)]
    assert [letter["reason"] for letter in letters] == ["unknown_state"]
    assert counts["counts"]["by_source"] == [{"source": "web", "count": 1}]


def test_dlq_list_names_an_unreachable_server_quickly(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    try:
        result = _cli("dlq", "list", cwd=tmp_path, timeout=20, NOTIFIER_NATS_URL=url)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`notifier dlq list` still waiting for {url} after 20 s")
    assert result.returncode == 2
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"notifier: cannot read dead letters from {url}")


def test_emit_names_an_unreachable_server_quickly(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    try:
        result = _cli("emit", "--demo", cwd=tmp_path, timeout=20, NOTIFIER_NATS_URL=url)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`notifier emit` still waiting for {url} after 20 s")
    assert result.returncode == 2
    lines = _lines(result.stderr)
    assert len(lines) == 2, result.stderr
    assert lines[0] == f"notifier: publishing 124 event(s) to {url} (from NOTIFIER_NATS_URL)"
    assert lines[1].startswith(f"notifier: cannot publish to {url}")
    assert "published" not in result.stdout


@pytest.mark.parametrize("dev_stopped", [False, True], ids=["no-dev-here", "dev-stopped"])
def test_emit_and_dlq_refuse_to_guess_a_server(tmp_path: Path, dev_stopped: bool) -> None:
    if dev_stopped:  # what a stopped `notifier dev` leaves: its data, not its URL
        (tmp_path / ".notifier-dev").mkdir()
        (tmp_path / ".notifier-dev" / "database.url").write_text("sqlite+aiosqlite:///x.db\n")
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(event("N-1", "placed", 0)))
    for args, how in (
        (["emit", str(events_file)], "pass --nats-url URL or set NOTIFIER_NATS_URL"),
        (["emit", "--demo", "--check"], "pass --nats-url URL or set NOTIFIER_NATS_URL"),
        (["dlq", "list"], "set NOTIFIER_NATS_URL"),
        (["dlq", "replay", "--all", "--dry-run"], "set NOTIFIER_NATS_URL"),
    ):
        result = _cli(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert _lines(result.stderr) == [
            f"notifier: which NATS? no `notifier dev` is running in this directory: {how}"
        ], args
        assert result.stdout == "", args


def test_emit_says_where_it_publishes_and_why_there(tmp_path: Path, nats: NatsServer) -> None:
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(event("W-1", "placed", 0)))
    given = _cli(
        "emit",
        str(events_file),
        "--nats-url",
        nats.url,
        cwd=tmp_path,
        NOTIFIER_NATS_URL=f"nats://127.0.0.1:{free_port()}",
    )
    assert given.returncode == 0, given.stderr
    assert _lines(given.stderr) == [
        f"notifier: publishing 1 event(s) to {nats.url} (from --nats-url)"
    ]
    # a running `notifier dev` in this directory wrote its URL down
    (tmp_path / ".notifier-dev").mkdir()
    (tmp_path / ".notifier-dev" / "nats.url").write_text(nats.url + "\n")
    found = _cli("emit", str(events_file), cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert _lines(found.stderr) == [
        f"notifier: publishing 1 event(s) to {nats.url} (from the running `notifier dev`, "
        ".notifier-dev/nats.url)"
    ]
    assert "published 0 event(s)" in found.stdout  # the same event: a duplicate
    assert asyncio.run(_stream_messages(nats.url, "ORDERS")) == 1


def test_emit_check_refuses_a_file_with_an_invalid_event_and_publishes_nothing(
    tmp_path: Path, nats: NatsServer
) -> None:
    no_customer = event("C-1", "confirmed", 1)
    del no_customer["customer"]
    events_file = tmp_path / "events.jsonl"
    events_file.write_text(
        "\n".join(
            json.dumps(e)
            for e in (
                event("C-1", "placed", 0),
                no_customer,
                event("C-1", "teleported", 2),
                event("C-1", "shipped", 3),
            )
        )
        + "\n"
    )
    result = _cli("emit", str(events_file), "--check", cwd=tmp_path, NOTIFIER_NATS_URL=nats.url)
    assert result.returncode == 1, result.stderr
    lines = _lines(result.stderr)
    assert lines[0].startswith("  event #2 ('C-1-confirmed-1'): schema_violation: customer:")
    assert lines[1:] == [
        "  event #3 ('C-1-teleported-2'): unknown_state: unknown state 'teleported'",
        "notifier: 2 of 4 event(s) break the contract; nothing published",
    ]
    assert result.stdout == ""
    assert asyncio.run(_stream_messages(nats.url, "ORDERS")) == 0
    # without --check the same file goes out as it is, for the service to dead-letter
    unchecked = _cli("emit", str(events_file), cwd=tmp_path, NOTIFIER_NATS_URL=nats.url)
    assert unchecked.returncode == 0, unchecked.stderr
    assert asyncio.run(_stream_messages(nats.url, "ORDERS")) == 4


def test_emit_check_publishes_a_valid_file_and_dry_run_needs_no_server(
    tmp_path: Path, nats: NatsServer
) -> None:
    dry = _cli("emit", "--demo", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == "124 event(s) pass the contract; nothing published (--dry-run)\n"
    assert dry.stderr == ""
    checked = _cli("emit", "--demo", "--check", cwd=tmp_path, NOTIFIER_NATS_URL=nats.url)
    assert checked.returncode == 0, checked.stderr
    assert "published 124 event(s)" in checked.stdout
    assert asyncio.run(_stream_messages(nats.url, "ORDERS")) == 124


def test_dlq_replay_dry_run_says_when_nothing_matches(tmp_path: Path, nats: NatsServer) -> None:
    result = _cli("dlq", "replay", "--all", "--dry-run", cwd=tmp_path, NOTIFIER_NATS_URL=nats.url)
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout) == [
        "dry run, nothing changed: would replay 0: no notification dead letter matches"
    ]
    named = _cli(
        "dlq", "replay", "--id", "n-1", "--dry-run", cwd=tmp_path, NOTIFIER_NATS_URL=nats.url
    )
    assert named.returncode == 0, named.stderr
    assert _lines(named.stdout) == [
        "dry run, nothing changed: would replay 0: no notification dead letter matches; not found 1"
    ]
    assert _lines(named.stderr) == ["no dead letter for n-1"]


def test_schema_prints_the_event_contract(tmp_path: Path) -> None:
    result = _cli("schema", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["title"] == "OrderEvent v1"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"event_id", "order_id", "state", "occurred_at", "customer"} <= set(schema["required"])
    assert schema.get("additionalProperties") is False
    # the published copy under docs/ is the same document
    assert json.loads(SCHEMA_DOC.read_text()) == schema


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = _cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    listed: set[str] = set()
    in_commands = False
    for line in text.splitlines():
        if "Commands" in line:
            in_commands = True
            continue
        match = re.match(r"^[│|\s]*([a-z][a-z-]*)\s{2,}\S", line)
        if in_commands and match:
            listed.add(match.group(1))
    assert {"dev", "run", "emit", "dlq", "migrate"} <= listed, text
    assert {"schema", "erase-customer"} <= listed, text


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    url = f"sqlite+aiosqlite:///{db}"
    result = _cli("migrate", cwd=tmp_path, NOTIFIER_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert "database schema is up to date" in result.stdout
    with sqlite3.connect(db) as conn:
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        assert {"orders", "events", "notifications", "alembic_version"} <= tables
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        columns = {row[1] for row in conn.execute("PRAGMA table_info(notifications)")}
    assert version
    assert {"recipient", "body_text", "status", "created_at"} <= columns
    # again: nothing to do, same version
    again = _cli("migrate", cwd=tmp_path, NOTIFIER_DATABASE_URL=url)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (version,)


def test_migrate_refuses_an_unsupported_database_with_one_line(tmp_path: Path) -> None:
    result = _cli("migrate", cwd=tmp_path, NOTIFIER_DATABASE_URL="mysql://u@h/db")
    assert result.returncode == 2, result.stderr
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("notifier: NOTIFIER_DATABASE_URL"), lines[0]


def _refused(order_id: str, email: str, customer_id: str) -> dict[str, Any]:
    """An event of this customer refused for its address (``x@example``, no domain)."""
    body = event(order_id, "placed", 0, email=email)
    body["customer"]["id"] = customer_id
    return body


async def test_erase_customer_scrubs_the_database_and_the_dead_letters(
    tmp_path: Path, nats: NatsServer
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}"
    async with running(settings_for(nats.url, database_url, None)) as (service, client):
        await publish(
            nats.url,
            event("X-1", "placed", 0, email="x1@example.com"),
            event("Y-1", "placed", 0, email="y1@example.com"),
            # refused: kept whole in the dead letters, addresses and all
            _refused("X-2", "x1@example", "cust-X-1"),
            _refused("Y-2", "y1@example", "cust-Y-2"),
        )

        async def done() -> bool:
            return (
                (await order(client, "X-1")) is not None
                and (await order(client, "Y-1")) is not None
                and await _stream_messages(nats.url, "DEADLETTER") == 2
            )

        await wait_until(done, timeout=15)
        assert service.nc is not None
        texts = [letter.body for letter in await list_dead_letters(service.nc.jetstream())]
        assert [t for t in texts if "x1@example" in t] and [t for t in texts if "y1@example" in t]
    result = await asyncio.to_thread(
        _cli,
        "erase-customer",
        "cust-X-1",
        cwd=tmp_path,
        NOTIFIER_DATABASE_URL=database_url,
        NOTIFIER_NATS_URL=nats.url,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"erased: 1 event\(s\), [1-9]\d* notification\(s\), 1 dead letter\(s\), "
        r"[01] feed item\(s\), 0 preference document\(s\)\n",
        result.stdout,
    ), result.stdout
    nc = await nats_client.connect(nats.url)
    try:
        (left,) = await list_dead_letters(nc.jetstream())
    finally:
        await nc.close()
    assert "y1@example" in left.body and "cust-X-1" not in left.body
    # nothing left to delete from the stream: NATS is not needed
    closed = f"nats://127.0.0.1:{free_port()}"
    again = await asyncio.to_thread(
        _cli,
        "erase-customer",
        "cust-X-1",
        cwd=tmp_path,
        NOTIFIER_DATABASE_URL=database_url,
        NOTIFIER_NATS_URL=closed,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith(
        ", 0 dead letter(s), 0 feed item(s), 0 preference document(s)\n"
    ), again.stdout
    # something to delete and no NATS: the database is erased, and the command says what is
    # left and fails
    cut_short = await asyncio.to_thread(
        _cli,
        "erase-customer",
        "cust-Y-2",
        cwd=tmp_path,
        NOTIFIER_DATABASE_URL=database_url,
        NOTIFIER_NATS_URL=closed,
    )
    assert cut_short.returncode == 2
    (line,) = _lines(cut_short.stderr)
    assert line.startswith(
        "notifier: the database is erased, but 1 of the customer's 1 dead "
        "letter(s) are still in the dead-letter stream"
    ), line
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            payloads = dict(
                (await conn.execute(select(events.c.customer_id, events.c.payload))).all()
            )
            recipients = (
                await conn.execute(
                    select(
                        notifications.c.customer_id,
                        notifications.c.recipient,
                        notifications.c.body_text,
                    )
                )
            ).all()
            indexed = (await conn.execute(select(dead_letters.c.customer_id))).scalars().all()
    finally:
        await engine.dispose()
    assert indexed == ["cust-Y-2"]
    assert "x1@example.com" not in payloads["cust-X-1"]
    assert "Ada Lovelace" not in payloads["cust-X-1"]
    assert "y1@example.com" in payloads["cust-Y-1"]
    assert all(
        r.recipient is None and r.body_text is None
        for r in recipients
        if r.customer_id == "cust-X-1"
    )
