"""Retention and erasure: personal data is kept only as long as configured, and one
customer can be erased on request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, case, delete, false, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.notification_status import SETTLED, Move, NotificationStatus
from notifier.errors import DeadLetterError
from notifier.store.deadletter_index import (
    customer_dead_letters,
    forget_dead_letters,
    prune_dead_letters,
)
from notifier.store.feed import delete_customer_items, prune_items
from notifier.store.moves import move, status_values
from notifier.store.preferences import erase_preferences, prune_preferences
from notifier.store.tables import (
    dead_push_tokens,
    events,
    notifications,
    ops_alerts,
    orders,
    timers,
)

#: the ledger's reason for a notification withheld because its customer was erased
ERASED = "customer erased"


@dataclass(frozen=True, slots=True)
class PruneReport:
    """How much retention removed."""

    orders: int
    events: int
    notifications: int
    dead_letters: int = 0
    feed_items: int = 0
    preferences: int = 0


async def prune(
    engine: AsyncEngine,
    *,
    dedup_days: int,
    notification_days: int,
    deadletter_days: float = 30.0,
    now: datetime | None = None,
) -> PruneReport:
    """Forget orders idle longer than ``dedup_days`` (with their dedup records and history),
    settled notifications older than ``notification_days`` (and the stored preferences,
    that old, of customers with no order left), and the index rows of dead
    letters older than ``deadletter_days``: the DEADLETTER stream's own max age (the
    same setting) removes their messages, so the two age out together.

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
        gone = await conn.execute(delete(orders).where(idle).returning(orders.c.order_id))
        order_ids = [oid for (oid,) in gone]
        deleted_events = 0
        for start in range(0, len(order_ids), 500):
            chunk = order_ids[start : start + 500]
            result = await conn.execute(delete(events).where(events.c.order_id.in_(chunk)))
            deleted_events += result.rowcount
            # a forgotten order's timers go with it: nothing left to re-check them against
            await conn.execute(delete(timers).where(timers.c.order_id.in_(chunk)))
        nt = await conn.execute(
            delete(notifications)
            .where(notifications.c.created_at < now - timedelta(days=notification_days))
            .where(notifications.c.status.in_(status_values(SETTLED)))
        )
        # in-app feed items hold what the ledger's bodies held: kept as long
        feed = await prune_items(conn, now - timedelta(days=notification_days))
        # dead push tokens are personal data too: kept as long as the ledger
        await conn.execute(
            delete(dead_push_tokens).where(
                dead_push_tokens.c.created_at < now - timedelta(days=notification_days)
            )
        )
        await conn.execute(
            delete(ops_alerts).where(ops_alerts.c.created_at < now - timedelta(days=30))
        )
        dead = await prune_dead_letters(conn, now - timedelta(days=deadletter_days))
        # after the orders: a customer whose last order just went is no longer ordering
        prefs = await prune_preferences(conn, now - timedelta(days=notification_days))
    return PruneReport(
        orders=len(order_ids),
        events=deleted_events,
        notifications=nt.rowcount,
        dead_letters=dead,
        feed_items=feed,
        preferences=prefs,
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
    dead_letters: int = 0
    feed_items: int = 0
    preferences: int = 0


#: deletes one message of the DEADLETTER stream by sequence (gone already is no error);
#: raises ``DeadLetterError`` when the stream cannot be reached
DeleteDeadLetter = Callable[[int], Awaitable[None]]


async def erase_customer(
    engine: AsyncEngine, customer_id: str, *, delete_dead_letter: DeleteDeadLetter
) -> EraseReport:
    """Remove a customer's contacts, names, free-form attributes, message bodies,
    stored preferences and in-app feed items, and their refused events from the
    DEADLETTER stream (with their index rows).

    Ids, states and the ledger's fates stay, so the order's history still adds up;
    content hashes stay too, so a replayed old event is still recognised as a duplicate.
    Queued notifications for the customer are suppressed and their timers cleared:
    nothing more is sent. A dead
    letter's index row goes only once its message is gone, so an erasure cut short by
    a NATS outage is finished by running it again.
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
        # nothing more is sent: no time rule fires for them either
        await conn.execute(delete(timers).where(timers.c.customer_id == customer_id))
        feed = await delete_customer_items(conn, customer_id)
        prefs = await erase_preferences(conn, customer_id)
        nt = await conn.execute(
            update(notifications)
            .where(notifications.c.customer_id == customer_id)
            .values(recipient=None, subject=None, body_text=None, body_html=None, updated_at=now)
        )
    dead = await _erase_dead_letters(engine, customer_id, delete_dead_letter)
    return EraseReport(
        events=len(rows),
        notifications=nt.rowcount,
        dead_letters=dead,
        feed_items=feed,
        preferences=prefs,
    )


async def _erase_dead_letters(
    engine: AsyncEngine, customer_id: str, delete_dead_letter: DeleteDeadLetter
) -> int:
    seqs = await customer_dead_letters(engine, customer_id)
    done: list[int] = []
    try:
        for seq in seqs:
            await delete_dead_letter(seq)
            done.append(seq)
    except DeadLetterError as exc:
        raise DeadLetterError(
            f"the database is erased, but {len(seqs) - len(done)} of the customer's "
            f"{len(seqs)} dead letter(s) are still in the dead-letter stream ({exc}); "
            "run the erasure again once NATS answers"
        ) from exc
    finally:
        if done:
            await forget_dead_letters(engine, done)
    return len(seqs)
