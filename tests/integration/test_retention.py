"""Retention (``prune``) and erasure (``erase_customer``) against a database the real
pipeline filled: real NATS, real SMTP (aiosmtpd), SQLite and PostgreSQL. Ages are made
by backdating rows with SQL, since the service stamps them with the current time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.store.db import create_engine
from notifier.store.maintenance import erase_customer, prune
from notifier.store.migrate import upgrade
from notifier.store.tables import events, notifications, orders
from tests.integration.helpers import event, order, publish, running, settings_for, statuses
from tests.support import free_port, wait_until

DEDUP_DAYS = 30
NOTIFICATION_DAYS = 180


async def _no_dead_letters(seq: int) -> None:
    raise AssertionError(f"nothing to delete from the dead-letter stream, asked for {seq}")


async def _email_status(
    client: AsyncClient, order_id: str, wanted: str, *, min_attempts: int = 0
) -> bool:
    view = await order(client, order_id)
    emails = [] if view is None else [n for n in view["notifications"] if n["channel"] == "email"]
    return bool(emails) and all(
        n["status"] == wanted and n["attempts"] >= min_attempts for n in emails
    )


async def _backdate_orders(engine: AsyncEngine, order_ids: Sequence[str], days: float) -> None:
    when = datetime.now(UTC) - timedelta(days=days)
    async with engine.begin() as conn:
        result = await conn.execute(
            update(orders).where(orders.c.order_id.in_(order_ids)).values(updated_at=when)
        )
        assert result.rowcount == len(order_ids)


async def _backdate_notifications(
    engine: AsyncEngine, order_ids: Sequence[str], days: float
) -> None:
    when = datetime.now(UTC) - timedelta(days=days)
    async with engine.begin() as conn:
        result = await conn.execute(
            update(notifications)
            .where(notifications.c.order_id.in_(order_ids))
            .values(created_at=when, updated_at=when)
        )
        assert result.rowcount >= len(order_ids)


async def _rows(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        order_ids = set((await conn.execute(select(orders.c.order_id))).scalars())
        event_rows = (await conn.execute(select(events.c.order_id, events.c.event_id))).all()
        ledger = (
            await conn.execute(
                select(
                    notifications.c.id,
                    notifications.c.order_id,
                    notifications.c.channel,
                    notifications.c.status,
                )
            )
        ).all()
    return {
        "orders": order_ids,
        "events": {(r.order_id, r.event_id) for r in event_rows},
        "notifications": {(r.id, r.order_id, r.channel, r.status) for r in ledger},
    }


async def test_prune_forgets_idle_orders_and_settled_old_notifications(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    # 1. sent (email) and suppressed (push: no push token) notifications
    async with running(settings_for(nats.url, database_url, mail.port)) as (_svc, client):
        await publish(
            nats.url,
            event("OLD-1", "placed", 0),
            event("OLD-1", "confirmed", 1),
            event("OLD-2", "placed", 0),
            event("NEW-1", "placed", 0),
        )
        await mail.wait_for(3, timeout=15)
        for order_id in ("OLD-1", "OLD-2", "NEW-1"):
            await wait_until(lambda o=order_id: _email_status(client, o, "sent"), timeout=15)
    # 2. failed: SMTP on a closed port and a single attempt allowed
    closed = free_port()
    failing = settings_for(nats.url, database_url, closed, dispatch_max_attempts=1)
    async with running(failing) as (_svc, client):
        await publish(nats.url, event("F-1", "placed", 0))
        await wait_until(lambda: _email_status(client, "F-1", "failed"), timeout=15)
    # 3. queued: SMTP on a closed port, retried much later than this test lasts
    queueing = settings_for(
        nats.url,
        database_url,
        closed,
        dispatch_backoff_base_s=3600.0,
        dispatch_backoff_max_s=3600.0,
    )
    async with running(queueing) as (_svc, client):
        await publish(nats.url, event("Q-1", "placed", 0))
        await wait_until(lambda: _email_status(client, "Q-1", "queued", min_attempts=1), timeout=15)

    engine = create_engine(database_url)
    try:
        old = ["OLD-1", "OLD-2", "F-1", "Q-1"]
        await _backdate_orders(engine, old, DEDUP_DAYS + 10)
        await _backdate_orders(engine, ["NEW-1"], DEDUP_DAYS - 1)
        # OLD-2's notifications stay recent: its order goes, its ledger row stays
        await _backdate_notifications(engine, ["OLD-1", "F-1", "Q-1"], NOTIFICATION_DAYS + 20)
        await _backdate_notifications(engine, ["NEW-1"], NOTIFICATION_DAYS - 1)
        before = await _rows(engine)
        assert before["orders"] == {"OLD-1", "OLD-2", "NEW-1", "F-1", "Q-1"}
        statuses_before = {(o, c, s) for _i, o, c, s in before["notifications"]}
        assert ("OLD-1", "email", "sent") in statuses_before
        assert ("OLD-1", "push", "suppressed") in statuses_before
        assert ("F-1", "email", "failed") in statuses_before
        assert ("Q-1", "email", "queued") in statuses_before

        report = await prune(engine, dedup_days=DEDUP_DAYS, notification_days=NOTIFICATION_DAYS)
        after = await _rows(engine)

        assert after["orders"] == {"NEW-1"}
        assert after["events"] == {("NEW-1", "NEW-1-placed-0")}
        expected_kept = {
            n for n in before["notifications"] if n[1] in ("NEW-1", "OLD-2") or n[3] == "queued"
        }
        assert after["notifications"] == expected_kept
        assert {(o, c, s) for _i, o, c, s in after["notifications"] if o == "Q-1"} == {
            ("Q-1", "email", "queued")
        }
        assert report.orders == 4
        assert report.events == len(before["events"]) - 1 == 5
        assert report.notifications == len(before["notifications"]) - len(expected_kept)
        assert report.notifications > 0

        # a second run finds nothing more to do
        again = await prune(engine, dedup_days=DEDUP_DAYS, notification_days=NOTIFICATION_DAYS)
        assert (again.orders, again.events, again.notifications) == (0, 0, 0)
        assert await _rows(engine) == after
    finally:
        await engine.dispose()


async def test_an_event_republished_after_its_order_was_forgotten_is_new(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    placed = event("P-1", "placed", 0)
    kept = event("P-2", "placed", 0)
    async with running(settings_for(nats.url, database_url, mail.port)) as (_svc, client):
        await publish(nats.url, placed, event("P-1", "confirmed", 1), kept)
        await mail.wait_for(2, timeout=15)
        await wait_until(lambda: _email_status(client, "P-1", "sent"), timeout=15)
        await wait_until(lambda: _email_status(client, "P-2", "sent"), timeout=15)
        view = await order(client, "P-1")
        assert view is not None and view["state"] == "confirmed"
        # still known: the same event (past JetStream's dedup) is a duplicate
        await publish(nats.url, placed, msg_ids=["again-0"])
        await wait_until(lambda: _duplicates(client, 1), timeout=15)
    assert len(mail.messages()) == 2

    engine = create_engine(database_url)
    try:
        await _backdate_orders(engine, ["P-1", "P-2"], DEDUP_DAYS + 1)
        # P-1's ledger is past its own retention too; P-2's is not
        await _backdate_notifications(engine, ["P-1"], NOTIFICATION_DAYS + 1)
        report = await prune(engine, dedup_days=DEDUP_DAYS, notification_days=NOTIFICATION_DAYS)
        assert (report.orders, report.events) == (2, 3)
        assert (await _rows(engine))["orders"] == set()
    finally:
        await engine.dispose()

    mail.clear()
    async with running(settings_for(nats.url, database_url, mail.port)) as (_svc, client):
        assert await order(client, "P-1") is None
        await publish(nats.url, placed, kept, msg_ids=["again-1", "again-2"])

        async def both_back() -> bool:
            return all([await order(client, o) is not None for o in ("P-1", "P-2")])

        await wait_until(both_back, timeout=15)
        await wait_until(lambda: _new_events(client, 2), timeout=15)
        for order_id, event_id in (("P-1", "P-1-placed-0"), ("P-2", "P-2-placed-0")):
            view = await order(client, order_id)
            assert view is not None
            assert view["state"] == "placed"
            assert [(e["event_id"], e["outcome"]) for e in view["events"]] == [
                (event_id, "applied")
            ]
        # P-1's ledger was forgotten as well: the confirmation goes out again, as for any
        # new order
        got = await mail.wait_for(1, timeout=15)
        assert got[0].subject == "Your order P-1 is confirmed"
        await wait_until(lambda: _email_status(client, "P-1", "sent"), timeout=15)
        # P-2's ledger row is still there: the deterministic notification id is already
        # recorded as sent, so the customer is not told twice
        view = await order(client, "P-2")
        assert statuses(view) == {"order_confirmed": "sent"}
        assert [m.subject for m in mail.messages()] == ["Your order P-1 is confirmed"]


async def test_prune_on_a_fresh_database_removes_nothing(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        report = await prune(engine, dedup_days=1, notification_days=1)
        assert (report.orders, report.events, report.notifications) == (0, 0, 0)
        erased = await erase_customer(engine, "nobody", delete_dead_letter=_no_dead_letters)
        assert (erased.events, erased.notifications, erased.dead_letters) == (0, 0, 0)
    finally:
        await engine.dispose()


async def test_erase_customer_keeps_ids_and_fates_and_other_customers(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, mail.port)) as (_svc, client):
        await publish(
            nats.url,
            event("Z-1", "placed", 0, email="zed@example.com"),
            event("Z-1", "shipped", 1, email="zed@example.com"),
            event("Y-9", "placed", 0, email="why@example.com"),
        )
        await mail.wait_for(3, timeout=15)
        for order_id in ("Z-1", "Y-9"):
            await wait_until(lambda o=order_id: _email_status(client, o, "sent"), timeout=15)

    engine = create_engine(database_url)
    try:
        report = await erase_customer(engine, "cust-Z-1", delete_dead_letter=_no_dead_letters)
        async with engine.connect() as conn:
            ledger_count = (
                await conn.execute(
                    select(func.count())
                    .select_from(notifications)
                    .where(notifications.c.customer_id == "cust-Z-1")
                )
            ).scalar_one()
            payloads = dict((await conn.execute(select(events.c.event_id, events.c.payload))).all())
            ledger = (
                await conn.execute(
                    select(
                        notifications.c.customer_id,
                        notifications.c.channel,
                        notifications.c.status,
                        notifications.c.recipient,
                        notifications.c.body_text,
                        notifications.c.body_html,
                        notifications.c.subject,
                        notifications.c.provider_message_id,
                    )
                )
            ).all()
        assert report.events == 2
        assert report.notifications == ledger_count > 0
        for event_id in ("Z-1-placed-0", "Z-1-shipped-1"):
            body = json.loads(payloads[event_id])
            assert body["customer"]["id"] == "cust-Z-1"
            assert body["customer"]["email"] is None
            assert body["customer"]["name"] is None
            assert body["attributes"] == {}
            # the facts of the event stay
            assert body["order_id"] == "Z-1"
            assert body["state"] in ("placed", "shipped")
        assert "why@example.com" in payloads["Y-9-placed-0"]
        for row in ledger:
            if row.customer_id == "cust-Z-1":
                assert (row.recipient, row.subject, row.body_text, row.body_html) == (
                    None,
                    None,
                    None,
                    None,
                )
                if row.channel == "email":
                    # what happened stays: sent, with the provider's id
                    assert row.status == "sent"
                    assert row.provider_message_id
            elif row.channel == "email":
                assert row.recipient == "why@example.com"
                assert row.body_text
    finally:
        await engine.dispose()

    # the erased history still replays: a duplicate stays a duplicate, and the order
    # moves on (nothing more can be sent to an erased address)
    mail.clear()
    async with running(settings_for(nats.url, database_url, mail.port)) as (_svc, client):
        await publish(
            nats.url, event("Z-1", "placed", 0, email="zed@example.com"), msg_ids=["again-z"]
        )
        await wait_until(lambda: _duplicates(client, 1), timeout=15)
        view = await order(client, "Z-1")
        assert view is not None
        assert view["state"] == "shipped"
        assert len(view["events"]) == 2
    assert mail.messages() == []


async def _counter(client: AsyncClient, outcome: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "notifier_events_total" and sample.labels == {"outcome": outcome}:
                return float(sample.value)
    return 0.0


async def _duplicates(client: AsyncClient, n: int) -> bool:
    return await _counter(client, "duplicate") == n


async def _new_events(client: AsyncClient, n: int) -> bool:
    return await _counter(client, "new") == n


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_prune_leaves_an_order_a_batch_is_working_on(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, mail.port)):
        await publish(nats.url, event("LK-1", "placed", 0), event("LK-2", "placed", 0))
        await mail.wait_for(2, timeout=15)
    engine = create_engine(database_url)
    try:
        await _backdate_orders(engine, ["LK-1", "LK-2"], DEDUP_DAYS + 1)
        async with engine.connect() as holder:
            # what the ingest transaction holds while it works on LK-1
            await holder.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('LK-1', 0))"))
            report = await prune(engine, dedup_days=DEDUP_DAYS, notification_days=NOTIFICATION_DAYS)
            assert report.orders == 1
            assert (await _rows(engine))["orders"] == {"LK-1"}
            await holder.rollback()
        report = await prune(engine, dedup_days=DEDUP_DAYS, notification_days=NOTIFICATION_DAYS)
        assert report.orders == 1
        assert (await _rows(engine))["orders"] == set()
    finally:
        await engine.dispose()
