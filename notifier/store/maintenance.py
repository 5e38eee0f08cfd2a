"""Retention and erasure: personal data is kept only as long as configured, and one
customer can be erased on request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, case, delete, false, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.notification_status import SETTLED, Move, NotificationStatus
from notifier.store.moves import move, status_values
from notifier.store.tables import dead_push_tokens, events, notifications, ops_alerts, orders

#: the ledger's reason for a notification withheld because its customer was erased
ERASED = "customer erased"


@dataclass(frozen=True, slots=True)
class PruneReport:
    """How much retention removed."""

    orders: int
    events: int
    notifications: int


async def prune(
    engine: AsyncEngine, *, dedup_days: int, notification_days: int, now: datetime | None = None
) -> PruneReport:
    """Forget orders idle longer than ``dedup_days`` (with their dedup records and history),
    and settled notifications older than ``notification_days``.

    An event re-published after its order was forgotten is treated as new: the dedup
    window is the retention, by design, so storage stays bounded. On PostgreSQL an order
    that a batch is working on right now (its advisory lock is held) is left for the
    next run, so a new event can never land on an order that is half deleted; SQLite
    runs one transaction at a time anyway. ``now`` is for the benchmark, which asks
    what retention would leave once the run's data has aged.
    """
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=dedup_days)
    idle: ColumnElement[bool] = orders.c.updated_at < cutoff
    if engine.dialect.name == "postgresql":
        # CASE fixes the order: only idle orders are tried for their lock
        lock = text("pg_try_advisory_xact_lock(hashtextextended(orders.order_id, 0))")
        idle = case((orders.c.updated_at < cutoff, lock), else_=false()).is_(True)
    async with engine.begin() as conn:
        gone = (await conn.execute(delete(orders).where(idle).returning(orders.c.order_id)))
        order_ids = [oid for (oid,) in gone]
        deleted_events = 0
        for start in range(0, len(order_ids), 500):
            chunk = order_ids[start : start + 500]
            result = await conn.execute(delete(events).where(events.c.order_id.in_(chunk)))
            deleted_events += result.rowcount
        nt = await conn.execute(
            delete(notifications)
            .where(notifications.c.created_at < now - timedelta(days=notification_days))
            .where(notifications.c.status.in_(status_values(SETTLED)))
        )
        # dead push tokens are personal data too: kept as long as the ledger
        await conn.execute(
            delete(dead_push_tokens)
            .where(dead_push_tokens.c.created_at < now - timedelta(days=notification_days))
        )
        await conn.execute(
            delete(ops_alerts).where(ops_alerts.c.created_at < now - timedelta(days=30))
        )
    return PruneReport(
        orders=len(order_ids), events=deleted_events, notifications=nt.rowcount
    )


def _scrub(payload: str) -> str:
    body = json.loads(payload)
    customer = body.get("customer") or {}
    for key in ("name", "email", "phone"):
        if key in customer:
            customer[key] = None
    if "push_tokens" in customer:
        customer["push_tokens"] = []
    body["attributes"] = {}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class EraseReport:
    """What erasing one customer touched."""

    events: int
    notifications: int


async def erase_customer(engine: AsyncEngine, customer_id: str) -> EraseReport:
    """Remove a customer's contacts, names, free-form attributes and message bodies.

    Ids, states and the ledger's fates stay, so the order's history still adds up;
    content hashes stay too, so a replayed old event is still recognised as a duplicate.
    Queued notifications for the customer are suppressed: nothing more is sent.
    """
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(events.c.event_id, events.c.payload).where(
                    events.c.customer_id == customer_id
                )
            )
        ).all()
        for event_id, payload in rows:
            await conn.execute(
                update(events).where(events.c.event_id == event_id).values(payload=_scrub(payload))
            )
        await conn.execute(
            move(Move.ERASE, NotificationStatus.SUPPRESSED)
            .where(notifications.c.customer_id == customer_id)
            .values(last_error=ERASED)
        )
        await conn.execute(
            delete(dead_push_tokens).where(dead_push_tokens.c.customer_id == customer_id)
        )
        nt = await conn.execute(
            update(notifications)
            .where(notifications.c.customer_id == customer_id)
            .values(recipient=None, subject=None, body_text=None, body_html=None, updated_at=now)
        )
    return EraseReport(events=len(rows), notifications=nt.rowcount)
