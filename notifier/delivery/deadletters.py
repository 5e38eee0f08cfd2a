"""Notifications given up on go to ``deadletter.notify.<channel>``; replay re-drives them.

A dead letter names the notification, never its contents or its customer: the
recipient, the rendered text and the customer id stay in the ledger, where retention
and erasure reach them, and the error is kept without anything shaped like a contact. Replaying
puts the ledger row back in the queue (only if it is still ``failed``, so each dead
letter is re-driven exactly once) and removes the dead letter from the stream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ServerError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from notifier.core.notification_status import GOT_THROUGH, IN_FLIGHT, Move, NotificationStatus
from notifier.delivery.ledger import Claimed
from notifier.redaction import redact
from notifier.store.moves import move, status_values
from notifier.store.tables import notifications
from notifier.streams import (
    DEADLETTER_STREAM,
    DETAIL,
    NOTIFY_DEADLETTER_PREFIX,
    ORIGINAL_SUBJECT,
    REASON,
)

N = notifications.c

#: why a notification was given up on
PERMANENT = "permanent"
EXHAUSTED = "attempts_exhausted"
DEAD_RECIPIENT = "dead_recipient"

#: nats-server's answer to deleting a message that is not (or no longer) in the stream
MSG_DELETE_FAILED = 10057


async def publish_failed(
    js: JetStreamContext,
    item: Claimed,
    *,
    provider: str,
    reason: str,
    error: str,
    generation: int,
) -> None:
    """Dead-letter one notification; one ``generation`` (the dispatch message given up on)
    always has the same ``Nats-Msg-Id``."""
    error = redact(error, (item.recipient,))
    body = {
        "notification_id": item.id,
        "channel": item.channel,
        "provider": provider,
        "order_id": item.order_id,
        "template": item.template,
        "state": item.state,
        "attempts": item.attempts,
        "reason": reason,
        "error": error[:1000],
        "failed_at": datetime.now(UTC).isoformat(),
    }
    headers = {
        REASON: reason,
        DETAIL: error.replace("\r", " ").replace("\n", " ")[:1000],
        ORIGINAL_SUBJECT: f"notify.{item.channel}",
        "Notifier-Notification-Id": item.id,
        "Nats-Msg-Id": f"dead.{item.id}.{generation}",
    }
    await js.publish(
        f"{NOTIFY_DEADLETTER_PREFIX}.{item.channel}",
        json.dumps(body).encode(),
        headers=headers,
    )


@dataclass(frozen=True, slots=True)
class NotificationDeadLetter:
    """One dead-lettered notification as stored in the stream."""

    seq: int
    notification_id: str
    channel: str
    reason: str
    error: str


@dataclass(slots=True)
class ReplayReport:
    """What ``replay`` did, per notification id."""

    replayed: list[str] = field(default_factory=list)
    #: already re-driven, sent since, told on a fallback channel, or no longer in the
    #: ledger: the dead letter is removed
    stale: list[str] = field(default_factory=list)


async def notification_dead_letters(
    js: JetStreamContext, *, channel: str | None = None, ids: Sequence[str] = ()
) -> list[NotificationDeadLetter]:
    """The notification dead letters that match, oldest first."""
    try:
        info = await js.stream_info(DEADLETTER_STREAM)
    except NotFoundError:
        return []
    wanted = set(ids)
    found: list[NotificationDeadLetter] = []
    prefix = f"{NOTIFY_DEADLETTER_PREFIX}."
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if not info.state.messages:
            break
        try:
            msg = await js.get_msg(DEADLETTER_STREAM, seq)
        except NotFoundError:
            continue
        subject = msg.subject or ""
        if not subject.startswith(prefix):
            continue
        try:
            body = json.loads(msg.data or b"{}")
            letter = NotificationDeadLetter(
                seq=seq,
                notification_id=str(body["notification_id"]),
                channel=str(body["channel"]),
                reason=str(body.get("reason", "")),
                error=str(body.get("error", "")),
            )
        except (ValueError, KeyError, TypeError):
            continue
        if channel is not None and letter.channel != channel:
            continue
        if wanted and letter.notification_id not in wanted:
            continue
        found.append(letter)
    return found


async def replay(
    js: JetStreamContext, engine: AsyncEngine, letters: Sequence[NotificationDeadLetter]
) -> ReplayReport:
    """Queue each dead-lettered notification again, once, and remove its dead letter.

    The running service's outbox publishes the re-queued rows within a poll interval.
    """
    report = ReplayReport()
    now = datetime.now(UTC)
    sibling = aliased(notifications)
    got_through = (
        select(sibling.c.id)
        .where(sibling.c.fallback_group == N.fallback_group)
        .where(sibling.c.id != N.id)
        .where(sibling.c.status.in_(status_values(GOT_THROUGH | IN_FLIGHT)))
        .exists()
    )
    for letter in letters:
        async with engine.begin() as conn:
            result = await conn.execute(
                move(Move.REPLAY, NotificationStatus.QUEUED)
                .where(N.id == letter.notification_id)
                .where(N.recipient.is_not(None))
                # a fallback rule whose next channel got through has told the customer
                .where(~got_through)
                .values(
                    attempts=0,
                    next_attempt_at=now,
                    last_error=f"replayed from dead letter {letter.seq}",
                    dispatch_pending=True,
                    dispatch_gen=N.dispatch_gen + 1,
                    updated_at=now,
                )
            )
        (report.replayed if result.rowcount == 1 else report.stale).append(letter.notification_id)
        await _delete(js, letter.seq)
    return report


async def _delete(js: JetStreamContext, seq: int) -> None:
    """Remove one dead letter; one a concurrent replay removed first is no error."""
    try:
        await js.delete_msg(DEADLETTER_STREAM, seq)
    except NotFoundError:
        pass
    except ServerError as exc:
        if exc.err_code != MSG_DELETE_FAILED:
            raise
