"""The durable JetStream pull consumer on ``orders.state.>``.

One durable consumer shared by every replica (JetStream hands each batch to one of
them); explicit acks, sent only after the batch's transaction committed; redelivery
bounded by ``max_deliver``.

The fetch loop is ours rather than FastStream's ``PullSub(batch=True)``: FastStream
0.7.8's loop catches ``nats.errors.TimeoutError`` but nats-py raises the builtin
``TimeoutError`` when a fetch deadline runs out between its two requests, so the
loop task dies and the messages it had already collected wait out ``ack_wait``
(30 s by default) before anyone sees them again. The connection is still the
broker's; the loop is a plain ``fetch``/``ack`` on it, as fast as FastStream's batch
mode measured here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError

from notifier.core.model import DeadLetter, DeadLetterReason, RawMessage
from notifier.errors import DeadLetterError
from notifier.ingest.processor import TRANSIENT, BatchProcessor
from notifier.redaction import redact
from notifier.streams import EVENTS_FILTER, ORDERS_STREAM

log = logging.getLogger(__name__)

#: longest pause between two attempts at a batch the database keeps refusing
MAX_RETRY_DELAY_S = 30.0
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How the ingest consumer pulls."""

    durable: str = "notifier-ingest"
    batch_size: int = 500
    batch_wait_s: float = 0.02
    ack_wait_s: float = 30.0
    max_deliver: int = 20
    retry_delay_s: float = 2.0
    #: attempts at a batch that fails for a reason other than a database outage
    batch_attempts: int = 5
    #: when JetStream redelivers what such a batch left unfinished
    give_back_delay_s: float = MAX_RETRY_DELAY_S


def consumer_config(s: ConsumerSettings) -> ConsumerConfig:
    """Durable, explicit ack, bounded redelivery, only order-state subjects."""
    return ConsumerConfig(
        durable_name=s.durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=s.ack_wait_s,
        max_deliver=s.max_deliver,
        max_ack_pending=max(s.batch_size * 4, 1000),
        max_waiting=512,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=EVENTS_FILTER,
    )


def raw_message(msg: Msg) -> RawMessage:
    """What the pipeline needs of a NATS message."""
    return RawMessage(
        data=msg.data,
        headers=dict(msg.headers or {}),
        subject=msg.subject,
        seq=msg.metadata.sequence.stream,
    )


class IngestConsumer:
    """Pulls batches, hands them to the processor, acks after commit."""

    def __init__(self, processor: BatchProcessor, settings: ConsumerSettings) -> None:
        self.processor = processor
        self.settings = settings
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._advisories: Subscription | None = None
        self._js: JetStreamContext | None = None

    async def start(self, nc: NatsClient) -> None:
        """Create or update the durable consumer, then start pulling."""
        js = nc.jetstream()
        # Creating a durable that exists with another config updates it in place.
        await js.add_consumer(ORDERS_STREAM, consumer_config(self.settings))
        sub = await js.pull_subscribe_bind(durable=self.settings.durable, stream=ORDERS_STREAM)
        self._advisories = await nc.subscribe(
            f"{MAX_DELIVERIES_ADVISORY}.{ORDERS_STREAM}.{self.settings.durable}",
            queue=f"{self.settings.durable}-advisories",
            cb=self._on_max_deliveries,
        )
        self._js = js
        self._task = asyncio.create_task(self._run(sub), name="ingest")

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        """JetStream gave up on a message (the process died on it ``max_deliver`` times):
        copy it to the dead letters rather than lose it."""
        if self._js is None:
            raise RuntimeError("start the consumer first")
        try:
            body = json.loads(advisory.data)
            seq = int(body["stream_seq"])
            stored = await self._js.get_msg(ORDERS_STREAM, seq)
        except (ValueError, KeyError, TypeError, NotFoundError) as exc:
            log.error("max-deliveries advisory not usable: %s", exc)
            return
        message = RawMessage(
            data=stored.data or b"",
            headers=dict(stored.headers or {}),
            subject=stored.subject or "",
            seq=seq,
        )
        detail = (
            f"given up after {body.get('deliveries')} deliveries; it may have been "
            "applied, and replaying it is harmless (duplicates are recognised)"
        )
        try:
            await self.processor.dead_letter_sink(
                [DeadLetter(message, DeadLetterReason.MAX_DELIVERIES, detail)]
            )
        except DeadLetterError as exc:
            # JetStream will not deliver it again, and this advisory is not redelivered
            log.error(
                "event at ORDERS seq %d was given up after max deliveries and could NOT be "
                "dead-lettered (%s); it stays in the ORDERS stream until its max age: "
                "republish it from there once dead letters are stored again",
                seq,
                exc,
            )
            return
        log.error("event at stream seq %d dead-lettered after max deliveries", seq)

    async def stop(self) -> None:
        """Stop pulling; the batch in hand is finished and acked (or left for redelivery)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        if self._advisories is not None:
            with contextlib.suppress(ConnectionClosedError):
                await self._advisories.unsubscribe()

    async def _run(self, sub: JetStreamContext.PullSubscription) -> None:
        s = self.settings
        while not self._stopping.is_set():
            try:
                messages = await sub.fetch(s.batch_size, timeout=s.batch_wait_s)
            except TimeoutError:
                continue
            except (ConnectionClosedError, ServiceUnavailableError) as exc:
                log.warning("ingest cannot fetch (%s); retrying", type(exc).__name__)
                await asyncio.sleep(s.retry_delay_s)
                continue
            except Exception:
                # whatever a fetch can raise, the loop must not die with it
                log.exception("ingest fetch failed; retrying")
                await asyncio.sleep(s.retry_delay_s)
                continue
            if not messages:
                continue
            try:
                await self._handle(messages)
            except Exception:
                # The loop must outlive anything one batch can do (an ack on a dropped
                # connection, say); unacked messages come back after ack_wait.
                log.exception("ingest batch of %d failed; continuing", len(messages))
                await asyncio.sleep(s.retry_delay_s)
        with contextlib.suppress(ConnectionClosedError):
            await sub.unsubscribe()

    async def _handle(self, messages: list[Msg]) -> None:
        """Apply the batch, retrying while the database or NATS is unavailable.

        The batch is held, not naked: ``in_progress`` keeps JetStream from redelivering it
        while we wait, and does not count as a delivery, so an outage of any length
        never exhausts ``max_deliver``. Whatever did commit before a failure is
        recognised as duplicates on the retry.

        Any other failure (the dead-letter stream refuses, a bug) is retried too, but
        ``batch_attempts`` times at most, then given back: no batch stalls ingest for ever.
        """
        raw = [raw_message(m) for m in messages]
        delay = self.settings.retry_delay_s
        failures = 0
        while True:
            try:
                await self.processor.process(raw)
                break
            except Exception as exc:
                if self._stopping.is_set():
                    for m in messages:
                        await m.nak()
                    return
                if isinstance(exc, TRANSIENT):
                    log.warning(
                        "batch of %d not applied (%s); retrying in %.0fs", len(messages), exc, delay
                    )
                else:
                    failures += 1
                    if failures >= self.settings.batch_attempts:
                        await self._give_back(messages, exc, failures)
                        return
                    if isinstance(exc, DeadLetterError):  # the store logged it
                        log.warning(
                            "batch of %d not finished (%s); retrying in %.0fs",
                            len(messages),
                            exc,
                            delay,
                        )
                    else:
                        log.exception(
                            "batch of %d not finished; retrying in %.0fs", len(messages), delay
                        )
                await self._hold(messages, delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
        for m in messages:
            await m.ack()

    async def _give_back(self, messages: list[Msg], exc: Exception, attempts: int) -> None:
        """Stop holding a batch that keeps failing, so that ingest moves on.

        When only dead letters could not be stored, the rest of the batch is committed
        and is acked; the events whose dead letters wait are nakked. Otherwise the whole
        batch is nakked (what did commit comes back as duplicates). JetStream redelivers
        a nakked event after ``give_back_delay_s``, counting each delivery against
        ``max_deliver``; once those are spent, its max-deliveries advisory dead-letters
        it. Nothing unfinished is acked, and nothing is terminated.
        """
        unfinished = set(exc.seqs) if isinstance(exc, DeadLetterError) else None
        back = 0
        for m in messages:
            if unfinished is None or m.metadata.sequence.stream in unfinished:
                await m.nak(delay=self.settings.give_back_delay_s)
                back += 1
            else:
                await m.ack()
        self.processor.metrics.ingest_given_back.inc()
        log.error(
            "batch of %d failed %d times (%s: %s): %d event(s) handed back to JetStream for "
            "redelivery in %.0fs (up to NOTIFIER_INGEST_MAX_DELIVER deliveries, then "
            "dead-lettered), %d acked; ingest goes on",
            len(messages),
            attempts,
            type(exc).__name__,
            redact(str(exc)),
            back,
            self.settings.give_back_delay_s,
            len(messages) - back,
        )

    async def _hold(self, messages: list[Msg], seconds: float) -> None:
        """Wait, telling JetStream the batch is still being worked on."""
        step = max(1.0, self.settings.ack_wait_s / 3)
        waited = 0.0
        while waited < seconds and not self._stopping.is_set():
            for m in messages:
                await m.in_progress()
            pause = min(step, seconds - waited)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            waited += pause
