"""The outbox relay: ledger rows marked ``dispatch_pending`` become dispatch messages.

A batch commits its notifications with ``dispatch_pending`` set, in the same
transaction as everything else; this relay then publishes one message per row to
``notify.<channel>`` and clears the mark. A crash between the two only means the row
is published again on the next pass, with the same ``Nats-Msg-Id`` (deduplicated by
JetStream), and a dispatch message for a row that is no longer queued sends nothing.

A row held by the customer's quiet hours keeps its mark until ``not_before`` passes:
the relay publishes it only then (within a poll), so a night's held messages wait in
the ledger, not as delayed messages holding the queue's acknowledgement slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

from nats.js import JetStreamContext
from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.store.tables import notifications
from notifier.streams import NOTIFY_PREFIX

log = logging.getLogger(__name__)
N = notifications.c
#: a row's dispatch message is on its queue (unless the row was marked again meanwhile)
_PUBLISHED = (
    update(notifications)
    .where(and_(N.id == bindparam("b_id"), N.dispatch_gen == bindparam("b_gen")))
    .values(dispatch_pending=False)
)


def _stamp(created_at: datetime) -> int:
    return int(created_at.replace(tzinfo=created_at.tzinfo or UTC).timestamp() * 1_000_000)


def dispatch_subject(channel: str) -> str:
    """The work queue of one channel."""
    return f"{NOTIFY_PREFIX}.{channel}"


def notification_id(data: bytes) -> str | None:
    """The notification a dispatch message names, or None if it is unreadable."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    nid = body.get("id") if isinstance(body, dict) else None
    return nid if isinstance(nid, str) and nid else None


class Outbox:
    """Publishes pending dispatch messages, when woken and every ``poll_s`` regardless."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_size: int = 1000,
        poll_s: float = 0.5,
        ack_timeout_s: float = 5.0,
    ):
        self.engine = engine
        self.batch_size = batch_size
        self.poll_s = poll_s
        #: how long to wait for JetStream's acks: a publish lost with a crashed server is
        #: never acked, and the pass is tried again (the same ``Nats-Msg-Id``s) after it
        self.ack_timeout_s = ack_timeout_s
        #: built once (per relay): a statement built and keyed for every pass costs more
        #: CPU than a small pass itself
        self._pending = (
            select(N.id, N.channel, N.dispatch_gen, N.created_at)
            .where(N.dispatch_pending.is_(True))
            .where(
                or_(
                    N.not_before.is_(None),
                    N.not_before <= bindparam("b_now", type_=N.not_before.type),
                )
            )
            .order_by(N.priority, N.created_at)
            .limit(batch_size)
        )
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Rows were marked pending: publish now rather than at the next poll."""
        self._wake.set()

    def start(self, js: JetStreamContext) -> None:
        """Start relaying on this JetStream context."""
        self._task = asyncio.create_task(self._run(js), name="outbox")

    async def stop(self) -> None:
        """Relay what is pending one last time, then stop."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self, js: JetStreamContext) -> None:
        while True:
            self._wake.clear()
            try:
                full = await self.relay_once(js)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("outbox cannot relay (%s); retrying", type(exc).__name__)
                full = False
            except Exception:
                log.exception("outbox pass failed; retrying")
                full = False
            if self._stopping.is_set():
                return
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def relay_once(self, js: JetStreamContext) -> bool:
        """Publish one batch of pending rows; whether there may be more."""
        async with self.engine.connect() as conn:
            now = datetime.now(UTC)
            rows = (await conn.execute(self._pending, {"b_now": now})).all()
        if not rows:
            return False
        futures = [
            await js.publish_async(
                dispatch_subject(r.channel),
                json.dumps({"id": r.id}).encode(),
                # the row's creation time tells a row re-created after retention from
                # the one before it (same deterministic id)
                headers={"Nats-Msg-Id": f"{r.id}.{r.dispatch_gen}.{_stamp(r.created_at)}"},
            )
            for r in rows
        ]
        # TimeoutError (an OSError) ends the pass; cancelling the futures frees their slots
        await asyncio.wait_for(asyncio.gather(*futures), self.ack_timeout_s)
        async with self.engine.begin() as conn:
            await conn.execute(_PUBLISHED, [{"b_id": r.id, "b_gen": r.dispatch_gen} for r in rows])
        return len(rows) == self.batch_size
