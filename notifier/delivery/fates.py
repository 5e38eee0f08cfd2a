"""What became of claimed notifications, written to the ledger many at a time.

A sender learns one notification's fate at a time (the provider accepted it, a
transient error, given up, handed back untried); writing each in its own
transaction queued every send behind the database, and on SQLite behind ingest on
the one pooled connection. :class:`~notifier.delivery.recorder.Recorder` gathers the
fates that arrive while a write is under way and :func:`record` writes them in one
transaction: one ``executemany`` per kind, row by row only where a fallback rule
needs to know whether its row changed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.notification_status import (
    RECEIPTED,
    Move,
    NotificationStatus,
    sources,
    targets,
)
from notifier.delivery.fallback import fall_back, stand_down
from notifier.delivery.ledger import Claimed
from notifier.store.maintenance import ERASED
from notifier.store.moves import any_of, leaving
from notifier.store.tables import notifications

N = notifications.c
Q = NotificationStatus


class Fate(enum.Enum):
    """What a send attempt came to."""

    #: the provider accepted it
    SENT = enum.auto()
    #: a transient failure: queued again after ``delay_s``
    RETRY = enum.auto()
    #: given up (``status`` says failed or suppressed); a fallback channel takes over
    GIVEN_UP = enum.auto()
    #: handed back untried (open circuit, lease running short): the attempt is not counted
    RELEASED = enum.auto()


@dataclass(frozen=True, slots=True)
class Outcome:
    """One claimed notification's fate, and what to tell JetStream once it is recorded."""

    item: Claimed
    fate: Fate
    #: redeliver the dispatch message after this many seconds; None: ack it
    delay_s: float | None = None
    error: str = ""
    status: NotificationStatus = Q.FAILED
    provider: str = ""
    provider_message_id: str = ""
    #: sent and no receipt will follow: a fallback rule's standby channels stand down
    final: bool = True


#: every statement is built once, with the time as a parameter: building and keying a
#: new statement for each turn of the recorder was ten percent of a service's CPU with
#: null channels (the expression, then SQLAlchemy's cache key of it)
_NOW = bindparam("b_now", type_=N.updated_at.type)


def _sent_stmt() -> Any:
    # A receipt may have overtaken this record (a fast SMS callback): keep its status
    # and what it said went wrong.
    sending = any_of(N.status, sources(Move.SEND, Q.SENT))
    return (
        update(notifications)
        .where(N.id == bindparam("b_id"))
        .where(any_of(N.status, sources(Move.SEND, Q.SENT) | RECEIPTED))
        .values(
            status=case((sending, Q.SENT.value), else_=N.status),
            provider=bindparam("b_provider"),
            provider_message_id=bindparam("b_pmid"),
            sent_at=_NOW,
            last_error=case((sending, None), else_=N.last_error),
            lease_until=None,
            updated_at=_NOW,
        )
    )


def _finish_stmt(*moves: tuple[Move, NotificationStatus], **values: Any) -> Any:
    """The sender's own record of a claimed row: only while the row is where ``moves``
    (what the statement may do to it) start, i.e. still held by that sender."""
    return (
        update(notifications)
        .where(N.id == bindparam("b_id"))
        .where(leaving(*moves))
        .values(updated_at=_NOW, lease_until=None, **values)
    )


_SENT = _sent_stmt()
_RELEASED = _finish_stmt((Move.RELEASE, Q.QUEUED), status=Q.QUEUED.value, attempts=N.attempts - 1)
#: the customer was erased while it was in flight (no recipient left): suppressed
_ERASED = N.recipient.is_(None)
_RETRY = _finish_stmt(
    (Move.RETRY, Q.QUEUED),
    (Move.GIVE_UP, Q.SUPPRESSED),
    status=case((_ERASED, Q.SUPPRESSED.value), else_=Q.QUEUED.value),
    last_error=case((_ERASED, ERASED), else_=bindparam("b_error")),
    next_attempt_at=bindparam("b_next"),
)
#: by the status given up to (failed, or suppressed)
_GIVEN_UP = {
    to: _finish_stmt((Move.GIVE_UP, to), status=to.value, last_error=bindparam("b_error"))
    for to in targets(Move.GIVE_UP)
}


async def record(conn: AsyncConnection, outcomes: Sequence[Outcome]) -> None:
    """Write every outcome in the caller's transaction.

    Each write is conditional on the row still being where the sender left it
    (``sending``, or for a send, overtaken by its receipt), exactly as one at a time.
    """
    now = datetime.now(UTC)
    sent = [o for o in outcomes if o.fate is Fate.SENT]
    plain_sent = [o for o in sent if not (o.final and o.item.fallback_group)]
    if plain_sent:
        await conn.execute(_SENT, [_sent_params(o, now) for o in plain_sent])
    for o in sent:
        # row by row: only a row this record moved stands its group down
        group = o.item.fallback_group
        if o.final and group and (await conn.execute(_SENT, _sent_params(o, now))).rowcount == 1:
            await stand_down(conn, group, o.item.channel, now)
    released = [{"b_id": o.item.id, "b_now": now} for o in outcomes if o.fate is Fate.RELEASED]
    if released:
        await conn.execute(_RELEASED, released)
    retries = [
        {
            "b_id": o.item.id,
            "b_now": now,
            "b_error": o.error[:2000],
            "b_next": now + timedelta(seconds=o.delay_s or 0.0),
        }
        for o in outcomes
        if o.fate is Fate.RETRY
    ]
    if retries:
        await conn.execute(_RETRY, retries)
    for o in outcomes:
        if o.fate is Fate.GIVEN_UP:
            params = {"b_id": o.item.id, "b_now": now, "b_error": o.error[:2000]}
            stmt = _GIVEN_UP.get(o.status)
            if stmt is None:  # not a status a give-up may end in: IllegalMove
                stmt = _finish_stmt((Move.GIVE_UP, o.status), status=o.status.value)
            done = (await conn.execute(stmt, params)).rowcount == 1
            if done and o.item.fallback_group:
                await fall_back(conn, o.item.fallback_group, o.item.fallback_rank or 0, now)


def _sent_params(o: Outcome, now: datetime) -> dict[str, Any]:
    return {
        "b_id": o.item.id,
        "b_now": now,
        "b_provider": o.provider,
        "b_pmid": o.provider_message_id,
    }
