"""Delivery receipts in the ledger: a provider's final word on a message it accepted.

A provider that calls back (Twilio's status callback) says ``delivered``,
``undelivered`` or ``failed`` some time after the sender recorded ``sent``, or before
it, when the callback is fast. The receipt moves the notification on without ever
moving it backwards, and settles its fallback group (``fallback.py``): a delivered
message stands its standbys down, an undelivered one hands over to the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.notification_status import Move, NotificationStatus, sources, targets
from notifier.delivery.fallback import fall_back, stand_down
from notifier.store.moves import move
from notifier.store.tables import notifications

N = notifications.c
Q = NotificationStatus


#: built once, values as parameters: building and keying them for every callback was
#: a third of the receipt route's CPU
_BY_PROVIDER_ID = select(N.id).where(N.provider_message_id == bindparam("b_pmid")).limit(1)
_ROW = select(
    N.status, N.channel, N.template, N.provider_message_id, N.fallback_group, N.fallback_rank
).where(N.id == bindparam("b_id"))


def _receipt_stmt(how: Move, to: NotificationStatus) -> Any:
    now = bindparam("b_now", type_=N.updated_at.type)
    values: dict[str, Any] = {"updated_at": now, "provider_message_id": bindparam("b_pmid")}
    if how is Move.RECEIPT_OK:
        values["delivered_at"] = now
    else:
        values["last_error"] = bindparam("b_error")
    return move(how, to).where(N.id == bindparam("b_id")).values(values)


_MOVES = {
    (how, to): _receipt_stmt(how, to)
    for how in (Move.RECEIPT_OK, Move.RECEIPT_FAILED)
    for to in targets(how)
}


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    """What a delivery receipt did to the ledger."""

    found: bool
    changed: bool
    channel: str | None = None
    template: str | None = None
    status: str | None = None
    fell_back: bool = False


async def find_by_provider_id(engine: AsyncEngine, provider_message_id: str) -> str | None:
    """The notification a provider knows by this id, if any."""
    async with engine.connect() as conn:
        found: str | None = (
            await conn.execute(_BY_PROVIDER_ID, {"b_pmid": provider_message_id})
        ).scalar()
    return found


async def record_receipt(
    engine: AsyncEngine,
    notification_id: str,
    provider_message_id: str,
    status: str,
    error_code: str | None,
) -> ReceiptResult:
    """A provider's final word on a sent message: ``delivered``, ``undelivered`` or
    ``failed``. A receipt never moves a notification backwards, and a repeated receipt
    changes nothing; an unsuccessful one hands over to the next fallback channel."""
    now = datetime.now(UTC)
    to = Q(status)
    how = Move.RECEIPT_OK if to in targets(Move.RECEIPT_OK) else Move.RECEIPT_FAILED
    async with engine.begin() as conn:
        row = (await conn.execute(_ROW, {"b_id": notification_id})).first()
        if row is None or (
            row.provider_message_id is not None and row.provider_message_id != provider_message_id
        ):
            return ReceiptResult(found=False, changed=False)
        unchanged = ReceiptResult(found=True, changed=False, channel=row.channel, status=row.status)
        if row.status not in sources(how, to):
            return unchanged
        params: dict[str, object] = {
            "b_id": notification_id,
            "b_now": now,
            "b_pmid": provider_message_id,
        }
        if how is Move.RECEIPT_FAILED:
            params["b_error"] = f"receipt: {status}" + (f" ({error_code})" if error_code else "")
        stmt = _MOVES.get((how, to))
        if stmt is None:  # a move the status table does not have: IllegalMove
            stmt = _receipt_stmt(how, to)
        result = await conn.execute(stmt, params)
        if result.rowcount != 1:
            return unchanged  # its sender's record or another receipt came first
        fell_back = False
        if row.fallback_group:
            if how is Move.RECEIPT_OK:
                await stand_down(conn, row.fallback_group, row.channel, now)
            else:
                fell_back = await fall_back(conn, row.fallback_group, row.fallback_rank or 0, now)
    return ReceiptResult(
        found=True,
        changed=True,
        channel=row.channel,
        template=row.template,
        status=status,
        fell_back=fell_back,
    )
