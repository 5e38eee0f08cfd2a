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
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.notification_status import Move, NotificationStatus, sources
from notifier.store.moves import any_of, move
from notifier.store.tables import notifications

N = notifications.c
Q = NotificationStatus


def _fall_back_stmt() -> Any:
    following = (
        select(N.id)
        .where(N.fallback_group == bindparam("b_group"))
        .where(any_of(N.status, sources(Move.FALL_BACK, Q.QUEUED)))
        .where(N.fallback_rank > bindparam("b_rank"))
        .order_by(N.fallback_rank)
        .limit(1)
        .scalar_subquery()
    )
    now = bindparam("b_now", type_=N.updated_at.type)
    return (
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


#: built once, the time and the group as parameters (building and keying a statement
#: per call cost more than running it)
_FALL_BACK = _fall_back_stmt()
_STAND_DOWN = (
    move(Move.STAND_DOWN, Q.SUPPRESSED)
    .where(N.fallback_group == bindparam("b_group"))
    .values(last_error=bindparam("b_error"), updated_at=bindparam("b_now", type_=N.updated_at.type))
)


async def fall_back(conn: AsyncConnection, group: str, rank: int, now: datetime) -> bool:
    """Queue the next standby channel of the group, if there is one (the caller wakes
    the outbox)."""
    result = await conn.execute(_FALL_BACK, {"b_group": group, "b_rank": rank, "b_now": now})
    return result.rowcount == 1


async def stand_down(conn: AsyncConnection, group: str, channel: str, now: datetime) -> None:
    """The group's message went out on ``channel``: its standby channels are not needed."""
    await conn.execute(
        _STAND_DOWN, {"b_group": group, "b_error": f"delivered on {channel}", "b_now": now}
    )
