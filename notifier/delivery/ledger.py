"""Ledger queries used by the dispatcher: claim due notifications, record their fate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from notifier.core.model import NotificationStatus
from notifier.store.maintenance import ERASED
from notifier.store.tables import notifications

N = notifications.c
Q = NotificationStatus


@dataclass(frozen=True, slots=True)
class Claimed:
    """A notification a dispatcher holds a lease on."""

    id: str
    order_id: str
    event_seq: int
    channel: str
    recipient: str
    subject: str | None
    body_text: str
    body_html: str | None
    locale: str
    attempts: int
    created_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


async def claim_due(
    engine: AsyncEngine, channel: str, limit: int, lease_s: float
) -> list[Claimed]:
    """Take up to ``limit`` due notifications; an expired lease (crashed sender) is due again.

    A notification waits while an earlier one (by event) for the same order on the same
    channel is still queued or in flight, so a retried "confirmed" is never overtaken
    by "shipped".
    """
    now = _now()
    earlier = aliased(notifications)
    E = earlier.c
    blocked = (
        select(E.id)
        .where(E.order_id == N.order_id)
        .where(E.channel == N.channel)
        .where(E.status.in_([Q.QUEUED.value, Q.SENDING.value]))
        .where(E.event_seq < N.event_seq)
        .exists()
    )
    due = (
        select(N.id)
        .where(N.channel == channel)
        .where(
            or_(
                and_(N.status == Q.QUEUED.value, N.next_attempt_at <= now),
                and_(N.status == Q.SENDING.value, N.lease_until < now),
            )
        )
        .where(~blocked)
        .order_by(N.priority, N.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(notifications)
        .where(N.id.in_(due.scalar_subquery()))
        .values(
            status=Q.SENDING.value,
            lease_until=now + timedelta(seconds=lease_s),
            attempts=N.attempts + 1,
            updated_at=now,
        )
        .returning(
            N.id, N.order_id, N.event_seq, N.channel, N.recipient, N.subject, N.body_text,
            N.body_html, N.locale, N.attempts, N.created_at,
        )
    )
    async with engine.begin() as conn:
        rows = (await conn.execute(stmt)).all()
    claimed = [
        Claimed(
            id=r.id, order_id=r.order_id, event_seq=r.event_seq, channel=r.channel,
            recipient=r.recipient or "", subject=r.subject,
            body_text=r.body_text or "", body_html=r.body_html, locale=r.locale or "en",
            attempts=r.attempts,
            created_at=r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC),
        )
        for r in rows
    ]
    claimed.sort(key=lambda c: (c.order_id, c.event_seq, c.created_at))
    return claimed


async def _finish(engine: AsyncEngine, notification_id: str, **values: object) -> bool:
    stmt = (
        update(notifications)
        .where(N.id == notification_id)
        .where(N.status == Q.SENDING.value)
        .values(updated_at=_now(), lease_until=None, **values)
    )
    async with engine.begin() as conn:
        return (await conn.execute(stmt)).rowcount == 1


async def mark_sent(
    engine: AsyncEngine, notification_id: str, provider: str, provider_message_id: str
) -> bool:
    """The provider accepted it."""
    return await _finish(
        engine, notification_id, status=Q.SENT.value, provider=provider,
        provider_message_id=provider_message_id, sent_at=_now(), last_error=None,
    )


async def mark_retry(
    engine: AsyncEngine, notification_id: str, error: str, delay_s: float
) -> bool:
    """A transient failure: back in the queue after ``delay_s``, unless the customer was
    erased while it was in flight (no recipient left): then it is suppressed."""
    erased = N.recipient.is_(None)
    return await _finish(
        engine, notification_id,
        status=case((erased, Q.SUPPRESSED.value), else_=Q.QUEUED.value),
        last_error=case((erased, ERASED), else_=error[:2000]),
        next_attempt_at=_now() + timedelta(seconds=delay_s),
    )


async def mark_failed(engine: AsyncEngine, notification_id: str, error: str) -> bool:
    """Given up: a permanent error, or the attempt limit was reached."""
    return await _finish(engine, notification_id, status=Q.FAILED.value, last_error=error[:2000])


async def queue_depth(engine: AsyncEngine) -> dict[str, int]:
    """Queued or in-flight notifications per channel."""
    stmt = (
        select(N.channel, func.count())
        .where(N.status.in_([Q.QUEUED.value, Q.SENDING.value]))
        .group_by(N.channel)
    )
    async with engine.connect() as conn:
        return {channel: count for channel, count in (await conn.execute(stmt)).all()}
