"""Fallback groups in the ledger: standby channels taken up or stood down.

A rule with ``fallback`` plans one notification per channel of the group: the first
the customer can receive ``queued``, the later ones ``standby`` in rank order. Two
writers settle a group, the sender recording a fate (``fates.py``) and a provider's
delivery receipt (``receipts.py``); both end here. A failure queues the next standby
(:func:`fall_back`); a message that went out for good suppresses the rest
(:func:`stand_down`). Both are conditional moves of the status table, so a receipt
and a record that race settle a group once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.notification_status import Move, NotificationStatus, sources
from notifier.store.moves import any_of, move
from notifier.store.tables import notifications

N = notifications.c
Q = NotificationStatus


async def fall_back(conn: AsyncConnection, group: str, rank: int, now: datetime) -> bool:
    """Queue the next standby channel of the group, if there is one (the caller wakes
    the outbox)."""
    following = (
        select(N.id)
        .where(N.fallback_group == group)
        .where(any_of(N.status, sources(Move.FALL_BACK, Q.QUEUED)))
        .where(N.fallback_rank > rank)
        .order_by(N.fallback_rank)
        .limit(1)
        .scalar_subquery()
    )
    result = await conn.execute(
        move(Move.FALL_BACK, Q.QUEUED)
        .where(N.id == following)
        .values(
            dispatch_pending=True,
            dispatch_gen=N.dispatch_gen + 1,
            next_attempt_at=now,
            updated_at=now,
            last_error=None,
        )
    )
    return result.rowcount == 1


async def stand_down(conn: AsyncConnection, group: str, channel: str, now: datetime) -> None:
    """The group's message went out on ``channel``: its standby channels are not needed."""
    await conn.execute(
        move(Move.STAND_DOWN, Q.SUPPRESSED)
        .where(N.fallback_group == group)
        .values(last_error=f"delivered on {channel}", updated_at=now)
    )
