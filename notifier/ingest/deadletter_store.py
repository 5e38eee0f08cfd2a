"""Where refused events go: the DEADLETTER stream (the payload) and the ``dead_letters``
index (who, why, where), both before the event is acked.

A dead letter the stream does not acknowledge is never reported as stored: the
store raises ``DeadLetterError`` naming the events, which stay unacked and are
retried, and says so on every channel an operator watches: an ``ERROR`` log line,
``notifier_deadletter_publish_failures_total``, and ``/readyz`` (``dead_letters``)
until a dead letter is stored again.

A dead letter the stream stored but the database could not index (an outage between
the two) is remembered here by its event's ``ORDERS`` sequence until it is indexed:
the retried batch indexes that copy instead of publishing another, so an outage longer
than the stream's duplicate window does not leave copies that erasure cannot find.
(Were the process to die in that moment and the event come back after the window,
the stream would keep a second copy; it ages out with the stream,
``NOTIFIER_DEADLETTER_MAX_AGE_DAYS``.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.model import DeadLetter
from notifier.errors import DeadLetterError
from notifier.ingest.deadletters import (
    PUBLISH_TIMEOUT_S,
    dead_letter_detail,
    delete_dead_letter,
    publish_dead_letters,
)
from notifier.metrics import Metrics
from notifier.store.deadletter_index import IndexedDeadLetter, record_dead_letters
from notifier.streams import EVENTS_FILTER

log = logging.getLogger(__name__)

_SUBJECT_PREFIX = EVENTS_FILTER.removesuffix(">")


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def index_entry(letter: DeadLetter, seq: int, received_at: datetime) -> IndexedDeadLetter:
    """What the index keeps of one stored dead letter: whatever of the order, customer
    and source the payload still tells (nothing, if it is not JSON)."""
    message = letter.message
    source = message.subject.removeprefix(_SUBJECT_PREFIX)
    order_id = customer_id = None
    try:
        body = json.loads(message.data)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("source"), str) and body["source"]:
            source = body["source"]
        order_id = _id(body.get("order_id"))
        customer = body.get("customer")
        if isinstance(customer, dict):
            customer_id = _id(customer.get("id"))
    return IndexedDeadLetter(
        seq=seq,
        reason=letter.reason.value,
        source=source,
        order_id=order_id,
        customer_id=customer_id,
        original_seq=message.seq,
        detail=dead_letter_detail(letter),
        received_at=received_at,
    )


class DeadLetterStore:
    """Stores event dead letters; the ingest consumer acks an event only after this did."""

    def __init__(
        self, engine: AsyncEngine, metrics: Metrics, *, timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.timeout_s = timeout_s
        self._js: JetStreamContext | None = None
        self._failing: str | None = None
        #: ORDERS sequence → DEADLETTER sequence of dead letters stored but not indexed
        self._unindexed: dict[int, int] = {}

    def start(self, js: JetStreamContext) -> None:
        """Publish on this (long-lived) JetStream context from now on."""
        self._js = js

    def health(self) -> str:
        """``ok``, or why dead letters are not being stored (for ``/readyz``)."""
        return self._failing or "ok"

    async def store(self, letters: Sequence[DeadLetter]) -> int:
        """Store each dead letter in the stream, then index it; how many were stored.

        Raises ``DeadLetterError`` (with the events' stream sequences) for those the
        stream did not acknowledge; the others are stored and indexed all the same.
        A database error while indexing propagates as it is: the batch is held and
        retried like any database outage, and the stream deduplicates the republish.
        """
        if self._js is None:
            raise RuntimeError("start the dead-letter store first (Service.start)")
        if not letters:
            return 0
        known = [
            (m, self._unindexed[m.message.seq]) for m in letters if m.message.seq in self._unindexed
        ]
        fresh = [m for m in letters if m.message.seq not in self._unindexed]
        published = await publish_dead_letters(self._js, fresh, timeout_s=self.timeout_s)
        stored = [*known, *published.stored]
        self._unindexed.update((m.message.seq, seq) for m, seq in published.stored)
        now = datetime.now(UTC)
        await record_dead_letters(self.engine, [index_entry(m, seq, now) for m, seq in stored])
        for m, _ in stored:
            self._unindexed.pop(m.message.seq, None)
        if not published.failed:
            if self._failing is not None:
                log.warning("dead letters are stored again")
            self._failing = None
            return len(stored)
        seqs = tuple(letter.message.seq for letter, _ in published.failed)
        why = published.why()
        self.metrics.deadletter_publish_failures.inc(len(seqs))
        if self._failing is None:
            self._failing = f"error: dead letters not stored since {now.isoformat()}: {why}"
        log.error(
            "%d dead letter(s) not stored (%s): the events at ORDERS seq %s stay unacked "
            "and are retried",
            len(seqs),
            why,
            ", ".join(map(str, seqs)),
        )
        raise DeadLetterError(f"{len(seqs)} dead letter(s) not stored: {why}", seqs=seqs)

    async def delete(self, seq: int) -> None:
        """Remove one dead letter from the stream (erasure); its index row is the caller's."""
        if self._js is None:
            raise RuntimeError("start the dead-letter store first (Service.start)")
        await delete_dead_letter(self._js, seq)
