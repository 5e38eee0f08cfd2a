"""The delivery phases: the service sending to local provider fakes over the real
protocols (SMTP to aiosmtpd, the twilio client to the Twilio fake, firebase-admin to
the FCM fake, Twilio's signed status callbacks back to the service).

The fakes (``fakes.py``) and the publisher (``loadgen.py``) run in processes of their
own, on the load side's cores where there are enough to split (``cores.py``); the
client ceiling (``clients.py``) replays the burst's sends without the service."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from notifier.bench.clients import ceiling_phase
from notifier.bench.cores import CoreLayout
from notifier.bench.database import phase_database
from notifier.bench.fakes import FakesHost
from notifier.bench.latency import LedgerRow, Received, latencies, report
from notifier.bench.loadgen import publish_elsewhere
from notifier.bench.peer import apprise_email_rate
from notifier.bench.settings import BenchConfig, progress_bar, service_settings
from notifier.bench.stack import (
    Service,
    acked_through,
    last_seq,
    nats_connect,
    unsettled,
    wait_until,
)
from notifier.bench.sweep import run_sweep
from notifier.bench.workload import Outgoing, Workload
from notifier.core.notification_status import PENDING
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.publisher import ensure_stream
from notifier.store.moves import status_values
from notifier.store.tables import notifications

TWILIO_SID = "AC" + "b" * 32
TWILIO_FROM = "+15005550006"
#: events through a fresh stack before a phase is timed on it
WARM_UP_EVENTS = 50


class DeliveryBench:
    """nats-server, the three fakes and the service, for the delivery phases.

    The fakes live for the whole run; nats-server, the store and the service make a
    *stack* that a phase can replace with a fresh one, so that what one phase left
    behind is never the next one's backlog.
    """

    def __init__(self, cfg: BenchConfig, work: Path, layout: CoreLayout | None = None) -> None:
        self.cfg = cfg
        self.work = work
        self.layout = layout or CoreLayout.plan()
        self.fakes = FakesHost(
            work / "fakes",
            cfg.out_dir,
            self.layout,
            account_sid=TWILIO_SID,
            auth_token=secrets.token_hex(16),
        )
        self.run_id = secrets.token_hex(3)
        self._stack: contextlib.AsyncExitStack | None = None
        self._stacks = 0
        self._backlog = False
        self._phases = 0

    async def run(self) -> dict[str, Any]:
        """Burst, the client ceiling, the Apprise comparison, the rate sweep; with
        ``--replicas N`` the burst again on a fresh stack with one service and with N."""
        await self.fakes.start()
        try:
            await self._open()
            try:
                burst = await self._burst()
                ceiling = await ceiling_phase(
                    self.fakes,
                    self._service_settings,
                    burst,
                    work=self.work,
                    out_dir=self.cfg.out_dir,
                )
                peer = await self._peer(self.fakes.smtp_port)
                # last: a rate the service cannot sustain leaves a backlog behind
                sweep, half = await run_sweep(self.cfg.rates, self._rate_phase)
            finally:
                await self._close()
            results: dict[str, Any] = {
                "end_to_end": burst,
                "client_ceiling": ceiling,
                "peer": peer,
                "sweep": sweep,
            }
            if half is not None:
                results["latency"] = dict(half)
            if self.cfg.replicas:
                results["replica_bursts"] = await self._replica_bursts(self.cfg.replicas)
            return results
        finally:
            await self.fakes.stop()

    async def _open(self, replicas: int = 1, name: str = "") -> None:
        """A fresh stack: nats-server, a store, and ``replicas`` services on them (their
        logs ``service-delivery.log``, or ``service-<name>-<i>.log``)."""
        self._stacks += 1
        work = self.work / f"stack-{self._stacks}"
        # nats-server makes the folder; a SQLite store and the FCM credentials go in it
        stack = contextlib.AsyncExitStack()
        try:
            nats = NatsServer(store_dir=work / "nats")
            nats.start()
            stack.callback(nats.stop)
            database_url = await stack.enter_async_context(
                phase_database(self.cfg.postgres_url, work)
            )
            nc = await nats_connect(nats.url)
            stack.push_async_callback(nc.close)
            self.js = nc.jetstream()
            await ensure_stream(self.js)
            self.read = create_async_engine(database_url)
            stack.push_async_callback(self.read.dispose)
            settings = self._settings(nats.url, database_url)
            self._service_settings, self.nats_url = settings, nats.url
            for index in range(replicas):
                log_name = f"{name}-{index + 1}" if name else "delivery"
                log = self.cfg.out_dir / f"service-{log_name}.log"
                service = Service.configure(settings, log, place=self.layout.pin_service)
                stack.push_async_callback(service.stop)
                await service.start()
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._backlog = stack, False

    async def _close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def _settings(self, nats_url: str, database_url: str) -> dict[str, str]:
        fakes = self.fakes
        return service_settings(nats_url, database_url) | {
            "NOTIFIER_SMTP_HOST": "127.0.0.1",
            "NOTIFIER_SMTP_PORT": str(fakes.smtp_port),
            "NOTIFIER_SMTP_FROM": "Orders <orders@bench.example.com>",
            "NOTIFIER_TWILIO_ACCOUNT_SID": TWILIO_SID,
            "NOTIFIER_TWILIO_AUTH_TOKEN": fakes.auth_token,
            "NOTIFIER_TWILIO_FROM": TWILIO_FROM,
            "NOTIFIER_TWILIO_API_BASE": fakes.twilio_base_url,
            "NOTIFIER_FCM_CREDENTIALS_FILE": str(fakes.credentials_file),
            "NOTIFIER_FCM_API_BASE": fakes.fcm_base_url,
        }

    async def _rate_phase(self, rate: float) -> dict[str, Any]:
        """One rate of the sweep, on a drained stack: after a phase that could not
        finish its sends in time, a fresh one (warmed up, as the first was by the burst)."""
        if self._backlog:
            await self._close()
            await self._open()
            await self._warm_up()
        result = await self._fixed_rate(rate)
        self._backlog = not result["settled"]
        return result

    async def _warm_up(self) -> None:
        """A few events through a fresh service, so that the phase after it does not time
        connection set-up and first token fetches."""
        workload = Workload(run_id=f"{self.run_id}w{self._stacks}", seed=self.cfg.seed + 4)
        with progress_bar(self.cfg, WARM_UP_EVENTS, "warm-up (fresh stack)") as bar:
            await self._publish(workload.take(WARM_UP_EVENTS), None, {}, bar)
            await self._settle(self.cfg.settle_s)

    async def _replica_bursts(self, replicas: int) -> dict[int, dict[str, Any]]:
        """The burst with one service and with ``replicas``, each on a fresh stack."""
        out = {}
        for n in (1, replicas):
            await self._open(n, f"replicas-{n}")
            try:
                out[n] = await self._burst(f"end-to-end burst, {n} service(s)")
            finally:
                await self._close()
        return out

    js: JetStreamContext
    read: AsyncEngine
    nats_url: str
    _service_settings: dict[str, str]

    async def _clear(self) -> None:
        await self.fakes.clear()

    async def _received(self) -> list[Received]:
        return await self.fakes.received()

    async def _settle(self, timeout_s: float) -> bool:
        """Wait until the service has taken every message and finished every send."""
        target = await last_seq(self.js)

        async def done() -> bool:
            return await acked_through(self.js) >= target and not await unsettled(self.read)

        return await wait_until(done, timeout_s)

    async def _publish(
        self,
        messages: Iterator[Outgoing],
        rate: float | None,
        sent_at: dict[str, list[float]],
        bar: Any,
    ) -> list[float]:
        """Publish at ``rate`` per second (None: as fast as acks come back), from a
        process of its own; returns the publish times."""
        outgoing = list(messages)
        times = await publish_elsewhere(
            self.nats_url,
            outgoing,
            rate,
            work=self.work / "publish",
            log_path=self.cfg.out_dir / "bench-publisher.log",
            layout=self.layout,
            bar=bar,
        )
        for out, at in zip(outgoing, times, strict=True):
            if out.event_id is not None:
                sent_at.setdefault(out.event_id, []).append(at)
        return times

    async def _burst(self, label: str = "end-to-end burst") -> dict[str, Any]:
        count = self.cfg.e2e_events
        await self._clear()
        workload = Workload(run_id=f"{self.run_id}b{self._stacks}", seed=self.cfg.seed + 1)
        sent_at: dict[str, list[float]] = {}
        with progress_bar(self.cfg, count, label) as bar:
            times = await self._publish(workload.take(count), None, sent_at, bar)
            settled = await self._settle(max(self.cfg.settle_s, count / 20))
        received = await self._received()
        sends = {ch: sum(1 for r in received if r.channel == ch) for ch in ("email", "sms", "push")}
        seconds = (max((r.at for r in received), default=times[-1]) - times[0]) or float("nan")
        # each channel over the time until its own last send, as the ceiling times it
        lasts: dict[str, float] = {}
        for r in received:
            lasts[r.channel] = max(r.at, lasts.get(r.channel, r.at))
        return {
            "events": count,
            "seconds": seconds,
            "channel_seconds": {ch: (at - times[0]) or float("nan") for ch, at in lasts.items()},
            "events_per_s": count / seconds,
            "sends": sends,
            "sends_per_s": sum(sends.values()) / seconds,
            "settled": settled,
        }

    async def _fixed_rate(self, rate: float) -> dict[str, Any]:
        cfg = self.cfg
        count = max(int(rate * cfg.duration_s), 1)
        await self._clear()
        since = datetime.now(UTC) - timedelta(seconds=1)
        self._phases += 1
        workload = Workload(run_id=f"{self.run_id}r{self._phases}", seed=cfg.seed + 2)
        sent_at: dict[str, list[float]] = {}
        with progress_bar(cfg, count, f"fixed rate {rate:g}/s") as bar:
            times = await self._publish(workload.take(count), rate, sent_at, bar)
            settled = await self._settle(cfg.settle_s)
        unsent = await self._unsent(since)
        query = select(
            notifications.c.id,
            notifications.c.event_id,
            notifications.c.channel,
            notifications.c.provider_message_id,
        ).where(notifications.c.created_at >= since)
        async with self.read.connect() as conn:
            rows = [LedgerRow(*r) for r in await conn.execute(query)]
        traced, untraced = latencies(await self._received(), rows, sent_at)
        summary = report(traced, times, times[0], unsent)
        span = times[-1] - times[0]
        return {
            "rate_per_s": rate,
            "duration_s": cfg.duration_s,
            "events": count,
            "achieved_rate_per_s": (count - 1) / span if span > 0 else None,
            "untraced_sends": untraced,
            "settled": settled,
            "waited_s": cfg.settle_s,
            "unsent": unsent,
            **summary,
        }

    async def _unsent(self, since: datetime) -> dict[str, int]:
        """Per channel, the phase's sends still queued or in flight; under ``"all"``, events
        not even ingested yet (each would have made at least one)."""
        query = (
            select(notifications.c.channel, func.count())
            .where(notifications.c.created_at >= since)
            .where(notifications.c.status.in_(status_values(PENDING)))
            .group_by(notifications.c.channel)
        )
        async with self.read.connect() as conn:
            waiting = {channel: int(n) for channel, n in await conn.execute(query)}
        behind = await last_seq(self.js) - await acked_through(self.js)
        if behind:
            waiting["all"] = behind
        return waiting

    async def _peer(self, smtp_port: int) -> dict[str, Any]:
        """notifier's whole path (publish → ingest → render → queue → SMTP) for email-only
        orders, against Apprise sending as many ready-made emails to the same server."""
        await self._clear()
        workload = Workload(run_id=f"{self.run_id}p", seed=self.cfg.seed + 3, email_only=True)
        messages = list(workload.take(self.cfg.peer_messages))
        expected = workload.counts.events
        with progress_bar(self.cfg, len(messages), "notifier email") as bar:
            times = await self._publish(iter(messages), None, {}, bar)
            await self._settle(self.cfg.settle_s)
        got = [r for r in await self._received() if r.channel == "email"]
        last = max((r.at for r in got), default=times[0])
        ours = {
            "messages": len(got),
            "seconds": last - times[0],
            "per_s": len(got) / (last - times[0]) if last > times[0] else None,
        }
        await self._clear()
        theirs = await apprise_email_rate(expected, smtp_host="127.0.0.1", smtp_port=smtp_port)
        ratio = ours["per_s"] / theirs.per_s if ours["per_s"] and theirs.per_s else None
        return {
            "messages": expected,
            "notifier": ours,
            "apprise": {
                "messages": theirs.messages,
                "seconds": theirs.seconds,
                "per_s": theirs.per_s,
                "errors": theirs.errors,
            },
            "ratio": ratio,
        }
