"""The running service: what ``build_service`` assembled, started, watched and stopped.

``notifier.app`` composes the parts from settings and plugins and builds nothing
itself at import; this module is what happens after: connecting to NATS (bounded at
start-up, then reconnecting for ever), declaring the streams, starting and stopping
the parts in order, the readiness checks and gauges the API reads, and the hourly
retention run. Kept apart so that wiring (what is built from what) and running (what
happens in which order, and what health says) can each be read, and changed, alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.config import Settings
from notifier.contracts.stores import StoreBook
from notifier.core.model import DeadLetter
from notifier.delivery.alerts import DeliveryAlerter
from notifier.delivery.dispatcher import Dispatcher
from notifier.delivery.ledger import queue_depth
from notifier.delivery.outbox import Outbox
from notifier.ingest.consumer import IngestConsumer
from notifier.ingest.deadletter_store import DeadLetterStore
from notifier.ingest.health import IngestHealth
from notifier.ingest.live_rules import LiveRules
from notifier.ingest.timer_poller import TimerPoller
from notifier.ingest.transit_learner import TransitLearner
from notifier.metrics import Metrics
from notifier.nats_client import close_for_good, connect_for_life
from notifier.store.maintenance import prune
from notifier.store.migrate import upgrade
from notifier.streams import StreamSettings, ensure_streams
from notifier.workers import WorkerPool

log = logging.getLogger("notifier")


async def _nats_error(exc: Exception) -> None:
    log.warning("NATS: %s: %s", type(exc).__name__, exc)


async def _nats_reconnected() -> None:
    log.info("NATS: reconnected")


@dataclass
class Service:
    """Everything the process runs, started and stopped in order."""

    settings: Settings
    engine: AsyncEngine
    consumer: IngestConsumer
    dispatcher: Dispatcher
    outbox: Outbox
    alerter: DeliveryAlerter
    metrics: Metrics
    dead_letter_store: DeadLetterStore
    ingest_health: IngestHealth
    #: the dispatch processes this one supervises (``NOTIFIER_DISPATCH_WORKERS``)
    workers: WorkerPool | None = None
    #: the shops of ``NOTIFIER_STORES_FILE`` (the order-status page shows their contact)
    stores: StoreBook | None = None
    #: fires the time rules' due timers (an ingest process's task)
    timers: TimerPoller | None = None
    #: relearns transit times for predicted_late rules (an ingest process's task)
    learner: TransitLearner | None = None
    #: the rules in effect, changed through the API (an ingest process's)
    rules: LiveRules | None = None
    nc: NatsClient | None = None
    #: one JetStream context for the connection's life (each one holds subscriptions)
    _jetstream: JetStreamContext | None = None
    _maintenance: asyncio.Task[None] | None = None
    _closing: bool = False

    async def _nats_disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS: disconnected; reconnecting")

    async def start(self) -> None:
        """Migrate, declare streams, start sending, then start consuming."""
        await upgrade(self.engine)
        s = self.settings
        self.nc = await connect_for_life(
            s.nats_url,
            name="notifier",
            creds_file=s.nats_creds_file,
            error_cb=_nats_error,
            disconnected_cb=self._nats_disconnected,
            reconnected_cb=_nats_reconnected,
        )
        js = self._js()
        await ensure_streams(
            js,
            StreamSettings(
                duplicate_window_s=s.nats_duplicate_window_s,
                max_age_days=s.stream_max_age_days,
                deadletter_max_age_days=s.deadletter_max_age_days,
            ),
        )
        if self.workers is not None:
            await self.workers.start()  # once the schema and the streams are there
        if s.dispatches:
            await self.dispatcher.start(self.nc)
            self.alerter.start()
        if s.ingests:
            if self.rules is not None:
                await self.rules.start()  # the stored rules, before the first batch
            self.outbox.start(js)
            self.dead_letter_store.start(js)
            await self.consumer.start(self.nc)
            if self.learner is not None:
                self.learner.start()
            if self.timers is not None:
                self.timers.start()
            self._maintenance = asyncio.create_task(self._maintain(), name="maintenance")
        if self.workers is not None:
            await self.workers.ready()
        log.info(
            "notifier started as %s (channels: %s)",
            self._layout(),
            ", ".join(self.dispatcher.channels) or "none",
        )

    async def stop(self) -> None:
        """Stop pulling first; the batch in hand finishes (or is redelivered); then sends
        drain (here, or in the dispatch workers, which are stopped and waited for)."""
        s = self.settings
        if self._maintenance:
            self._maintenance.cancel()
        if s.dispatches:
            await self.alerter.stop()
        if s.ingests:
            if self.timers is not None:
                await self.timers.stop()
            if self.learner is not None:
                await self.learner.stop()
            await self.consumer.stop()
            if self.rules is not None:
                await self.rules.stop()
        if self.workers is not None:
            await self.workers.stop()
        if s.dispatches:
            await self.dispatcher.stop()
        if s.ingests:
            await self.outbox.stop()
        self._closing = True
        if self.nc is not None and (why := await close_for_good(self.nc)) is not None:
            log.warning("NATS connection closed without draining: %s", why)
        await self.engine.dispose()
        log.info("notifier stopped")

    def _js(self) -> JetStreamContext:
        if self.nc is None:
            raise RuntimeError("connect to NATS first: call Service.start()")
        if self._jetstream is None:
            self._jetstream = self.nc.jetstream()
        return self._jetstream

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Store dead letters (stream and index); raises ``DeadLetterError`` for any the
        stream did not acknowledge."""
        return await self.dead_letter_store.store(letters)

    async def refresh_gauges(self) -> None:
        """Queue depth per channel, read from the ledger when Prometheus scrapes (by the
        ingest process only: every process would read the same numbers)."""
        if not self.settings.ingests:
            return
        try:
            depth = await queue_depth(self.engine)
        except SQLAlchemyError as exc:
            log.warning("queue depth unavailable: %s", type(exc).__name__)
            return
        for channel in {*self.dispatcher.channels, *depth}:
            self.metrics.queue_depth.labels(channel).set(depth.get(channel, 0))
        if self.nc is not None and self.nc.is_connected:
            await self.ingest_health.check(self._js())

    async def readiness(self) -> dict[str, str]:
        """NATS, the database and the dead-letter store, each ``ok`` or why not; ingest
        ``ok`` or ``degraded: …`` when events wait and it has not advanced for
        ``NOTIFIER_INGEST_STALL_S``; the dispatch workers ``ok`` or ``degraded: …`` while
        one is down; the rules ``ok`` or ``degraded: …`` while a stored version is
        refused. A dispatch process checks only NATS and the database."""
        checks: dict[str, str] = {}
        checks["nats"] = "ok" if self.nc is not None and self.nc.is_connected else "not connected"
        try:
            async with self.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), 2.0)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        if not self.settings.ingests:
            return checks
        checks["dead_letters"] = self.dead_letter_store.health()
        if self.rules is not None:
            checks["rules"] = self.rules.health()
        if checks["nats"] == "ok":
            checks["ingest"] = await self.ingest_health.check(self._js())
        if self.workers is not None:
            checks["dispatch_workers"] = self.workers.health()
        return checks

    def _layout(self) -> str:
        if self.workers is not None:
            return f"ingest with {self.workers.size} dispatch worker process(es)"
        return f"role {self.settings.role.value}"

    async def _maintain(self) -> None:
        while True:
            try:
                report = await prune(
                    self.engine,
                    dedup_days=self.settings.dedup_retention_days,
                    notification_days=self.settings.notification_retention_days,
                    deadletter_days=self.settings.deadletter_max_age_days,
                )
                if any(dataclasses.astuple(report)):
                    log.info("retention removed %s", report)
            except Exception:
                log.exception("retention run failed; will try again")
            await asyncio.sleep(3600)
