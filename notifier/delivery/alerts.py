"""Operations alerts: the delivery rate of a channel fell below the threshold.

Checked every ``interval_s`` over the last ``window_s``; a channel needs at least
``min_samples`` finished notifications in the window before its rate means anything.
Each channel is alerted at most once per window, across all replicas: the alert is
recorded in ``ops_alerts`` under a key that names the channel and the window, before
it is sent, and the record is removed again if no sink took it (so it is retried).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.channels.base import ChannelAdapter, OutboundMessage
from notifier.delivery.stats import delivery_stats
from notifier.errors import DeliveryError
from notifier.metrics import Metrics
from notifier.store.tables import ops_alerts

log = logging.getLogger(__name__)

#: somewhere an alert can go: (subject, text, details) → raises if it did not get there
AlertSink = Callable[[str, str, dict[str, object]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """When to alert."""

    threshold: float = 0.999
    window_s: float = 3600.0
    min_samples: int = 20
    interval_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Alert:
    """One raised alert."""

    channel: str
    rate: float
    finished: int
    subject: str
    text: str


def channel_sink(adapter: ChannelAdapter, to: str) -> AlertSink:
    """Alerts to an ops address through a channel's own provider (email's SMTP relay)."""

    async def send(subject: str, text: str, details: dict[str, object]) -> None:
        key = f"ops-{details['key']}".replace(":", "-")
        await adapter.send(
            OutboundMessage(
                notification_id=key, channel=adapter.name, to=to, text=text, subject=subject
            )
        )

    return send


def webhook_sink(url: str, timeout_s: float = 10.0) -> AlertSink:
    """Alerts as a JSON POST (chat or paging webhooks)."""

    async def send(subject: str, text: str, details: dict[str, object]) -> None:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            response = await client.post(
                url,
                content=json.dumps({"subject": subject, "text": text, **details}),
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()

    return send


class DeliveryAlerter:
    """Watches delivery rates and raises alerts through the configured sinks."""

    def __init__(
        self,
        engine: AsyncEngine,
        metrics: Metrics,
        settings: AlertSettings,
        sinks: Sequence[AlertSink],
        *,
        providers: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.settings = settings
        self.sinks = list(sinks)
        self.providers = dict(providers or {})
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Check every ``interval_s`` until stopped."""
        self._task = asyncio.create_task(self._run(), name="delivery-alerts")

    async def stop(self) -> None:
        """Stop checking."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except SQLAlchemyError as exc:
                log.warning("delivery-rate check skipped: %s", type(exc).__name__)
            except Exception:
                log.exception("delivery-rate check failed; will try again")
            await asyncio.sleep(self.settings.interval_s)

    async def check_once(self, now: datetime | None = None) -> list[Alert]:
        """Compare each channel's rate with the threshold; raise what is due."""
        now = now or datetime.now(UTC)
        s = self.settings
        stats = await delivery_stats(self.engine, s.window_s, providers=self.providers, now=now)
        raised: list[Alert] = []
        for channel, counts in sorted(stats.channels.items()):
            rate = counts.rate
            if rate is None:
                continue
            self.metrics.delivery_rate.labels(channel).set(rate)
            if counts.finished < s.min_samples or rate >= s.threshold:
                continue
            alert = Alert(
                channel=channel,
                rate=rate,
                finished=counts.finished,
                subject=f"[notifier] {channel} delivery rate {rate:.2%} is below {s.threshold:.2%}",
                text=(
                    f"Over the last {s.window_s / 60:.0f} minutes, {counts.finished} "
                    f"{channel} notifications finished and {rate:.2%} got through "
                    f"(threshold {s.threshold:.2%}). Counts: "
                    f"{json.dumps(counts.by_status, sort_keys=True)}. "
                    "See GET /v1/stats/delivery and `notifier dlq list`."
                ),
            )
            if await self._raise(alert, now):
                raised.append(alert)
        return raised

    async def _raise(self, alert: Alert, now: datetime) -> bool:
        s = self.settings
        subject = f"delivery_rate:{alert.channel}"
        key = f"{subject}:{int(now.timestamp() // s.window_s)}"
        async with self.engine.begin() as conn:
            recent = (
                await conn.execute(
                    select(ops_alerts.c.key)
                    .where(ops_alerts.c.subject == subject)
                    .where(ops_alerts.c.created_at > now - timedelta(seconds=s.window_s))
                    .limit(1)
                )
            ).first()
            if recent is not None:
                return False
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        insert(ops_alerts).values(
                            key=key, subject=subject, detail=alert.text, created_at=now
                        )
                    )
            except IntegrityError:
                return False  # another replica raised it
        details: dict[str, object] = {
            "key": key,
            "channel": alert.channel,
            "delivery_rate": alert.rate,
            "finished": alert.finished,
        }
        delivered = 0
        for sink in self.sinks:
            try:
                await sink(alert.subject, alert.text, details)
                delivered += 1
            except (DeliveryError, httpx.HTTPError, OSError) as exc:
                log.warning("ops alert for %s not delivered: %s", alert.channel, type(exc).__name__)
        log.warning("ALERT %s (%d sink(s) reached)", alert.subject, delivered)
        if self.sinks and delivered == 0:
            async with self.engine.begin() as conn:
                await conn.execute(delete(ops_alerts).where(ops_alerts.c.key == key))
            return False
        self.metrics.alerts.labels("delivery_rate").inc()
        return True
