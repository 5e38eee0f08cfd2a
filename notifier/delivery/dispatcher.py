"""Sends queued notifications: one loop per channel, so a slow provider delays only its own.

A notification is claimed with a lease (``sending``), handed to the channel, and its
fate recorded right after. The only window in which a crash can cause a second send is
between the provider accepting the message and that record: the lease then expires
and the message is sent again with the same provider identity (email ``Message-ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.channels.base import ChannelAdapter, OutboundMessage, SendReceipt
from notifier.delivery.ledger import Claimed, claim_due, mark_failed, mark_retry, mark_sent
from notifier.delivery.retry import RetryPolicy
from notifier.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from notifier.metrics import Metrics

log = logging.getLogger(__name__)

#: the share of a lease in which a claimed message may still be handed to a provider; the
#: rest is left for the send itself (bounded by the provider timeout) and its record
LEASE_USABLE = 0.5


class Dispatcher:
    """Owns one send loop per enabled channel."""

    def __init__(
        self,
        engine: AsyncEngine,
        channels: Mapping[str, ChannelAdapter],
        policy: RetryPolicy,
        metrics: Metrics,
        *,
        batch_size: int = 50,
        lease_s: float = 60.0,
        concurrency: int = 4,
        idle_poll_s: float = 0.5,
    ) -> None:
        self.engine = engine
        self.channels = dict(channels)
        self.policy = policy
        self.metrics = metrics
        self.batch_size = batch_size
        self.lease_s = lease_s
        self.concurrency = concurrency
        self.idle_poll_s = idle_poll_s
        self._wake = {name: asyncio.Event() for name in self.channels}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """New work was committed: look now rather than at the next poll."""
        for event in self._wake.values():
            event.set()

    async def start(self) -> None:
        """Start one loop per channel."""
        for name, adapter in self.channels.items():
            await adapter.start()
            self._tasks.append(asyncio.create_task(self._loop(name), name=f"dispatch-{name}"))

    async def stop(self, grace_s: float = 30.0) -> None:
        """Stop claiming; let sends in flight finish and be recorded; close providers."""
        self._stopping.set()
        self.wake()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
        for adapter in self.channels.values():
            await adapter.close()

    async def _loop(self, channel: str) -> None:
        adapter = self.channels[channel]
        wake = self._wake[channel]
        while not self._stopping.is_set():
            wake.clear()
            try:
                claimed = await claim_due(self.engine, channel, self.batch_size, self.lease_s)
            except SQLAlchemyError as exc:
                log.warning("dispatch-%s cannot reach the database: %s", channel, exc)
                claimed = []
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.idle_poll_s)
                continue
            gate = asyncio.Semaphore(self.concurrency)
            # Past this, a lease may run out before the send is recorded and another
            # replica could claim the same message: such items are handed back instead.
            send_by = time.monotonic() + self.lease_s * LEASE_USABLE
            by_order: dict[str, list[Claimed]] = {}
            for item in claimed:
                by_order.setdefault(item.order_id, []).append(item)
            await asyncio.gather(
                *(self._send_in_order(adapter, gate, items, send_by)
                  for items in by_order.values())
            )

    async def _send_in_order(
        self, adapter: ChannelAdapter, gate: asyncio.Semaphore, items: list[Claimed],
        send_by: float,
    ) -> None:
        # One order's messages go out one after another, in the order of the events
        # behind them: "shipped" never overtakes "confirmed".
        async with gate:
            for item in items:
                try:
                    if time.monotonic() > send_by:
                        await mark_retry(self.engine, item.id, "lease ran short; requeued", 0)
                        continue
                    await self._send(adapter, item)
                except SQLAlchemyError as exc:
                    # Its lease runs out and it is retried, with the same identity.
                    log.warning("notification %s: fate not recorded: %s", item.id, exc)

    async def _send(self, adapter: ChannelAdapter, item: Claimed) -> None:
        message = OutboundMessage(
            notification_id=item.id, channel=item.channel, to=item.recipient,
            text=item.body_text, subject=item.subject, html=item.body_html, locale=item.locale,
        )
        started = time.perf_counter()
        try:
            receipt = await _call(adapter, message)
        except PermanentDeliveryError as exc:
            await mark_failed(self.engine, item.id, f"{exc.code or 'permanent'}: {exc}")
            self.metrics.notifications.labels(item.channel, "failed").inc()
            log.info("notification %s failed permanently (%s)", item.id, exc.code)
            return
        except TransientDeliveryError as exc:
            error = f"{exc.code or 'transient'}: {exc}"
            if self.policy.exhausted(item.attempts):
                await mark_failed(self.engine, item.id, f"gave up after {item.attempts}: {error}")
                self.metrics.notifications.labels(item.channel, "failed").inc()
                log.warning("notification %s failed after %d attempts", item.id, item.attempts)
                return
            delay = self.policy.delay(item.attempts, exc.retry_after)
            await mark_retry(self.engine, item.id, error, delay)
            self.metrics.notifications.labels(item.channel, "retry").inc()
            log.info("notification %s will be retried in %.1fs (%s)", item.id, delay, exc.code)
            return
        await mark_sent(self.engine, item.id, receipt.provider, receipt.provider_message_id)
        self.metrics.notifications.labels(item.channel, "sent").inc()
        self.metrics.send_seconds.labels(item.channel).observe(time.perf_counter() - started)
        waited = (datetime.now(UTC) - item.created_at).total_seconds()
        self.metrics.event_to_send_seconds.labels(item.channel).observe(waited)


async def _call(adapter: ChannelAdapter, message: OutboundMessage) -> SendReceipt:
    """The adapter's send; anything but a typed delivery error is an adapter bug, which
    must not stop the channel: it is retried like a transient failure, and logged."""
    try:
        return await adapter.send(message)
    except DeliveryError:
        raise
    except Exception as exc:
        log.exception("notification %s: unexpected error in %s", message.notification_id,
                      adapter.name)
        raise TransientDeliveryError(
            f"unexpected {type(exc).__name__}: {exc}", code="unexpected"
        ) from exc
