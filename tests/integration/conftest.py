"""Real servers for integration tests: nats-server, aiosmtpd (the mail catcher), and
SQLite or PostgreSQL; every database test runs on both."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer

POSTGRES_ADMIN = os.environ.get(
    "NOTIFIER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("NOTIFIER_REQUIRE_POSTGRES") == "1"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each kind; PostgreSQL gets its own throwaway database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}"
        return
    name = f"notifier_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL required but unreachable at {POSTGRES_ADMIN}: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_ADMIN.rsplit("/", 1)[0]
    yield f"postgresql+asyncpg://{base.split('://', 1)[1]}/{name}"
    admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def mail() -> AsyncIterator[MailCatcher]:
    """A real SMTP server (aiosmtpd) in the test's loop that keeps what it receives."""
    catcher = MailCatcher()
    await catcher.start()
    yield catcher
    await catcher.stop()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream for one test."""
    with NatsServer(store_dir=tmp_path / "nats") as server:
        yield server
