"""Claiming due timers: which replica re-checks which timer, without holding locks.

A claim is a short transaction of its own: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
(replicas take different rows, and skip those an ingest batch is re-arming right
now), one writer on SQLite. It only stamps ``claimed_until``; the firing transaction
then locks the orders (``lock_orders``, the same advisory locks ingest takes, so the
two never interleave) and reads the timer again: fired already, re-armed or cleared
since, it is left alone. A poller that dies holding a claim loses it when
``claimed_until`` passes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.model import StoredTimer
from notifier.store.tables import timers


async def claim_due(
    engine: AsyncEngine, now: datetime, *, limit: int, lease: timedelta
) -> list[StoredTimer]:
    """Claim up to ``limit`` unfired timers due by ``now``, earliest first."""
    t = timers.c
    due = and_(
        t.fired_at.is_(None),
        t.due_at <= now,
        or_(t.claimed_until.is_(None), t.claimed_until < now),
    )
    pick = select(timers).where(due).order_by(t.due_at).limit(limit)
    if engine.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    async with engine.begin() as conn:
        rows = (await conn.execute(pick)).mappings().all()
        if not rows:
            return []
        await conn.execute(
            update(timers)
            .where(
                and_(
                    t.order_id == bindparam("b_order"),
                    t.rule == bindparam("b_rule"),
                    t.shipment == bindparam("b_shipment"),
                )
            )
            .values(claimed_until=now + lease),
            [
                {"b_order": r["order_id"], "b_rule": r["rule"], "b_shipment": r["shipment"]}
                for r in rows
            ],
        )
    return [
        StoredTimer(
            order_id=r["order_id"],
            rule=r["rule"],
            shipment=r["shipment"],
            due_at=r["due_at"],
            armed_at=r["armed_at"],
            event_id=r["event_id"],
            customer_id=r["customer_id"],
        )
        for r in rows
    ]
