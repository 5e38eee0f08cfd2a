"""Real servers for integration tests: nats-server, aiosmtpd (the mail catcher), and
SQLite or PostgreSQL; every database test runs on both."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.twiliofake import TwilioFake
from notifier.devtools.webhookreceiver import WebhookReceiver

TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "test-auth-token-0123456789abcdef"
WEBHOOK_SECRET = "whsec-test-0123456789abcdef"

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


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioFake]:
    """A Twilio Messages API fake on 127.0.0.1 that posts signed status callbacks."""
    fake = TwilioFake(TWILIO_SID, TWILIO_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def fcm(tmp_path: Path) -> AsyncIterator[FcmFake]:
    """An FCM HTTP v1 fake with its OAuth token endpoint; credentials in ``tmp_path``."""
    fake = FcmFake()
    await fake.start()
    fake.write_credentials(tmp_path / "fcm-credentials.json")
    yield fake
    await fake.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A partner's webhook endpoint that checks signatures with ``WEBHOOK_SECRET``."""
    fake = WebhookReceiver(WEBHOOK_SECRET)
    await fake.start()
    yield fake
    await fake.stop()
