"""Ledger queries used by dispatch: claim a notification, record its fate, run fallbacks.

The ledger is the truth about every notification; the dispatch queues only say "look
at this one now". A claim is a conditional update (``queued`` → ``sending`` with a
lease), so a redelivered or duplicated dispatch message for a notification that is
already sent finds nothing to claim and sends nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from notifier.core.model import NotificationStatus
from notifier.store.maintenance import ERASED
from notifier.store.tables import dead_push_tokens, notifications

N = notifications.c
Q = NotificationStatus

#: statuses after which nothing more is sent for a notification
FINISHED = frozenset({
    Q.SENT.value, Q.DELIVERED.value, Q.UNDELIVERED.value, Q.FAILED.value,
    Q.SUPPRESSED.value, Q.STANDBY.value,
})


#: the longest a message waits before looking again at an earlier one it is queued behind
MAX_FIFO_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Claimed:
    """A notification a dispatcher holds a lease on."""

    id: str
    order_id: str
    customer_id: str
    event_seq: int
    channel: str
    template: str
    state: str
    recipient: str
    subject: str | None
    body_text: str
    body_html: str | None
    locale: str
    attempts: int
    created_at: datetime
    fallback_group: str | None
    fallback_rank: int | None


@dataclass(frozen=True, slots=True)
class Held:
    """Why a dispatch message found nothing to claim: ``done`` (ack it), or wait ``delay_s``."""

    done: bool
    delay_s: float = 0.0
    why: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_CLAIMED_COLUMNS = (
    N.id, N.order_id, N.customer_id, N.event_seq, N.channel, N.template, N.state,
    N.recipient, N.subject, N.body_text, N.body_html, N.locale, N.attempts, N.created_at,
    N.fallback_group, N.fallback_rank,
)


async def claim(
    engine: AsyncEngine, ids: Sequence[str], lease_s: float
) -> tuple[list[Claimed], dict[str, Held]]:
    """Lease the given notifications that are due; say why each of the others is not.

    A notification waits while an earlier one (by event) for the same order on the same
    channel is still queued or in flight, so a retried "confirmed" is never overtaken
    by "shipped". An expired lease (a crashed sender) may be claimed again.
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
    stmt = (
        update(notifications)
        .where(N.id.in_(list(ids)))
        .where(
            or_(
                N.status == Q.QUEUED.value,
                and_(N.status == Q.SENDING.value, N.lease_until < now),
            )
        )
        .where(~blocked)
        .values(
            status=Q.SENDING.value,
            lease_until=now + timedelta(seconds=lease_s),
            attempts=N.attempts + 1,
            updated_at=now,
        )
        .returning(*_CLAIMED_COLUMNS)
    )
    async with engine.begin() as conn:
        rows = (await conn.execute(stmt)).all()
        claimed = [
            Claimed(
                id=r.id, order_id=r.order_id, customer_id=r.customer_id, event_seq=r.event_seq,
                channel=r.channel, template=r.template, state=r.state,
                recipient=r.recipient or "", subject=r.subject, body_text=r.body_text or "",
                body_html=r.body_html, locale=r.locale or "en", attempts=r.attempts,
                created_at=_aware(r.created_at), fallback_group=r.fallback_group,
                fallback_rank=r.fallback_rank,
            )
            for r in rows
        ]
        got = {c.id for c in claimed}
        rest = [i for i in ids if i not in got]
        held = await _why_not(conn, rest, now) if rest else {}
    claimed.sort(key=lambda c: (c.order_id, c.event_seq, c.created_at))
    return claimed, held


async def _why_not(conn: AsyncConnection, ids: list[str], now: datetime) -> dict[str, Held]:
    rows = (
        await conn.execute(select(N.id, N.status, N.lease_until).where(N.id.in_(ids)))
    ).all()
    found = {r.id: r for r in rows}
    held: dict[str, Held] = {}
    waiting: list[str] = []
    for nid in ids:
        row = found.get(nid)
        if row is None:
            held[nid] = Held(done=True, why="no such notification (erased or pruned)")
        elif row.status in FINISHED:
            held[nid] = Held(done=True, why=f"already {row.status}")
        elif row.status == Q.SENDING.value and row.lease_until is not None:
            left = (_aware(row.lease_until) - now).total_seconds()
            held[nid] = Held(done=False, delay_s=max(left, 0.0) + 0.5, why="in flight")
        else:
            waiting.append(nid)
    if waiting:
        # behind an earlier message of the same order: look again when that one is due
        # (at least 1 s, at most 30 s), rather than every second through its backoff
        earlier = aliased(notifications)
        E = earlier.c
        due = (
            await conn.execute(
                select(N.id, func.min(E.next_attempt_at))
                .join(earlier, and_(E.order_id == N.order_id, E.channel == N.channel,
                                    E.event_seq < N.event_seq))
                .where(N.id.in_(waiting))
                .where(E.status.in_([Q.QUEUED.value, Q.SENDING.value]))
                .group_by(N.id)
            )
        ).all()
        next_at = {nid: at for nid, at in due}
        for nid in waiting:
            at = next_at.get(nid)
            delay = (_aware(at) - now).total_seconds() if at is not None else 1.0
            held[nid] = Held(done=False, delay_s=min(max(delay, 1.0), MAX_FIFO_WAIT_S),
                             why="an earlier message is not out yet")
    return held


async def _finish(conn: AsyncConnection, notification_id: str, **values: object) -> bool:
    stmt = (
        update(notifications)
        .where(N.id == notification_id)
        .where(N.status == Q.SENDING.value)
        .values(updated_at=_now(), lease_until=None, **values)
    )
    return (await conn.execute(stmt)).rowcount == 1


async def release(engine: AsyncEngine, notification_id: str) -> bool:
    """Hand a claimed notification back untried (its provider's circuit is open, or its
    lease ran short): the attempt is not counted."""
    async with engine.begin() as conn:
        return await _finish(
            conn, notification_id, status=Q.QUEUED.value, attempts=N.attempts - 1
        )


async def mark_sent(
    engine: AsyncEngine, item: Claimed, provider: str, provider_message_id: str, *,
    final: bool,
) -> bool:
    """The provider accepted it. ``final``: no receipt will follow, so a fallback
    rule's standby channels are not needed any more."""
    now = _now()
    async with engine.begin() as conn:
        # A receipt may have overtaken this record (a fast SMS callback): keep its
        # status and what it said went wrong.
        sending = N.status == Q.SENDING.value
        stmt = (
            update(notifications)
            .where(N.id == item.id)
            .where(N.status.in_(
                [Q.SENDING.value, Q.DELIVERED.value, Q.UNDELIVERED.value, Q.FAILED.value]))
            .values(
                status=case((sending, Q.SENT.value), else_=N.status),
                provider=provider, provider_message_id=provider_message_id, sent_at=now,
                last_error=case((sending, None), else_=N.last_error),
                lease_until=None, updated_at=now,
            )
        )
        done = (await conn.execute(stmt)).rowcount == 1
        if done and final and item.fallback_group:
            await _stand_down(conn, item.fallback_group, item.channel, now)
    return done


async def mark_retry(
    engine: AsyncEngine, notification_id: str, error: str, delay_s: float
) -> bool:
    """A transient failure: back in the queue after ``delay_s``, unless the customer was
    erased while it was in flight (no recipient left): then it is suppressed."""
    erased = N.recipient.is_(None)
    async with engine.begin() as conn:
        return await _finish(
            conn, notification_id,
            status=case((erased, Q.SUPPRESSED.value), else_=Q.QUEUED.value),
            last_error=case((erased, ERASED), else_=error[:2000]),
            next_attempt_at=_now() + timedelta(seconds=delay_s),
        )


async def mark_failed(
    engine: AsyncEngine, item: Claimed, error: str, *, status: NotificationStatus = Q.FAILED
) -> bool:
    """Given up (a permanent error, the attempt limit, or a dead address): the next
    channel of a fallback rule takes over."""
    async with engine.begin() as conn:
        done = await _finish(conn, item.id, status=status.value, last_error=error[:2000])
        if done and item.fallback_group:
            await _fall_back(conn, item.fallback_group, item.fallback_rank or 0, _now())
    return done


async def _fall_back(conn: AsyncConnection, group: str, rank: int, now: datetime) -> bool:
    """Queue the next standby channel of the group, if there is one."""
    following = (
        select(N.id)
        .where(N.fallback_group == group)
        .where(N.status == Q.STANDBY.value)
        .where(N.fallback_rank > rank)
        .order_by(N.fallback_rank)
        .limit(1)
        .scalar_subquery()
    )
    result = await conn.execute(
        update(notifications)
        .where(N.id == following)
        .values(
            status=Q.QUEUED.value, dispatch_pending=True, dispatch_gen=N.dispatch_gen + 1,
            next_attempt_at=now, updated_at=now, last_error=None,
        )
    )
    return result.rowcount == 1


async def _stand_down(conn: AsyncConnection, group: str, channel: str, now: datetime) -> None:
    await conn.execute(
        update(notifications)
        .where(N.fallback_group == group)
        .where(N.status == Q.STANDBY.value)
        .values(status=Q.SUPPRESSED.value, last_error=f"delivered on {channel}",
                updated_at=now)
    )


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
            await conn.execute(
                select(N.id).where(N.provider_message_id == provider_message_id).limit(1)
            )
        ).scalar()
    return found


async def record_receipt(
    engine: AsyncEngine, notification_id: str, provider_message_id: str, status: str,
    error_code: str | None,
) -> ReceiptResult:
    """A provider's final word on a sent message: ``delivered``, ``undelivered`` or
    ``failed``. A receipt never moves a notification backwards, and a repeated receipt
    changes nothing; an unsuccessful one hands over to the next fallback channel."""
    now = _now()
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(N.status, N.channel, N.template, N.provider_message_id,
                       N.fallback_group, N.fallback_rank)
                .where(N.id == notification_id)
            )
        ).first()
        if row is None or (
            row.provider_message_id is not None and row.provider_message_id != provider_message_id
        ):
            return ReceiptResult(found=False, changed=False)
        if row.status not in (Q.SENDING.value, Q.SENT.value):
            return ReceiptResult(found=True, changed=False, channel=row.channel,
                                 status=row.status)
        values: dict[str, object] = {
            "status": status, "updated_at": now, "provider_message_id": provider_message_id,
        }
        if status == Q.DELIVERED.value:
            values["delivered_at"] = now
        else:
            values["last_error"] = f"receipt: {status}" + (f" ({error_code})" if error_code else "")
        await conn.execute(update(notifications).where(N.id == notification_id).values(values))
        fell_back = False
        if row.fallback_group:
            if status == Q.DELIVERED.value:
                await _stand_down(conn, row.fallback_group, row.channel, now)
            else:
                fell_back = await _fall_back(conn, row.fallback_group, row.fallback_rank or 0, now)
    return ReceiptResult(found=True, changed=True, channel=row.channel, template=row.template,
                         status=status, fell_back=fell_back)


def token_hash(token: str) -> str:
    """Dead push tokens are remembered by hash, not kept in the clear."""
    return hashlib.sha256(token.encode()).hexdigest()


async def record_dead_token(
    engine: AsyncEngine, token: str, customer_id: str, reason: str
) -> None:
    """Never use this push token again."""
    async with engine.begin() as conn:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(dead_push_tokens).values(
                        token_sha256=token_hash(token), customer_id=customer_id,
                        reason=reason[:200], created_at=_now(),
                    )
                )
        except IntegrityError:
            pass  # already known dead


async def dead_tokens(engine: AsyncEngine, tokens: Sequence[str]) -> set[str]:
    """Which of these push tokens are known dead."""
    by_hash = {token_hash(t): t for t in tokens}
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(dead_push_tokens.c.token_sha256)
                .where(dead_push_tokens.c.token_sha256.in_(list(by_hash)))
            )
        ).scalars().all()
    return {by_hash[h] for h in rows}


async def queue_depth(engine: AsyncEngine) -> dict[str, int]:
    """Queued or in-flight notifications per channel."""
    stmt = (
        select(N.channel, func.count())
        .where(N.status.in_([Q.QUEUED.value, Q.SENDING.value]))
        .group_by(N.channel)
    )
    async with engine.connect() as conn:
        return {channel: count for channel, count in (await conn.execute(stmt)).all()}
