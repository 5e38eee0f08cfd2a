"""Send policy of one channel: whether, when and how a claimed notification goes out.

The channel worker (``dispatcher.py``) moves dispatch messages: it fetches, claims,
acks, naks and parks them. What happens to one claimed notification is decided here,
apart from JetStream: the circuit breaker of its provider (or webhook endpoint), the
channel's token bucket and concurrency gate, the provider call itself, whether a
failure is retried (with the :class:`~notifier.delivery.retry.RetryPolicy`'s backoff
or the provider's ``Retry-After``) or given up (dead letter first, then ``failed``),
and the recording of each outcome in the ledger with its metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.channels.base import ChannelAdapter, OutboundMessage, SendReceipt
from notifier.core.model import NotificationStatus
from notifier.delivery import deadletters
from notifier.delivery.fates import Fate, Outcome
from notifier.delivery.ledger import Claimed, record_dead_token
from notifier.delivery.limits import BreakerState, CircuitBreaker, TokenBucket
from notifier.delivery.recorder import Recorder
from notifier.delivery.retry import RetryPolicy
from notifier.delivery.settings import ChannelLimits, DispatchSettings
from notifier.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from notifier.metrics import Metrics
from notifier.redaction import redact
from notifier.store.maintenance import ERASED
from notifier.store.preferences import CATEGORIES, opt_out

log = logging.getLogger(__name__)


class Sender:
    """Sends one channel's claimed notifications and records what became of them."""

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
        #: shared by every channel of a :class:`~notifier.delivery.dispatcher.Dispatcher`
        self.recorder = recorder or Recorder(engine)
        self.adapter = adapter
        self.channel = adapter.name
        self.policy = policy
        self.limits = limits
        self.settings = settings
        self.metrics = metrics
        self.on_requeued = on_requeued
        self.bucket = TokenBucket(limits.rate_per_s)
        #: one slot per send in flight; a slot is let go once its send is recorded
        self.gate = asyncio.Semaphore(limits.concurrency)
        #: where given-up notifications are dead-lettered, once the worker is bound
        self.js: JetStreamContext | None = None
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, key: str) -> CircuitBreaker:
        """The breaker for the provider (or, for webhooks, one endpoint)."""
        found = self._breakers.get(key)
        if found is None:
            found = self._breakers[key] = CircuitBreaker(
                self.limits.breaker_failures, self.limits.breaker_open_s
            )
        return found

    def _breaker_key(self, item: Claimed) -> str:
        return item.recipient if self.adapter.breaker_per_recipient else self.adapter.provider

    def provider_wait(self) -> float:
        """Seconds until the provider's open breaker lets a trial through (0: closed).
        A batch that arrives meanwhile is handed back before it is even claimed; with
        one breaker per endpoint, each notification is judged on its own in :meth:`send`.
        """
        if self.adapter.breaker_per_recipient:
            return 0.0
        return self.breaker(self.adapter.provider).remaining()

    async def record(self, outcome: Outcome) -> bool:
        """Write the outcome to the ledger and count it. False when it could not be
        written: its lease runs out and it is retried, with the same identity."""
        try:
            await self.recorder.write(outcome)
        except SQLAlchemyError as exc:
            log.warning(
                "notification %s: fate not recorded: %s", outcome.item.id, type(exc).__name__
            )
            return False
        item = outcome.item
        if outcome.fate is Fate.SENT:
            self._count(item, NotificationStatus.SENT.value, outcome.provider)
        elif outcome.fate is Fate.RETRY:
            self._count(item, "retry")
        elif outcome.fate is Fate.GIVEN_UP:
            self._count(item, outcome.status.value)  # failed, or suppressed
            self.on_requeued()  # a fallback channel may have been queued
        return True

    async def send(
        self, item: Claimed, dispatch_seq: int, send_by: float, dead: set[str]
    ) -> Outcome:
        """Send one claimed notification; what became of it, to be recorded.

        ``dispatch_seq`` is the stream sequence of the dispatch message that asked for it;
        past ``send_by`` (half the lease) it is handed back unsent. ``dead`` holds the
        recipients known dead; a provider that calls one dead adds it.
        """
        provider = self.adapter.provider
        # erased while a crashed sender held it, opted out of since it was planned, or a
        # push token known to be gone: not sent, and a fallback channel takes over
        why_not = (
            ERASED
            if not item.recipient
            else item.opted_out
            or ("push token is unregistered" if item.recipient in dead else None)
        )
        if why_not is not None:
            return Outcome(item, Fate.GIVEN_UP, error=why_not, status=NotificationStatus.SUPPRESSED)
        breaker = self.breaker(self._breaker_key(item))
        wait = breaker.wait()
        if wait > 0:
            return Outcome(item, Fate.RELEASED, delay_s=wait)
        await self.bucket.take()
        if time.monotonic() > send_by:
            # the rate limit held it too long: another replica may claim it once the
            # lease runs out, so it must not go out from here any more
            breaker.abandon_trial()
            return Outcome(item, Fate.RELEASED, delay_s=0.0)
        message = OutboundMessage(
            notification_id=item.id,
            channel=item.channel,
            to=item.recipient,
            text=item.body_text,
            subject=item.subject,
            html=item.body_html,
            locale=item.locale,
            order_id=item.order_id,
            template=item.template,
            state=item.state,
            sender=item.sender,
            reply_to=item.reply_to,
            unsubscribe_url=item.unsubscribe_url,
        )
        started = time.perf_counter()
        try:
            receipt = await _call(self.adapter, message)
        except PermanentDeliveryError as exc:
            breaker.success()  # the provider answered; the message was at fault
            if exc.opted_out is not None:
                # the customer's choice, not a failure: no dead letter
                try:
                    await opt_out(self.engine, item.customer_id, self.channel, CATEGORIES)
                except SQLAlchemyError as db:
                    # the next send to them is refused the same way and tries again
                    log.warning(
                        "notification %s: opt-out not stored: %s", item.id, type(db).__name__
                    )
                log.info("notification %s: recipient opted out (%s)", item.id, exc.code)
                return Outcome(
                    item, Fate.GIVEN_UP, error=exc.opted_out, status=NotificationStatus.SUPPRESSED
                )
            error = _error_text(exc, "permanent", item)
            reason = deadletters.DEAD_RECIPIENT if exc.dead_recipient else deadletters.PERMANENT
            if exc.dead_recipient and self.channel in self.settings.dead_recipient_channels:
                dead.add(item.recipient)  # the rest of this batch skips it too
                await record_dead_token(
                    self.engine, item.recipient, item.customer_id, exc.code or "dead"
                )
            log.info("notification %s failed permanently (%s)", item.id, exc.code)
            return await self._give_up(item, provider, reason, error, dispatch_seq)
        except TransientDeliveryError as exc:
            breaker.failure(exc.retry_after)
            self._show(item, breaker)
            error = _error_text(exc, "transient", item)
            if self.policy.exhausted(item.attempts):
                log.warning("notification %s failed after %d attempts", item.id, item.attempts)
                return await self._give_up(
                    item,
                    provider,
                    deadletters.EXHAUSTED,
                    f"gave up after {item.attempts} attempts: {error}",
                    dispatch_seq,
                )
            delay = self.policy.delay(item.attempts, exc.retry_after)
            log.info("notification %s will be retried in %.1fs (%s)", item.id, delay, exc.code)
            return Outcome(item, Fate.RETRY, delay_s=delay, error=error)
        breaker.success()
        self._show(item, breaker)
        self.metrics.send_seconds.labels(item.channel).observe(time.perf_counter() - started)
        waited = (datetime.now(UTC) - item.created_at).total_seconds()
        self.metrics.event_to_send_seconds.labels(item.channel).observe(waited)
        return Outcome(
            item,
            Fate.SENT,
            provider=receipt.provider,
            provider_message_id=receipt.provider_message_id,
            final=self.channel not in self.settings.receipt_channels,
        )

    async def _give_up(
        self, item: Claimed, provider: str, reason: str, error: str, dispatch_seq: int
    ) -> Outcome:
        # Dead letter first: if the process dies before the ledger says failed, the
        # message is tried once more and the dead letter is deduplicated. Keyed by the
        # dispatch message, not the attempt count: a replay resets the count and sends a
        # new dispatch message, and its failure must be dead-lettered again.
        if self.js is not None:
            await deadletters.publish_failed(
                self.js,
                item,
                provider=provider,
                reason=reason,
                error=error,
                generation=dispatch_seq,
            )
        return Outcome(item, Fate.GIVEN_UP, error=error)

    def _show(self, item: Claimed, breaker: CircuitBreaker) -> None:
        """Export whether this breaker is open (its key is a provider or an endpoint name)."""
        is_open = breaker.state is BreakerState.OPEN
        self.metrics.breaker_open.labels(self.channel, self._breaker_key(item)).set(int(is_open))

    def _count(self, item: Claimed, status: str, provider: str | None = None) -> None:
        self.metrics.count(item.channel, item.template, status, provider or self.adapter.provider)


def _error_text(exc: DeliveryError, kind: str, item: Claimed) -> str:
    """The error as the ledger and the dead letter keep it: the code, and the message
    without the recipient or anything else shaped like a contact."""
    return redact(f"{exc.code or kind}: {exc}", (item.recipient,))


async def _call(adapter: ChannelAdapter, message: OutboundMessage) -> SendReceipt:
    """The adapter's send; anything but a typed delivery error is an adapter bug, which
    must not stop the channel: it is retried like a transient failure, and logged."""
    try:
        return await adapter.send(message)
    except DeliveryError:
        raise
    except Exception as exc:
        log.exception(
            "notification %s: unexpected error in %s", message.notification_id, adapter.name
        )
        raise TransientDeliveryError(
            f"unexpected {type(exc).__name__}: {exc}", code="unexpected"
        ) from exc
