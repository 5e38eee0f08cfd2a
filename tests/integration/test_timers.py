"""Time rules through the real service: a held state or a missed promise fires once
when due (events with ``occurred_at`` in the past, durations of seconds), stays silent
when the order moved on, survives a SIGKILL, and fires once with two replicas."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.store.db import create_engine
from notifier.store.maintenance import erase_customer, prune
from notifier.store.tables import orders, timers
from tests.integration.helpers import event, order, publish, running, settings_for
from tests.integration.test_crash import _env, _start
from tests.support import wait_until

RULES = """version: 1
rules:
  - name: shipped
    when: {state: [shipped]}
    template: shipped
    channels: [email]
  - name: processing_stuck
    when: {held: {state: [processing], for: %(held)s}}
    template: on_hold
    channels: [email]
    category: alerts
  - name: promise_missed
    when: {promise_missed: {grace: 1s}}
    template: delivery_failed
    channels: [email]
    category: alerts
"""

STUCK = "Your order {} is on hold"
MISSED = "We couldn't deliver your order {}"


def rules_file(tmp_path: Path, held: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES % {"held": held})
    return path


def at(when: datetime, body: dict[str, Any]) -> dict[str, Any]:
    """The helpers' event, happening at ``when`` (now-ish, not in the helpers' past)."""
    return {**body, "occurred_at": when.isoformat()}


def subjects(mail: MailCatcher) -> Counter[str]:
    return Counter(m.subject for m in mail.messages())


async def timer_rows(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(select(timers))).mappings()]
    finally:
        await engine.dispose()


async def test_overdue_timers_fire_once_and_a_moved_on_order_stays_silent(
    nats: NatsServer, mail: MailCatcher, database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    settings = settings_for(
        nats.url,
        database_url,
        mail.port,
        rules_file=rules_file(tmp_path, "4s"),
        timer_poll_s=0.2,
    )
    async with running(settings) as (_service, client):
        eta = (now - timedelta(hours=1)).isoformat()
        await publish(
            nats.url,
            # stuck for an hour already: due at once
            at(now - timedelta(hours=1), event("T-stuck", "processing", 0)),
            # promised an hour ago, not delivered
            at(
                now - timedelta(hours=2),
                event("T-late", "shipped", 0, shipment={"id": "p1", "estimated_delivery": eta}),
            ),
            # processing now, shipped a moment later: its timer is cleared before it is due
            at(now, event("T-moved", "processing", 0)),
            at(now + timedelta(seconds=1), event("T-moved", "shipped", 1)),
        )
        await wait_until(
            lambda: (
                subjects(mail)[STUCK.format("T-stuck")] == 1
                and subjects(mail)[MISSED.format("T-late")] == 1
                and subjects(mail)["Your order T-moved has shipped"] == 1
            ),
            timeout=20,
        )
        # past T-moved's due time (4 s after its processing), with polls in between
        await asyncio.sleep(6)
        view = await order(client, "T-stuck")
        assert view is not None
        alerts = [n for n in view["notifications"] if n["template"] == "on_hold"]
        assert [n["status"] for n in alerts] == ["sent"]
    got = subjects(mail)
    assert got[STUCK.format("T-moved")] == 0
    assert got[STUCK.format("T-stuck")] == 1
    assert got[MISSED.format("T-late")] == 1
    rows = {(r["order_id"], r["rule"]): r for r in await timer_rows(database_url)}
    assert ("T-moved", "processing_stuck") not in rows
    assert rows["T-stuck", "processing_stuck"]["fired_at"] is not None


@pytest.mark.slow
async def test_a_timer_armed_before_a_sigkill_fires_once_after_the_restart(
    nats: NatsServer, mail: MailCatcher, database_url: str, tmp_path: Path
) -> None:
    env = _env(
        nats.url,
        database_url,
        mail.port,
        NOTIFIER_RULES_FILE=str(rules_file(tmp_path, "8s")),
        NOTIFIER_TIMER_POLL_S="0.2",
    )
    log = tmp_path / "service.log"
    first = _start(env, log)
    try:
        armed_at = datetime.now(UTC)
        await publish(nats.url, at(armed_at, event("K-stuck", "processing", 0)))
        await wait_until(lambda: _has_timer(database_url), timeout=30)
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
        # down past the due time: nothing can have been sent
        delay = (armed_at + timedelta(seconds=9) - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(delay, 0))
        assert subjects(mail)[STUCK.format("K-stuck")] == 0
        second = _start(env, log)
        try:
            await wait_until(lambda: subjects(mail)[STUCK.format("K-stuck")] >= 1, timeout=60)
            await asyncio.sleep(2)  # room for a duplicate to show up
        finally:
            second.terminate()
            await asyncio.to_thread(second.wait, 40)
    finally:
        if first.poll() is None:
            first.kill()
    assert subjects(mail)[STUCK.format("K-stuck")] == 1, log.read_text()[-3000:]


async def _has_timer(database_url: str) -> bool:
    try:
        rows = await timer_rows(database_url)
    except DBAPIError:  # not migrated yet
        return False
    return any(r["order_id"] == "K-stuck" for r in rows)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_replicas_fire_each_due_timer_once(
    nats: NatsServer, mail: MailCatcher, database_url: str, tmp_path: Path
) -> None:
    orders = 40
    now = datetime.now(UTC)
    settings = settings_for(
        nats.url,
        database_url,
        mail.port,
        rules_file=rules_file(tmp_path, "2s"),
        timer_poll_s=0.05,
        ingest_batch_size=5,
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(settings))
        await stack.enter_async_context(running(settings))
        # due over the next few seconds, while both replicas poll every 50 ms
        await publish(
            nats.url,
            *[
                at(
                    now - timedelta(seconds=2) + timedelta(milliseconds=100 * i),
                    event(f"R-{i}", "processing", 0),
                )
                for i in range(orders)
            ],
        )
        await wait_until(
            lambda: sum(subjects(mail)[STUCK.format(f"R-{i}")] for i in range(orders)) >= orders,
            timeout=60,
        )
        await asyncio.sleep(2)
    got = subjects(mail)
    assert [got[STUCK.format(f"R-{i}")] for i in range(orders)] == [1] * orders
    assert max(Counter(m.message_id for m in mail.messages()).values()) == 1


async def test_erasure_and_retention_clear_timers(
    nats: NatsServer, mail: MailCatcher, database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    settings = settings_for(
        nats.url, database_url, mail.port, rules_file=rules_file(tmp_path, "1h")
    )
    async with running(settings):
        await publish(
            nats.url,
            at(now, event("E-1", "processing", 0)),
            at(now, event("E-2", "processing", 0)),
            at(now, event("E-3", "processing", 0)),
        )
        await wait_until(lambda: _timers_of(database_url, 3), timeout=20)
    engine = create_engine(database_url)
    try:
        await erase_customer(engine, "cust-E-1", delete_dead_letter=_nothing)
        async with engine.begin() as conn:
            await conn.execute(
                update(orders)
                .where(orders.c.order_id == "E-2")
                .values(updated_at=now - timedelta(days=60))
            )
        await prune(engine, dedup_days=30, notification_days=180)
    finally:
        await engine.dispose()
    assert [r["order_id"] for r in await timer_rows(database_url)] == ["E-3"]


async def _timers_of(database_url: str, count: int) -> bool:
    return len(await timer_rows(database_url)) == count


async def _nothing(seq: int) -> None:
    raise AssertionError(f"no dead letter to delete, asked for {seq}")
