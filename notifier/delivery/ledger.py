"""Ledger queries of the claim path: lease a notification to send, or say why not.

The ledger is the truth about every notification; the dispatch queues only say "look
at this one now". A claim is a conditional update (``queued`` → ``sending`` with a
lease), so a redelivered or duplicated dispatch message for a notification that is
already sent finds nothing to claim and sends nothing. An expired lease (a crashed
sender) is claimed again; a message behind an earlier one of its order is held with
the time to look again. A row whose order has moved on is suppressed as stale instead
(``superseded.py``); one held by quiet hours (``not_before`` still ahead) is handed back
to the outbox, which publishes it again when it is due. The dead push tokens a claim
skips are remembered here too.

What happens after a send lives elsewhere: its fate is written by ``fates.py``, a
provider's delivery receipt by ``receipts.py``, and both settle fallback groups
through ``fallback.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from notifier.core.notification_status import (
    IN_FLIGHT,
    PENDING,
    SETTLED,
    Move,
    NotificationStatus,
    sources,
)
from notifier.delivery import optouts
from notifier.delivery.receipts import find_by_provider_id, record_receipt
from notifier.delivery.superseded import suppress_stale
from notifier.store.moves import any_of, status_values
from notifier.store.tables import dead_push_tokens, notifications

#: the receipt queries live in receipts.py; the receipts route still takes them from here
__all__ = [
    "MAX_FIFO_WAIT_S",
    "Claim",
    "Claimed",
    "Held",
    "claim",
    "find_by_provider_id",
    "queue_depth",
    "record_dead_token",
    "record_receipt",
    "token_hash",
]

N = notifications.c
Q = NotificationStatus


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
    #: who it comes from and where replies go, as rendered; None: the channel's own
    sender: str | None = None
    reply_to: str | None = None
    #: why its customer no longer wants it (``delivery.optouts``): suppressed, not sent
    opted_out: str | None = None
    #: an alert's one-click unsubscribe link (an email's ``List-Unsubscribe``)
    unsubscribe_url: str | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """Why a dispatch message found nothing to claim: ``done`` (ack it), or wait ``delay_s``."""

    done: bool
    delay_s: float = 0.0
    why: str = ""
    #: the order whose earlier message it waits for, if that is why
    behind: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_CLAIMED_COLUMNS = (
    N.id,
    N.order_id,
    N.customer_id,
    N.event_seq,
    N.channel,
    N.template,
    N.state,
    N.recipient,
    N.subject,
    N.body_text,
    N.body_html,
    N.locale,
    N.attempts,
    N.created_at,
    N.fallback_group,
    N.fallback_rank,
    N.sender,
    N.reply_to,
    N.unsubscribe_url,
)


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim found: the notifications now leased (in send order), why each
    of the others is not, and which of the claimed recipients are dead push tokens."""

    claimed: list[Claimed]
    held: dict[str, Held]
    dead_tokens: set[str]


def _due(column: Any, now: Any) -> Any:
    """Not held by quiet hours (any more)."""
    return or_(column.is_(None), column <= now)


def _claim_statement() -> Any:
    earlier = aliased(notifications, name="earlier")
    E = earlier.c
    now = bindparam("b_now", type_=N.updated_at.type)
    # a message held by quiet hours holds back no later one: an urgent message goes now
    blocked = (
        select(E.id)
        .where(E.order_id == N.order_id)
        .where(E.channel == N.channel)
        .where(E.status.in_(status_values(PENDING)))
        .where(E.event_seq < N.event_seq)
        .where(_due(E.not_before, now))
        .exists()
    )
    # ``status || ''``: the same value, but no index can serve it, so the rows are found by
    # id. Given a plain ``status = 'queued'``, SQLite (without statistics) judged a few dozen
    # ids dearer than the status index and scanned every queued row of the ledger for each
    # claim: 16 ms per claim of 50 with a backlog of 30,000, growing with the backlog.
    status = N.status.concat("")
    return (
        update(notifications)
        .where(N.id.in_(bindparam("b_ids", expanding=True)))
        .where(
            or_(
                any_of(status, sources(Move.CLAIM, Q.SENDING)),
                and_(any_of(status, sources(Move.RECLAIM, Q.SENDING)), N.lease_until < now),
            )
        )
        .where(_due(N.not_before, now))
        .where(~blocked)
        .values(
            status=Q.SENDING.value,
            lease_until=bindparam("b_until", type_=N.lease_until.type),
            attempts=N.attempts + 1,
            updated_at=now,
        )
        .returning(*_CLAIMED_COLUMNS)
    )


def _next_due_statement() -> Any:
    """When the earliest message each of ``b_ids`` waits for is next due."""
    earlier = aliased(notifications, name="earlier")
    E = earlier.c
    return (
        select(N.id, func.min(E.next_attempt_at))
        .join(
            earlier,
            and_(E.order_id == N.order_id, E.channel == N.channel, E.event_seq < N.event_seq),
        )
        .where(N.id.in_(bindparam("b_ids", expanding=True)))
        .where(E.status.in_(status_values(PENDING)))
        .group_by(N.id)
    )


#: built once: aliasing the table for every claim was a sixth of the service's time
#: with null channels
_CLAIM = _claim_statement()
_NEXT_DUE = _next_due_statement()
_STATES = select(N.id, N.status, N.lease_until, N.order_id, N.not_before).where(
    N.id.in_(bindparam("b_ids", expanding=True))
)
#: a dispatch message came before its row's quiet hours ended (a revision held a row
#: already published): the outbox publishes it again once it is due
_HAND_BACK = (
    update(notifications)
    .where(N.id == bindparam("b_id"))
    .where(any_of(N.status, sources(Move.CLAIM, Q.SENDING)))
    .values(dispatch_pending=True, dispatch_gen=N.dispatch_gen + 1)
)
_DEAD = select(dead_push_tokens.c.token_sha256).where(
    dead_push_tokens.c.token_sha256.in_(bindparam("b_hashes", expanding=True))
)


async def claim(
    conn: AsyncConnection, ids: Sequence[str], lease_s: float, *, check_tokens: bool = False
) -> Claim:
    """Lease the given notifications that are due; say why each of the others is not.
    Runs in the caller's transaction, which must commit before anything is sent.

    A notification waits while an earlier one (by event) for the same order on the same
    channel is still queued or in flight, so a retried "confirmed" is never overtaken
    by "shipped". An expired lease (a crashed sender) may be claimed again. A row the
    order has moved past is suppressed as stale rather than claimed.
    """
    now = _now()
    await suppress_stale(conn, ids, now)
    params = {"b_ids": list(ids), "b_now": now, "b_until": now + timedelta(seconds=lease_s)}
    rows = (await conn.execute(_CLAIM, params)).all()
    refused = await optouts.refusals(conn, [r.id for r in rows])
    claimed = [
        Claimed(
            id=r.id,
            order_id=r.order_id,
            customer_id=r.customer_id,
            event_seq=r.event_seq,
            channel=r.channel,
            template=r.template,
            state=r.state,
            recipient=r.recipient or "",
            subject=r.subject,
            body_text=r.body_text or "",
            body_html=r.body_html,
            locale=r.locale or "en",
            attempts=r.attempts,
            created_at=_aware(r.created_at),
            fallback_group=r.fallback_group,
            fallback_rank=r.fallback_rank,
            sender=r.sender,
            reply_to=r.reply_to,
            opted_out=refused.get(r.id),
            unsubscribe_url=r.unsubscribe_url,
        )
        for r in rows
    ]
    got = {c.id for c in claimed}
    rest = [i for i in ids if i not in got]
    held = await _why_not(conn, rest, now) if rest else {}
    dead = (
        await _dead_tokens(conn, [c.recipient for c in claimed])
        if check_tokens and claimed
        else set()
    )
    claimed.sort(key=lambda c: (c.order_id, c.event_seq, c.created_at))
    return Claim(claimed, held, dead)


async def _why_not(conn: AsyncConnection, ids: list[str], now: datetime) -> dict[str, Held]:
    rows = (await conn.execute(_STATES, {"b_ids": ids})).all()
    found = {r.id: r for r in rows}
    held: dict[str, Held] = {}
    waiting: dict[str, str] = {}  # notification id → its order
    for nid in ids:
        row = found.get(nid)
        if row is None:
            held[nid] = Held(done=True, why="no such notification (erased or pruned)")
        elif row.status in SETTLED:
            held[nid] = Held(done=True, why=f"already {row.status}")
        elif row.status in IN_FLIGHT and row.lease_until is not None:
            left = (_aware(row.lease_until) - now).total_seconds()
            held[nid] = Held(done=False, delay_s=max(left, 0.0) + 0.5, why="in flight")
        elif row.not_before is not None and _aware(row.not_before) > now:
            await conn.execute(_HAND_BACK, {"b_id": nid})
            until = _aware(row.not_before).isoformat()
            held[nid] = Held(done=True, why=f"held by quiet hours until {until}")
        else:
            waiting[nid] = row.order_id
    if waiting:
        # behind an earlier message of the same order: look again when that one is due
        # (at least 1 s, at most 30 s), rather than every second through its backoff
        due = (await conn.execute(_NEXT_DUE, {"b_ids": list(waiting)})).all()
        next_at = {nid: at for nid, at in due}
        for nid, order_id in waiting.items():
            at = next_at.get(nid)
            delay = (_aware(at) - now).total_seconds() if at is not None else 1.0
            held[nid] = Held(
                done=False,
                delay_s=min(max(delay, 1.0), MAX_FIFO_WAIT_S),
                why="an earlier message is not out yet",
                behind=order_id,
            )
    return held


def token_hash(token: str) -> str:
    """Dead push tokens are remembered by hash, not kept in the clear."""
    return hashlib.sha256(token.encode()).hexdigest()


async def record_dead_token(engine: AsyncEngine, token: str, customer_id: str, reason: str) -> None:
    """Never use this push token again."""
    async with engine.begin() as conn:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(dead_push_tokens).values(
                        token_sha256=token_hash(token),
                        customer_id=customer_id,
                        reason=reason[:200],
                        created_at=_now(),
                    )
                )
        except IntegrityError:
            pass  # already known dead


async def _dead_tokens(conn: AsyncConnection, tokens: Sequence[str]) -> set[str]:
    """Which of these push tokens are known dead."""
    by_hash = {token_hash(t): t for t in tokens if t}
    if not by_hash:
        return set()
    rows = (await conn.execute(_DEAD, {"b_hashes": list(by_hash)})).scalars().all()
    return {by_hash[h] for h in rows}


async def queue_depth(engine: AsyncEngine) -> dict[str, int]:
    """Queued or in-flight notifications per channel."""
    stmt = (
        select(N.channel, func.count())
        .where(N.status.in_(status_values(PENDING)))
        .group_by(N.channel)
    )
    async with engine.connect() as conn:
        return {channel: count for channel, count in (await conn.execute(stmt)).all()}
