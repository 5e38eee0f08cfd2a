"""Apply one batch of stream messages: decode, plan, commit, dead-letter.

The batch is one database transaction; the caller acks the messages only after this
returns, so a crash at any point means the whole batch is redelivered and replanned,
and the plan of a redelivered batch recognises every event as a duplicate.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.contracts.limits import EventLimits
from notifier.core.model import (
    DeadLetter,
    DeadLetterReason,
    IncomingEvent,
    NotificationStatus,
    OrderAggregate,
    RawMessage,
)
from notifier.core.pipeline import Pipeline
from notifier.core.plan import BatchPlan, NewNotification
from notifier.core.rules import RuleSet
from notifier.errors import StoreError
from notifier.ingest.decode import DEFAULT_LIMITS, decode
from notifier.metrics import Metrics
from notifier.store.batches import load_orders, lock_orders, write_plan
from notifier.store.preferences import load_preferences

log = logging.getLogger(__name__)

#: errors that mean "the database is unavailable": the batch is retried, never dead-lettered
TRANSIENT = (OperationalError, InterfaceError, StoreError, OSError)

DeadLetterSink = Callable[[Sequence[DeadLetter]], Awaitable[int]]


@dataclass
class BatchProcessor:
    """Turns a batch of raw messages into committed state, ledger rows and dead letters."""

    engine: AsyncEngine
    pipeline: Pipeline
    dead_letter_sink: DeadLetterSink
    metrics: Metrics
    on_committed: Callable[[], None] = lambda: None
    #: what one event may weigh; from the settings
    limits: EventLimits = DEFAULT_LIMITS

    async def process(self, messages: Sequence[RawMessage]) -> BatchPlan:
        """Apply the batch; raises a ``TRANSIENT`` error when it should be redelivered."""
        started = time.perf_counter()
        incoming: list[IncomingEvent] = []
        dead: list[DeadLetter] = []
        # an exact repeat in the batch (a publisher's retry) decodes to the same event:
        # validate and hash it once
        seen: dict[tuple[str, bytes], IncomingEvent] = {}
        now = datetime.now(UTC)
        for message in messages:
            first = seen.get((message.subject, message.data))
            if first is not None:
                incoming.append(
                    IncomingEvent(first.event, message, first.payload, first.content_hash)
                )
                continue
            decoded = self._decode(message, now)
            if isinstance(decoded, DeadLetter):
                dead.append(decoded)
            else:
                seen[message.subject, message.data] = decoded
                incoming.append(decoded)
        # the rules the whole batch is planned with, even if they change meanwhile
        pipeline = self.pipeline
        try:
            plan = await self._commit(pipeline, incoming)
        except TRANSIENT:
            raise
        except Exception as exc:
            await self._unless_database_down(exc)
            # A bug or an input we did not foresee: isolate the message that causes it
            # so the rest of the batch still goes through and the consumer never stalls.
            log.exception("batch of %d failed; retrying one message at a time", len(incoming))
            plan = await self._one_by_one(pipeline, incoming)
        dead.extend(plan.dead_letters)
        plan.dead_letters = dead
        if dead:
            await self.dead_letter_sink(dead)
        self._observe(plan, len(messages), time.perf_counter() - started)
        self.on_committed()
        return plan

    def _decode(self, message: RawMessage, now: datetime) -> IncomingEvent | DeadLetter:
        """Decode one message; whatever it raises dead-letters that message alone, so no
        input can hold up the batch (before the limits, a deeply nested body raised
        ``RecursionError`` here and its batch was retried for ever)."""
        try:
            return decode(message, self.limits, now)
        except Exception as exc:
            # the type only: an exception's message may quote the event (personal data);
            # the dead letter keeps the body to reproduce it
            log.error(
                "event at stream seq %d cannot be decoded: %s", message.seq, type(exc).__name__
            )
            return DeadLetter(
                message, DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__} while decoding"
            )

    async def _unless_database_down(self, exc: Exception) -> None:
        """Before blaming an event, make sure the database itself is fine: drivers report
        an outage in many shapes (a refused login, a database that takes no connections),
        and an outage must never dead-letter good events."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as down:
            raise StoreError(f"database unavailable: {type(down).__name__}") from exc

    def use_rules(self, rules: RuleSet) -> None:
        """Plan the next batches with these rules; a batch in hand keeps its own."""
        self.pipeline = dataclasses.replace(self.pipeline, rules=rules)

    async def _commit(self, pipeline: Pipeline, incoming: Sequence[IncomingEvent]) -> BatchPlan:
        if not incoming:
            return BatchPlan()
        order_ids = [i.event.order_id for i in incoming]
        event_ids = [i.event.event_id for i in incoming]
        async with self.engine.begin() as conn:
            await lock_orders(conn, order_ids)
            orders, owners = await load_orders(
                conn, order_ids, event_ids, with_timers=bool(pipeline.rules.timed)
            )
            preferences = await load_preferences(conn, _customers(orders, incoming))
            plan = pipeline.plan_batch(orders, incoming, owners, preferences)
            await write_plan(conn, plan)
        return plan

    async def _one_by_one(self, pipeline: Pipeline, incoming: Sequence[IncomingEvent]) -> BatchPlan:
        total = BatchPlan()
        for item in incoming:
            try:
                plan = await self._commit(pipeline, [item])
            except TRANSIENT:
                raise
            except Exception as exc:
                await self._unless_database_down(exc)
                log.exception("event %s cannot be processed", item.event.event_id)
                total.dead_letters.append(
                    DeadLetter(
                        item.message,
                        DeadLetterReason.PROCESSING_ERROR,
                        f"{type(exc).__name__}: {exc}",
                    )
                )
                continue
            total.dead_letters.extend(plan.dead_letters)
            total.notifications.extend(plan.notifications)
            for key, value in plan.counts.items():
                total.counts[key] = total.counts.get(key, 0) + value
        return total

    def _observe(self, plan: BatchPlan, size: int, seconds: float) -> None:
        m = self.metrics
        m.batch_seconds.observe(seconds)
        m.batch_size.observe(size)
        for outcome, n in plan.counts.items():
            m.events.labels(outcome).inc(n)
        for letter in plan.dead_letters:
            m.dead_letters.labels(letter.reason.value).inc()
        for note in plan.notifications:
            m.count(note.channel, note.template, note.status.value)
        for note in _unrendered(plan):
            m.render_failures.labels(note.channel, note.template).inc()
            # by id, never by recipient; the error names the template file and line
            log.warning(
                "notification %s (%s, %s) cannot be sent: %s",
                note.id,
                note.channel,
                note.template,
                note.last_error,
            )
        if plan.dead_letters:
            log.info(
                "dead-lettered %d event(s): %s",
                len(plan.dead_letters),
                ", ".join(f"seq {d.message.seq} {d.reason.value}" for d in plan.dead_letters),
            )


def _customers(orders: dict[str, OrderAggregate], incoming: Sequence[IncomingEvent]) -> set[str]:
    """Every customer the batch may write a message to: of its events, and of the
    touched orders' earlier events (a correction goes to whom the message went)."""
    found = {i.event.customer.id for i in incoming}
    for order in orders.values():
        found.update(e.customer_id for e in order.events.values())
    return found


def _unrendered(plan: BatchPlan) -> Iterator[NewNotification]:
    """The notifications of the plan that failed as they were rendered (a template error,
    or output the channel cannot carry): at planning time, nothing else fails."""
    for note in plan.notifications:
        if note.status is NotificationStatus.FAILED:
            yield note
    for update in plan.updates:
        if update.replacement is not None and (
            update.replacement.status is NotificationStatus.FAILED
        ):
            yield update.replacement
