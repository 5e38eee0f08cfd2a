"""Load the orders a batch touches (locked) and write the pipeline's plan, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, and_, bindparam, delete, or_, select, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.model import (
    NotificationStatus,
    OrderAggregate,
    StoredEvent,
    StoredNotification,
    StoredTimer,
)
from notifier.core.notification_status import Move
from notifier.core.plan import BatchPlan, NewNotification, TimerWrite
from notifier.errors import StoreError
from notifier.store.moves import move
from notifier.store.tables import events, notifications, orders, timers


async def lock_orders(conn: AsyncConnection, order_ids: Sequence[str]) -> None:
    """Serialise work on the same orders across replicas (PostgreSQL advisory locks).

    Locks are taken in one sorted pass, so two replicas can never deadlock on them;
    they are released at commit. SQLite needs none: ``BEGIN IMMEDIATE`` holds the
    database's single write lock for the whole transaction.
    """
    if conn.dialect.name != "postgresql" or not order_ids:
        return
    await conn.execute(
        text(
            "SELECT pg_advisory_xact_lock(k) FROM "
            "(SELECT hashtextextended(x, 0) AS k FROM unnest(CAST(:ids AS text[])) AS x "
            "ORDER BY k) AS s"
        ),
        {"ids": sorted(set(order_ids))},
    )


async def load_orders(
    conn: AsyncConnection,
    order_ids: Sequence[str],
    event_ids: Sequence[str],
    *,
    with_timers: bool = False,
) -> tuple[dict[str, OrderAggregate], dict[str, str]]:
    """The touched orders with history and ledger (and their timers, when the rules have
    time rules), and the owner order of each known event id."""
    ids = sorted(set(order_ids))
    aggregates = {oid: OrderAggregate(order_id=oid, exists=False) for oid in ids}
    for (oid,) in await conn.execute(select(orders.c.order_id).where(orders.c.order_id.in_(ids))):
        aggregates[oid].exists = True
    # the touched orders' history and, in the same statement, the owner of any of the
    # batch's event ids stored under another order (a conflict): one round trip, not two
    owners: dict[str, str] = {}
    rows = await conn.execute(
        select(events).where(
            or_(events.c.order_id.in_(ids), events.c.event_id.in_(sorted(set(event_ids))))
        )
    )
    for r in rows.mappings():
        owners[r["event_id"]] = r["order_id"]
        aggregate = aggregates.get(r["order_id"])
        if aggregate is None:
            continue
        aggregate.events[r["event_id"]] = StoredEvent(
            event_id=r["event_id"],
            order_id=r["order_id"],
            seq=r["seq"],
            revised_seq=r["revised_seq"],
            occurred_at=_aware(r["occurred_at"]),
            state=r["state"],
            shipment_id=r["shipment_id"],
            content_hash=r["content_hash"],
            payload=r["payload"],
            retracted=r["retracted"],
            outcome=r["outcome"],
            customer_id=r["customer_id"],
        )
    n = notifications.c
    rows = await conn.execute(
        select(
            n.id,
            n.idempotency_key,
            n.event_id,
            n.channel,
            n.template,
            n.status,
            n.digest,
            n.state,
            n.order_id,
            n.subject,
            n.sent_at,
        ).where(n.order_id.in_(ids))
    )
    for r in rows.mappings():
        aggregates[r["order_id"]].notifications[r["idempotency_key"]] = StoredNotification(
            id=r["id"],
            idempotency_key=r["idempotency_key"],
            event_id=r["event_id"],
            channel=r["channel"],
            template=r["template"],
            status=r["status"],
            digest=r["digest"],
            state=r["state"],
            subject=r["subject"],
            sent_at=_aware(r["sent_at"]) if r["sent_at"] is not None else None,
        )
    if with_timers:
        for r in (await conn.execute(select(timers).where(timers.c.order_id.in_(ids)))).mappings():
            aggregates[r["order_id"]].timers[r["rule"], r["shipment"]] = StoredTimer(
                order_id=r["order_id"],
                rule=r["rule"],
                shipment=r["shipment"],
                due_at=_aware(r["due_at"]),
                armed_at=_aware(r["armed_at"]),
                event_id=r["event_id"],
                customer_id=r["customer_id"],
                fired_at=_aware(r["fired_at"]) if r["fired_at"] is not None else None,
            )
    return aggregates, owners


_Processor = Callable[[Any], Any] | None


@lru_cache(maxsize=64)
def _insert_sql(
    dialect: Dialect, table: Table, keys: tuple[str, ...]
) -> tuple[str, tuple[_Processor, ...]] | None:
    """The driver-level ``INSERT`` for these columns and each column's bind processor,
    exactly as SQLAlchemy compiles them; ``None`` when the statement would need more
    than the row's values (a column default, a named paramstyle)."""
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    if not dialect.positional or tuple(compiled.positiontup or ()) != keys:
        return None
    processors = tuple(
        compiled.binds[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys
    )
    return compiled.string, processors


async def _insert_many(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """One executemany of rows that all have the same keys.

    The values go through the same bind processors SQLAlchemy would apply, but column
    by column here rather than through its per-row parameter machinery (a dict of
    processed parameters built for each row): the ledger rows of a batch are wide.
    """
    keys = tuple(rows[0])
    found = _insert_sql(conn.dialect, table, keys)
    if found is None:
        await conn.execute(table.insert(), list(rows))
        return
    sql, processors = found
    columns = [
        [row[key] for row in rows] if process is None else [process(row[key]) for row in rows]
        for key, process in zip(keys, processors, strict=True)
    ]
    await conn.exec_driver_sql(sql, list(zip(*columns, strict=True)))


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _event_row(e: StoredEvent, now: datetime) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "order_id": e.order_id,
        "customer_id": e.customer_id,
        "seq": e.seq,
        "revised_seq": e.revised_seq,
        "occurred_at": e.occurred_at,
        "state": e.state,
        "shipment_id": e.shipment_id,
        "content_hash": e.content_hash,
        "payload": e.payload,
        "retracted": e.retracted,
        "outcome": e.outcome or "applied",
        "received_at": now,
    }


def _notification_row(d: NewNotification, now: datetime) -> dict[str, Any]:
    return {
        "id": d.id,
        "idempotency_key": d.idempotency_key,
        "event_id": d.event_id,
        "order_id": d.order_id,
        "customer_id": d.customer_id,
        "channel": d.channel,
        "template": d.template,
        "template_version": d.template_version,
        "locale": d.locale,
        "state": d.state,
        "recipient": d.recipient,
        "subject": d.subject,
        "body_text": d.body_text,
        "body_html": d.body_html,
        "sender": d.sender,
        "reply_to": d.reply_to,
        "category": d.category,
        "unsubscribe_url": d.unsubscribe_url,
        "status": d.status.value,
        "priority": d.priority,
        "event_seq": d.event_seq,
        "digest": d.digest,
        "fallback_group": d.fallback_group,
        "fallback_rank": d.fallback_rank,
        "not_before": d.not_before,
        # the outbox: a queued row is published to its channel's dispatch queue
        "dispatch_pending": d.status is NotificationStatus.QUEUED,
        "dispatch_gen": 1 if d.status is NotificationStatus.QUEUED else 0,
        "attempts": 0,
        "last_error": d.last_error,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


async def write_plan(conn: AsyncConnection, plan: BatchPlan) -> None:
    """Apply the plan. Every statement is batched (executemany) to keep round trips few."""
    now = datetime.now(UTC)
    new_events: list[dict[str, Any]] = []
    changed_events: list[dict[str, Any]] = []
    for e in plan.events:
        row = _event_row(e, now)
        (new_events if e.new else changed_events).append(row)
    if new_events:
        await _insert_many(conn, events, new_events)
    if changed_events:
        stmt = (
            update(events)
            .where(events.c.event_id == bindparam("b_event_id"))
            .values(
                {k: bindparam(k) for k in changed_events[0] if k not in ("event_id", "received_at")}
            )
        )
        for row in changed_events:
            row["b_event_id"] = row.pop("event_id")
            row.pop("received_at")
        await conn.execute(stmt, changed_events)
    order_rows = [
        {
            "order_id": o.order_id,
            "source": o.source,
            "customer_id": o.customer_id,
            "state": o.derived_state,
            "order_state": o.order_state,
            "shipments": o.shipments,
            "last_event_at": o.last_event_at,
            "updated_at": now,
        }
        for o in plan.orders
    ]
    inserts = [r for r, o in zip(order_rows, plan.orders, strict=True) if not o.exists]
    updates = [r for r, o in zip(order_rows, plan.orders, strict=True) if o.exists]
    if inserts:
        await _insert_many(conn, orders, inserts)
    if updates:
        stmt = (
            update(orders)
            .where(orders.c.order_id == bindparam("b_order_id"))
            .values({k: bindparam(k) for k in updates[0] if k != "order_id"})
        )
        for row in updates:
            row["b_order_id"] = row.pop("order_id")
        await conn.execute(stmt, updates)
    if plan.notifications:
        await _insert_many(
            conn, notifications, [_notification_row(d, now) for d in plan.notifications]
        )
    if plan.retold:
        await conn.execute(
            update(notifications)
            .where(notifications.c.id == bindparam("b_id"))
            .values(digest=bindparam("b_digest"), updated_at=now),
            [{"b_id": nid, "b_digest": value} for nid, value in plan.retold.items()],
        )
    for u in plan.updates:
        values: dict[str, Any] = {"updated_at": now}
        if u.replacement is None:
            how, to = Move.WITHDRAW, NotificationStatus.SUPPRESSED
            values.update(last_error=u.reason)
        else:
            how, to = Move.REVISE, u.replacement.status
            row = _notification_row(u.replacement, now)
            for key in (
                "id",
                "idempotency_key",
                "created_at",
                "event_seq",
                "dispatch_gen",
                "status",
            ):
                row.pop(key)
            values.update(row)  # attempts and next attempt start afresh
            if u.from_status == NotificationStatus.QUEUED.value:
                # its dispatch message is already on the queue and reads the new content
                values.pop("dispatch_pending")
            elif row["dispatch_pending"]:
                values["dispatch_gen"] = notifications.c.dispatch_gen + 1
        result = await conn.execute(
            move(how, to, only_from=u.from_status).where(notifications.c.id == u.id).values(values)
        )
        if result.rowcount != 1:
            raise StoreError(f"notification {u.id} changed status while its order was locked")
    if plan.timers:
        await write_timers(conn, plan.timers, now)


def _timer_key(t: StoredTimer) -> Any:
    return and_(
        timers.c.order_id == t.order_id, timers.c.rule == t.rule, timers.c.shipment == t.shipment
    )


async def write_timers(conn: AsyncConnection, writes: Sequence[TimerWrite], now: datetime) -> None:
    """Arm, re-arm, mark or clear timers (their orders are locked: no one else writes
    them now). A write clears any claim: what it decided stands."""
    for w in writes:
        t = w.timer
        if w.delete:
            await conn.execute(delete(timers).where(_timer_key(t)))
            continue
        values = {
            "customer_id": t.customer_id,
            "due_at": t.due_at,
            "armed_at": t.armed_at,
            "event_id": t.event_id,
            "fired_at": t.fired_at,
            "claimed_until": None,
            "updated_at": now,
        }
        if w.exists:
            await conn.execute(update(timers).where(_timer_key(t)).values(values))
        else:
            keys = {"order_id": t.order_id, "rule": t.rule, "shipment": t.shipment}
            await conn.execute(timers.insert().values({**keys, **values}))
