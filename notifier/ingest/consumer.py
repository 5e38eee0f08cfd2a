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
import logging
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError

from notifier.core.model import RawMessage
from notifier.ingest.processor import TRANSIENT, BatchProcessor
from notifier.ingest.streams import EVENTS_FILTER, ORDERS_STREAM

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How the ingest consumer pulls."""

    durable: str = "notifier-ingest"
    batch_size: int = 500
    batch_wait_s: float = 0.02
    ack_wait_s: float = 30.0
    max_deliver: int = 20
    retry_delay_s: float = 2.0


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

    async def start(self, js: JetStreamContext) -> None:
        """Create or update the durable consumer, then start pulling."""
        # Creating a durable that exists with another config updates it in place.
        await js.add_consumer(ORDERS_STREAM, consumer_config(self.settings))
        sub = await js.pull_subscribe_bind(durable=self.settings.durable, stream=ORDERS_STREAM)
        self._task = asyncio.create_task(self._run(sub), name="ingest")

    async def stop(self) -> None:
        """Stop pulling; the batch in hand is finished and acked (or left for redelivery)."""
        self._stopping.set()
        if self._task is not None:
            await self._task

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
        try:
            await self.processor.process([raw_message(m) for m in messages])
        except Exception as exc:
            # The database or NATS (dead letters) is unavailable: nothing is acked, the
            # batch comes back, and whatever did commit is recognised as duplicates.
            if isinstance(exc, TRANSIENT):
                log.warning("batch of %d not applied (%s); redelivering", len(messages), exc)
            else:
                log.exception("batch of %d not finished; redelivering", len(messages))
            for m in messages:
                await m.nak(delay=self.settings.retry_delay_s)
            await asyncio.sleep(self.settings.retry_delay_s)
            return
        for m in messages:
            await m.ack()
