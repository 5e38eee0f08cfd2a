"""A status move that loses a race changes nothing: the update is conditional on the
row still being where the move starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.notification_status import NotificationStatus as S
from notifier.delivery.receipts import record_receipt
from notifier.store.db import create_engine
from notifier.store.migrate import upgrade
from notifier.store.tables import notifications
from tests.support import wait_until

N = notifications.c


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    if database_url.startswith("sqlite"):
        # one writer at a time: a receipt cannot read the row while another holds it
        pytest.skip("the race needs concurrent writers (PostgreSQL)")
    engine = create_engine(database_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


def _row(nid: str, channel: str, status: S, rank: int, pmid: str | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": nid,
        "idempotency_key": f"k-{nid}",
        "event_id": "e-1",
        "order_id": "o-1",
        "customer_id": "c-1",
        "channel": channel,
        "template": "t",
        "state": "out_for_delivery",
        "recipient": "r",
        "subject": None,
        "body_text": "b",
        "status": status.value,
        "priority": 1,
        "event_seq": 1,
        "digest": "d",
        "attempts": 1,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "dispatch_pending": False,
        "dispatch_gen": 0,
        "fallback_group": "g",
        "fallback_rank": rank,
        "provider_message_id": pmid,
    }


async def _blocked_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        waiting = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return bool(waiting.scalar_one())


async def test_a_receipt_that_loses_the_race_to_another_does_not_fall_back_twice(
    engine: AsyncEngine,
) -> None:
    # an SMS of a fallback rule (SMS → push → email) was sent; two receipts that it
    # failed arrive at once (Twilio retries a callback that was slow to answer)
    async with engine.begin() as conn:
        await conn.execute(
            insert(notifications),
            [
                _row("sms", "sms", S.SENT, 0, pmid="SM1"),
                _row("push", "push", S.STANDBY, 1),
                _row("email", "email", S.STANDBY, 2),
            ],
        )
    async with engine.connect() as first:
        # the first receipt has moved the SMS and handed over to push, not yet committed
        await first.begin()
        await first.execute(
            update(notifications).where(N.id == "sms").values(status=S.UNDELIVERED.value)
        )
        await first.execute(
            update(notifications).where(N.id == "push").values(status=S.QUEUED.value)
        )
        second = asyncio.create_task(record_receipt(engine, "sms", "SM1", S.FAILED.value, None))
        # the second has read the SMS as sent and waits for the first one's row lock
        await wait_until(lambda: _blocked_on_a_lock(engine), timeout=30)
        await first.commit()
    result = await second
    assert (result.changed, result.fell_back) == (False, False)
    async with engine.connect() as conn:
        rows = dict((await conn.execute(select(N.id, N.status))).all())
    # one receipt, one hand-over: email still waits in case push fails too
    assert rows == {"sms": S.UNDELIVERED, "push": S.QUEUED, "email": S.STANDBY}
