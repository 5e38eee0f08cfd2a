"""Sends notifications: one JetStream consumer per channel on ``notify.<channel>``.

Each channel has its own work queue, consumer, concurrency limit, token bucket and
circuit breaker, so a slow or failing provider delays only its own channel. A
dispatch message only names a notification; the ledger says whether it is still due
(see ``ledger.claim``), so duplicates and redeliveries send nothing twice.

This module holds the JetStream side of a channel: the durable pull consumer, the
fetch loop, the claim of each batch, per-order sequencing, parking, and the ack or
``nak(delay)`` of each message once its fate is recorded. Whether and when a claimed
notification is sent, retried or given up, and the recording of that fate, is the
send policy in ``sender.py``.

Transient failures go back on the queue with ``nak(delay)`` (exponential backoff with
jitter, or the provider's ``Retry-After``); permanent ones, and the last allowed
attempt, end ``failed`` in the ledger and in ``deadletter.notify.<channel>``.

The only window in which a crash can cause a second send is between the provider
accepting the message and the ledger recording it: the lease then runs out, the
dispatch message is redelivered, and the message is sent again with the same
provider identity (email ``Message-ID``, push collapse key, webhook delivery id).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.channels.base import ChannelAdapter
from notifier.delivery.fates import Fate, Outcome
from notifier.delivery.ledger import Claimed, Held, claim
from notifier.delivery.outbox import dispatch_subject, notification_id
from notifier.delivery.parking import Parking
from notifier.delivery.recorder import Recorder
from notifier.delivery.retry import RetryPolicy
from notifier.delivery.sender import Sender
from notifier.delivery.settings import ChannelLimits, DispatchSettings
from notifier.metrics import Metrics
from notifier.pull import fetch_ready
from notifier.streams import NOTIFY_STREAM

#: the settings classes live in settings.py; the composition root takes them from here
__all__ = ["ChannelLimits", "ChannelWorker", "DispatchSettings", "Dispatcher"]

log = logging.getLogger(__name__)

#: the share of a lease in which a claimed message may still be handed to a provider; the
#: rest is left for the send itself (bounded by the provider timeout) and its record
LEASE_USABLE = 0.5
#: dispatch messages one channel holds back for an earlier message of their order
MAX_PARKED = 500


class ChannelWorker:
    """The consumer of one channel's dispatch queue."""

    def __init__(
        self,
        engine: AsyncEngine,
        adapter: ChannelAdapter,
        *,
        policy: RetryPolicy,
        limits: ChannelLimits,
        settings: DispatchSettings,
        metrics: Metrics,
        on_requeued: Callable[[], None],
        recorder: Recorder | None = None,
    ) -> None:
        self.engine = engine
        self.adapter = adapter
        self.channel = adapter.name
        self.limits = limits
        self.settings = settings
        #: what is sent, when, and what its fate was: the send policy
        self.sender = Sender(
            engine,
            adapter,
            policy=policy,
            limits=limits,
            settings=settings,
            metrics=metrics,
            on_requeued=on_requeued,
            recorder=recorder,
        )
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sizes: dict[asyncio.Task[None], int] = {}
        self.parking = Parking(self._guarded, limit=MAX_PARKED)
        #: dispatch messages held (fetched, not yet acked or naked) at once
        self.max_in_flight = max(settings.batch_size, limits.concurrency * 4)

    @property
    def durable(self) -> str:
        """The consumer's durable name, shared by every replica."""
        return f"dispatch-{self.channel}"

    async def start(self, nc: NatsClient) -> None:
        """Open the provider, bind the durable consumer and start pulling."""
        await self.adapter.start()
        js = self.sender.js = nc.jetstream()
        s = self.settings
        await js.add_consumer(
            NOTIFY_STREAM,
            ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=s.lease_s,
                max_deliver=-1,  # the ledger counts attempts; JetStream never gives up
                max_ack_pending=max(s.batch_size * 4, 1000),
                max_waiting=512,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=dispatch_subject(self.channel),
            ),
        )
        sub = await js.pull_subscribe_bind(durable=self.durable, stream=NOTIFY_STREAM)
        self._task = asyncio.create_task(self._run(sub), name=self.durable)

    async def stop(self, grace_s: float) -> None:
        """Stop pulling; sends in flight finish and are recorded; close the provider."""
        self._stopping.set()
        if self._task is not None:
            _done, pending = await asyncio.wait([self._task], timeout=grace_s)
            for task in pending:
                task.cancel()
        await self.parking.close()
        await self.adapter.close()

    async def _run(self, sub: JetStreamContext.PullSubscription) -> None:
        # Fetching goes on while earlier batches are being sent, so a message that
        # arrives during a send waits for a free slot, not for the whole batch to finish;
        # at most ``max_in_flight`` messages are held at once.
        s = self.settings
        in_flight: set[asyncio.Task[None]] = set()
        held = 0
        while not self._stopping.is_set():
            while held >= self.max_in_flight and in_flight:
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                held -= sum(self._sizes.pop(t, 0) for t in done)
                in_flight -= done
            try:
                messages = await fetch_ready(
                    sub, min(s.batch_size, self.max_in_flight - held), max(s.fetch_wait_s, 0.5)
                )
            except TimeoutError:
                continue
            except (ConnectionClosedError, ServiceUnavailableError) as exc:
                log.warning("%s cannot fetch (%s); retrying", self.durable, type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                log.exception("%s: fetch failed; retrying", self.durable)
                await asyncio.sleep(1.0)
                continue
            task = asyncio.create_task(self._guarded(messages))
            self._sizes[task] = len(messages)
            held += len(messages)
            in_flight.add(task)
            finished = {t for t in in_flight if t.done()}
            held -= sum(self._sizes.pop(t, 0) for t in finished)
            in_flight -= finished
        if in_flight:
            await asyncio.wait(in_flight)
        with contextlib.suppress(ConnectionClosedError):
            await sub.unsubscribe()

    async def _guarded(self, messages: list[Msg]) -> None:
        try:
            await self._handle(messages)
        except Exception:
            # Unacked messages come back after ack_wait; the channel must go on.
            log.exception("%s: batch of %d failed; continuing", self.durable, len(messages))

    async def _handle(self, messages: list[Msg]) -> None:
        by_id: dict[str, Msg] = {}
        for msg in messages:
            nid = notification_id(msg.data)
            if nid is None:
                log.error("%s: unreadable dispatch message dropped", self.durable)
                await msg.term()
            elif nid in by_id:
                await msg.ack()  # the same notification twice in one batch
            else:
                by_id[nid] = msg
        if not by_id:
            return
        wait = self.sender.provider_wait()
        if wait > 0:
            for msg in by_id.values():
                await msg.nak(delay=wait)
            return
        try:
            found = await self.sender.recorder.run(
                functools.partial(
                    claim,
                    ids=list(by_id),
                    lease_s=self.settings.lease_s,
                    check_tokens=self.channel in self.settings.dead_recipient_channels,
                )
            )
        except SQLAlchemyError as exc:
            log.warning("%s cannot reach the database: %s", self.durable, type(exc).__name__)
            for msg in by_id.values():
                await msg.nak(delay=2.0)
            return
        for nid, why in found.held.items():
            msg = by_id[nid]
            if why.done:
                await msg.ack()
            elif not self._park(msg, why):
                await msg.nak(delay=why.delay_s)
        send_by = time.monotonic() + self.settings.lease_s * LEASE_USABLE
        by_order: dict[str, list[Claimed]] = {}
        for item in found.claimed:
            by_order.setdefault(item.order_id, []).append(item)
        await asyncio.gather(
            *(
                self._send_in_order(items, by_id, send_by, found.dead_tokens)
                for items in by_order.values()
            )
        )

    async def _send_in_order(
        self, items: list[Claimed], by_id: Mapping[str, Msg], send_by: float, dead: set[str]
    ) -> None:
        # One order's messages go out one after another, in the order of the events
        # behind them: "shipped" never overtakes "confirmed". A slot of the gate is let
        # go only once its send is recorded, so a crash leaves at most one accepted but
        # unrecorded message per slot; records from all slots (and channels) that wait
        # at once share one transaction (recorder.py).
        async with self.sender.gate:
            held_back: float | None = None
            for item in items:
                msg = by_id[item.id]
                if held_back is not None:
                    # an earlier message of this order is to be tried again: this one waits
                    outcome = Outcome(item, Fate.RELEASED, delay_s=held_back)
                elif time.monotonic() > send_by or self._stopping.is_set():
                    outcome = Outcome(item, Fate.RELEASED, delay_s=0.0)
                else:
                    seq = msg.metadata.sequence.stream
                    outcome = await self.sender.send(item, seq, send_by, dead)
                if outcome.fate in (Fate.RETRY, Fate.RELEASED):
                    held_back = max(outcome.delay_s or 0.0, 1.0)
                if not await self.sender.record(outcome):
                    continue  # its lease runs out and it is retried
                if outcome.fate in (Fate.SENT, Fate.GIVEN_UP):
                    self.parking.moved_on(item.order_id)
                if outcome.delay_s is None:
                    await msg.ack()
                else:
                    await msg.nak(delay=outcome.delay_s)

    def _park(self, msg: Msg, why: Held) -> bool:
        """Hold a message that waits for an earlier one of its order (parking.py)."""
        if why.behind is None or self._stopping.is_set():
            return False
        if why.delay_s > self.settings.lease_s * LEASE_USABLE:
            return False  # JetStream would redeliver it meanwhile
        return self.parking.park(why.behind, msg, why.delay_s)


class Dispatcher:
    """Owns one worker per enabled channel."""

    def __init__(self, workers: Mapping[str, ChannelWorker]) -> None:
        self.workers = dict(workers)
        # one recorder per database for all channels: their fates share transactions
        shared: dict[int, Recorder] = {}
        for worker in self.workers.values():
            sender = worker.sender
            sender.recorder = shared.setdefault(id(worker.engine), sender.recorder)

    @property
    def channels(self) -> dict[str, ChannelAdapter]:
        """The enabled channels' adapters."""
        return {name: w.adapter for name, w in self.workers.items()}

    async def start(self, nc: NatsClient) -> None:
        """Start every channel's consumer."""
        for worker in self.workers.values():
            await worker.start(nc)

    async def stop(self, grace_s: float = 30.0) -> None:
        """Stop every channel; in-flight sends are recorded first."""
        await asyncio.gather(*(w.stop(grace_s) for w in self.workers.values()))
