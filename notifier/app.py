"""Composition root: the only place that builds things and wires them together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import nats
from fastapi import APIRouter, FastAPI
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.api.routes import build_router
from notifier.channels.base import ChannelAdapter
from notifier.channels.email import EmailChannel
from notifier.config import Settings
from notifier.core.model import DeadLetter
from notifier.core.pipeline import Pipeline
from notifier.core.rules import RuleSet, load_rules
from notifier.delivery.dispatcher import (
    ChannelLimits,
    ChannelWorker,
    Dispatcher,
    DispatchSettings,
)
from notifier.delivery.outbox import Outbox
from notifier.delivery.ledger import queue_depth
from notifier.delivery.retry import RetryPolicy
from notifier.errors import StartupError
from notifier.ingest.consumer import ConsumerSettings, IngestConsumer
from notifier.ingest.deadletters import publish_dead_letters
from notifier.ingest.processor import BatchProcessor
from notifier.ingest.streams import StreamSettings, ensure_streams
from notifier.metrics import Metrics
from notifier.rendering.templates import TemplateRenderer
from notifier.store.db import create_engine
from notifier.store.maintenance import prune
from notifier.store.migrate import upgrade

log = logging.getLogger("notifier")

NATS_STARTUP_TIMEOUT_S = 15.0


async def _nats_error(exc: Exception) -> None:
    log.warning("NATS: %s: %s", type(exc).__name__, exc)


async def _nats_reconnected() -> None:
    log.info("NATS: reconnected")


def build_channels(settings: Settings) -> dict[str, ChannelAdapter]:
    """Every channel that has what it needs; the others are off, said once at start-up."""
    channels: dict[str, ChannelAdapter] = {}
    if settings.smtp_host:
        channels["email"] = EmailChannel.from_settings(settings)
    else:
        log.warning("email channel disabled: NOTIFIER_SMTP_HOST is not set")
    log.info("sms channel disabled: not available yet")
    log.info("push channel disabled: not available yet")
    return channels


def channel_limits(settings: Settings, channel: str) -> ChannelLimits:
    """The concurrency, rate and breaker settings of one channel."""
    s = settings
    concurrency = {
        "email": s.smtp_pool_size, "sms": s.sms_concurrency, "push": s.push_concurrency,
        "webhook": s.webhook_concurrency,
    }.get(channel, 4)
    rate = {
        "email": s.email_rate_per_s, "sms": s.sms_rate_per_s, "push": s.push_rate_per_s,
        "webhook": s.webhook_rate_per_s,
    }.get(channel, 0.0)
    return ChannelLimits(
        concurrency=concurrency, rate_per_s=rate, breaker_failures=s.breaker_failures,
        breaker_open_s=s.breaker_open_s,
    )


def build_rules(settings: Settings, renderer: TemplateRenderer) -> RuleSet:
    """Load and validate the rules file against the templates on disk."""
    return load_rules(settings.rules_file, template_exists=renderer.has)


@dataclass
class Service:
    """Everything the process runs, started and stopped in order."""

    settings: Settings
    engine: AsyncEngine
    consumer: IngestConsumer
    dispatcher: Dispatcher
    outbox: Outbox
    metrics: Metrics
    nc: NatsClient | None = None
    _maintenance: asyncio.Task[None] | None = None
    _closing: bool = False

    async def _nats_disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS: disconnected; reconnecting")

    async def start(self) -> None:
        """Migrate, declare streams, start sending, then start consuming."""
        await upgrade(self.engine)
        s = self.settings
        try:
            # Once connected, reconnect forever; at start-up, give up after a bound so
            # a wrong URL is one clear line, not a silent hang.
            self.nc = await asyncio.wait_for(
                nats.connect(
                    s.nats_url, name="notifier", connect_timeout=5, allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    user_credentials=str(s.nats_creds_file) if s.nats_creds_file else None,
                    error_cb=_nats_error, disconnected_cb=self._nats_disconnected,
                    reconnected_cb=_nats_reconnected,
                ),
                NATS_STARTUP_TIMEOUT_S,
            )
        except TimeoutError:
            raise StartupError(
                f"NATS at {s.nats_url} unreachable for {NATS_STARTUP_TIMEOUT_S:.0f} s"
            ) from None
        js = self._js()
        await ensure_streams(
            js,
            StreamSettings(
                duplicate_window_s=s.nats_duplicate_window_s,
                max_age_days=s.stream_max_age_days,
                deadletter_max_age_days=s.deadletter_max_age_days,
            ),
        )
        await self.dispatcher.start(self.nc)
        self.outbox.start(js)
        await self.consumer.start(self.nc)
        self._maintenance = asyncio.create_task(self._maintain(), name="maintenance")
        log.info("notifier started (channels: %s)", ", ".join(self.dispatcher.channels) or "none")

    async def stop(self) -> None:
        """Stop pulling first; the batch in hand finishes (or is redelivered); then sends drain."""
        if self._maintenance:
            self._maintenance.cancel()
        await self.consumer.stop()
        await self.dispatcher.stop()
        await self.outbox.stop()
        self._closing = True
        if self.nc is not None:
            await self.nc.drain()
        await self.engine.dispose()
        log.info("notifier stopped")

    def _js(self) -> JetStreamContext:
        if self.nc is None:
            raise RuntimeError("connect to NATS first: call Service.start()")
        return self.nc.jetstream()

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Publish dead letters on the service's NATS connection."""
        return await publish_dead_letters(self._js(), letters)

    async def refresh_gauges(self) -> None:
        """Queue depth per channel, read from the ledger when Prometheus scrapes."""
        try:
            depth = await queue_depth(self.engine)
        except SQLAlchemyError as exc:
            log.warning("queue depth unavailable: %s", type(exc).__name__)
            return
        for channel in {*self.dispatcher.channels, *depth}:
            self.metrics.queue_depth.labels(channel).set(depth.get(channel, 0))

    async def readiness(self) -> dict[str, str]:
        """NATS and the database, each ``ok`` or why not."""
        checks: dict[str, str] = {}
        checks["nats"] = "ok" if self.nc is not None and self.nc.is_connected else "not connected"
        try:
            async with self.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), 2.0)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        return checks

    async def _maintain(self) -> None:
        while True:
            try:
                report = await prune(
                    self.engine,
                    dedup_days=self.settings.dedup_retention_days,
                    notification_days=self.settings.notification_retention_days,
                )
                if report.orders or report.notifications:
                    log.info("retention removed %s", report)
            except Exception:
                log.exception("retention run failed; will try again")
            await asyncio.sleep(3600)


def build_service(
    settings: Settings, *, channels: dict[str, ChannelAdapter] | None = None
) -> Service:
    """Build every component from settings. Nothing connects until ``start``."""
    metrics = Metrics()
    renderer = TemplateRenderer(settings.templates_dir, default_locale=settings.default_locale)
    rules = build_rules(settings, renderer)
    channels = build_channels(settings) if channels is None else channels
    engine = create_engine(settings.database_url)
    metrics.providers.update({name: adapter.provider for name, adapter in channels.items()})
    outbox = Outbox(engine)
    policy = RetryPolicy(
        max_attempts=settings.dispatch_max_attempts,
        base_s=settings.dispatch_backoff_base_s,
        max_s=settings.dispatch_backoff_max_s,
    )
    dispatch = DispatchSettings(
        batch_size=settings.dispatch_batch_size, lease_s=settings.dispatch_lease_s
    )
    dispatcher = Dispatcher({
        name: ChannelWorker(
            engine, adapter, policy, channel_limits(settings, name), dispatch, metrics,
            on_requeued=outbox.wake,
        )
        for name, adapter in channels.items()
    })
    pipeline = Pipeline(rules, renderer, frozenset(channels))
    service: Service

    async def sink(letters: Sequence[DeadLetter]) -> int:
        return await service.dead_letters(letters)

    processor = BatchProcessor(engine, pipeline, sink, metrics, on_committed=outbox.wake)
    consumer = IngestConsumer(
        processor,
        ConsumerSettings(
            durable=settings.ingest_consumer,
            batch_size=settings.ingest_batch_size,
            batch_wait_s=settings.ingest_batch_wait_s,
            ack_wait_s=settings.ingest_ack_wait_s,
            max_deliver=settings.ingest_max_deliver,
        ),
    )
    service = Service(settings, engine, consumer, dispatcher, outbox, metrics)
    return service


def create_app(service: Service, *, extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The HTTP app. The caller starts and stops the service around it (see ``serve``),
    so a start-up failure is reported before the HTTP port opens."""
    app = FastAPI(title="notifier", version="0.1.0")
    app.state.engine = service.engine
    token = service.settings.api_token
    if token is None and service.settings.environment == "production":
        log.warning("NOTIFIER_API_TOKEN is not set: the /v1 API answers anyone who can reach it")
    app.include_router(
        build_router(
            service.metrics, service.readiness,
            api_token=token.get_secret_value() if token else None,
            before_scrape=service.refresh_gauges,
        )
    )
    for router in extra_routers:
        app.include_router(router)
    return app
