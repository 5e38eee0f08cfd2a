"""The dispatch worker pool of ``notifier run --workers N``, with stand-in workers: small
scripts that speak the owner link (say ``ready``, then exit or wait as told), so the
restart, readiness and stop logic is seen without NATS or a database."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import pytest

from notifier.app import build_service, create_app
from notifier.config import Role, Settings, load_settings
from notifier.errors import ConfigError
from notifier.metrics import Metrics
from notifier.workers import WorkerPool, settings_env
from tests.support import wait_until

#: never connected to: the settings only have to name a PostgreSQL server
POSTGRES = "postgresql://notifier@db.invalid/notifier"
#: a stand-in worker: says ready on its link unless told not to, then exits with the code
#: in its first argument once (counted in a file), and afterwards waits for SIGTERM
WORKER = """
import os, signal, socket, sys, time
code, marker, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
fd = int(sys.argv[sys.argv.index("--supervisor-fd") + 1])
if mode == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
link = socket.socket(fileno=fd)
if mode != "mute":
    link.sendall(b"ready\\n")
if code and not os.path.exists(marker):
    open(marker, "w").close()
    time.sleep(0.2)
    sys.exit(code)
signal.pause() if mode != "deaf" else time.sleep(60)
"""


def _pool(tmp_path: Path, *, size: int = 2, code: int = 0, mode: str = "ok") -> WorkerPool:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    settings = load_settings(dispatch_workers=size, http_port=0, database_url=POSTGRES)
    command = [sys.executable, str(script), str(code), str(tmp_path / "died-once"), mode]
    return WorkerPool(settings, Metrics(), command=command)


def _gauge(pool: WorkerPool, name: str) -> float:
    return pool.metrics.registry.get_sample_value(name) or 0.0


async def test_every_worker_says_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    await pool.start()
    await pool.ready(timeout_s=30)
    assert pool.health() == "ok"
    assert _gauge(pool, "notifier_dispatch_workers_running") == 2
    processes = [slot.process for slot in pool.slots]
    await pool.stop(grace_s=30)
    assert [p.returncode for p in processes if p] == [-signal.SIGTERM] * 2
    assert _gauge(pool, "notifier_dispatch_workers_running") == 0


async def test_a_worker_that_dies_is_started_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = _pool(tmp_path, size=1, code=3)
    caplog.set_level(logging.WARNING, "notifier")
    await pool.start()
    first = pool.slots[0].process
    try:
        await wait_until(lambda: pool.slots[0].process is not first, timeout=30)
        await pool.ready(timeout_s=30)
        await wait_until(lambda: pool.health() == "ok", timeout=30)
    finally:
        await pool.stop(grace_s=30)
    assert first is not None
    assert f"dispatch worker 1 (pid {first.pid}) exited with 3; starting it again" in caplog.text
    assert _gauge(pool, "notifier_dispatch_worker_restarts_total") == 1


async def test_a_worker_that_never_says_ready_is_named_in_readiness(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = _pool(tmp_path, size=1, mode="mute")
    caplog.set_level(logging.WARNING, "notifier")
    await pool.start()
    try:
        await pool.ready(timeout_s=0.5)
        assert pool.health() == "degraded: dispatch worker(s) 1 starting"
    finally:
        await pool.stop(grace_s=30)
    assert "dispatch worker(s) 1 starting" in caplog.text


async def test_a_worker_deaf_to_sigterm_is_killed_after_the_grace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = _pool(tmp_path, size=1, mode="deaf")
    caplog.set_level(logging.WARNING, "notifier")
    await pool.start()
    await pool.ready(timeout_s=30)
    process = pool.slots[0].process
    await pool.stop(grace_s=1)
    assert process is not None
    assert process.returncode == -signal.SIGKILL
    assert f"dispatch worker pid {process.pid} still running after 1s: killed" in caplog.text


def test_settings_travel_to_a_worker_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "fcm.json"
    creds.write_text("{}")
    given = load_settings(
        smtp_host="smtp.example.com",
        smtp_username="u",
        smtp_password="p@ss word",
        smtp_tls="starttls",
        fcm_credentials_file=creds,
        dispatch_lease_s=12.5,
        null_channels="sms",
        role="ingest",
        dispatch_workers=3,
        database_url=POSTGRES,
    )
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"NOTIFIER_{name.upper()}", raising=False)
    for name, value in settings_env(given).items():
        monkeypatch.setenv(name, value)
    assert load_settings() == given


@pytest.mark.parametrize(
    ("role", "workers", "ingests", "dispatches"),
    [
        ("all", 0, True, True),
        ("all", 2, True, False),
        ("ingest", 0, True, False),
        ("ingest", 2, True, False),
        ("dispatch", 0, False, True),
    ],
)
def test_what_each_role_runs(role: str, workers: int, ingests: bool, dispatches: bool) -> None:
    settings = load_settings(role=role, dispatch_workers=workers, database_url=POSTGRES)
    assert (settings.ingests, settings.dispatches) == (ingests, dispatches)


def test_a_dispatch_process_starts_no_workers() -> None:
    with pytest.raises(ConfigError, match="NOTIFIER_DISPATCH_WORKERS needs"):
        load_settings(role=Role.DISPATCH, dispatch_workers=2, database_url=POSTGRES)


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///n.db", "sqlite:///n.db"])
def test_dispatch_workers_need_postgresql(url: str) -> None:
    with pytest.raises(ConfigError, match="need PostgreSQL: SQLite has one writer"):
        load_settings(dispatch_workers=1, database_url=url)


def test_a_dispatch_process_serves_only_the_operations_routes(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
    routes = {}
    for role in Role:
        service = build_service(load_settings(role=role, database_url=database))
        app = create_app(service)
        routes[role] = set(app.openapi()["paths"])
    assert routes[Role.DISPATCH] == {"/healthz", "/readyz", "/metrics"}
    assert routes[Role.INGEST] == routes[Role.ALL]
    assert any(path.startswith("/v1/") for path in routes[Role.INGEST])
