"""``notifier bench``: the phases, in order, each against a fresh nats-server and store.

1. Ingest (sends excluded): a backlog of the workload is published; plain nats-py
   consumes it first (the ceiling), then the service, with null channels, consumes
   the same messages; RSS is sampled throughout; then the store's size, and what a
   retention pass leaves of it once the data has aged.
2. Delivery, against the provider fakes (aiosmtpd, the Twilio and FCM fakes):
   end-to-end throughput of a burst, the client ceiling (the burst's sends through our
   channel clients alone, ``clients.py``), email against Apprise, then the rate sweep
   (``sweep.py``: latency at rising fixed rates, the sustainable rate, and latency at
   half of it; last, as a rate the service cannot sustain leaves a backlog).
3. With ``--replicas N`` (PostgreSQL): ingest and the burst again with one service and
   with N (``replicas.py``).

Where the machine has cores enough, the service side and the load side are pinned
apart (``cores.py``); the report says how many each had.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from notifier.bench.ceiling import raw_consume
from notifier.bench.cores import CoreLayout, pin
from notifier.bench.database import phase_database, store_bytes
from notifier.bench.delivery import DeliveryBench
from notifier.bench.replicas import ingest_with_replicas, scaling
from notifier.bench.settings import BenchConfig, progress_bar, service_settings
from notifier.bench.stack import (
    Service,
    consumer_progress,
    last_seq,
    nats_connect,
    publish,
    rss_mb,
    unsettled,
    wait_until,
)
from notifier.bench.workload import Outgoing, Workload
from notifier.core.notification_status import PENDING
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.publisher import ensure_stream
from notifier.store.db import create_engine
from notifier.store.maintenance import prune
from notifier.store.tables import events, notifications

RSS_EVERY_S = 0.5
POLL_S = 0.05


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _meta(cfg: BenchConfig, layout: CoreLayout) -> dict[str, Any]:
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": cfg.command,
        "quick": cfg.quick,
        "database": "postgresql" if cfg.postgres_url else "sqlite",
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out_dir", "progress")},
        "machine": {
            "cpus": _cpus(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_model": _cpu_model(),
        },
        "cores": layout.describe() | {"load_average_at_start": os.getloadavg()[0]},
    }


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _ticking(messages: Iterator[Outgoing], bar: Any) -> Iterator[Outgoing]:
    for out in messages:
        bar.update()
        yield out


async def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Every phase; the results as one JSON-able dict."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    layout = CoreLayout.plan()
    results: dict[str, Any] = {"meta": _meta(cfg, layout)}
    # this process, and nats-server started from it, are the load side
    layout.pin_load(os.getpid())
    try:
        results |= await _ingest_phase(cfg, work / "ingest", layout)
        results |= await DeliveryBench(cfg, work / "delivery", layout).run()
        if cfg.replicas:
            bursts = results.pop("replica_bursts")
            runs = {}
            for n in (1, cfg.replicas):
                ingest = await ingest_with_replicas(cfg, work / f"replicas-{n}", n, layout)
                runs[n] = {"ingest": ingest, "e2e": bursts[n]}
            results["replicas"] = scaling(cfg.replicas, runs[1], runs[cfg.replicas])
    finally:
        if layout.pinned:
            pin(os.getpid(), layout.service | layout.load)
        shutil.rmtree(work, ignore_errors=True)
    return results


async def _ingest_phase(cfg: BenchConfig, work: Path, layout: CoreLayout) -> dict[str, Any]:
    nats = NatsServer(store_dir=work / "nats")
    nats.start()
    try:
        nc = await nats_connect(nats.url)
        try:
            async with phase_database(cfg.postgres_url, work) as database_url:
                return await _ingest(cfg, work, nats.url, nc, database_url, layout=layout)
        finally:
            await nc.close()
    finally:
        nats.stop()


async def _ingest(
    cfg: BenchConfig,
    work: Path,
    nats_url: str,
    nc: Any,
    database_url: str,
    *,
    layout: CoreLayout,
) -> dict[str, Any]:
    js = nc.jetstream()
    await ensure_stream(js)
    workload = Workload(run_id=secrets.token_hex(3), seed=cfg.seed)
    with progress_bar(cfg, cfg.ingest_events, "publishing backlog") as bar:
        started = time.perf_counter()
        await publish(js, _ticking(workload.take(cfg.ingest_events), bar))
        publish_s = time.perf_counter() - started
    total = await last_seq(js)
    with progress_bar(cfg, total, "raw nats-py ceiling"), layout.service_side():
        ceiling = await raw_consume(nc, total)

    settings = service_settings(nats_url, database_url)
    settings["NOTIFIER_NULL_CHANNELS"] = "email,sms,push"
    service = Service.configure(
        settings, cfg.out_dir / "service-ingest.log", place=layout.pin_service
    )
    watch = await _watch_ingest(cfg, js, service, total)
    read = create_async_engine(database_url)
    try:
        settled = await wait_until(lambda: _settled(read), cfg.settle_s)
        dispatch_s = time.perf_counter() - watch.begun
        made = await _count(read, notifications)
        waiting = await unsettled(read, PENDING)
    finally:
        await read.dispose()
    final_rss, peak_rss = rss_mb(service.pid)
    watch.samples.append(
        {"t": time.perf_counter() - watch.begun, "events": total, "rss_mb": final_rss}
    )
    await service.stop()
    store = await _store(work, database_url)
    ingest_s = watch.done_at - watch.begun
    rate = total / ingest_s if ingest_s > 0 else None
    c = workload.counts
    return {
        "workload": {
            "orders": c.orders,
            "events": c.events,
            "duplicates": c.duplicates,
            "revisions": c.revisions,
            "poison": c.poison,
            "messages": c.messages,
        },
        "publish": {
            "messages": cfg.ingest_events,
            "seconds": publish_s,
            "per_s": cfg.ingest_events / publish_s,
        },
        "ceiling": {
            "events": ceiling.count,
            "seconds": ceiling.seconds,
            "events_per_s": ceiling.per_s,
        },
        "ingest": {
            "events": total,
            "seconds": ingest_s,
            "events_per_s": rate,
            "ratio_to_ceiling": rate / ceiling.per_s if rate and ceiling.per_s else None,
            "notifications": made,
            "notifications_unsent": waiting,
            "with_dispatch_seconds": dispatch_s,
            "dispatch_settled": settled,
        },
        "memory": {
            "events": total,
            "peak_rss_mb": peak_rss,
            "final_rss_mb": final_rss,
            "growth_mb_per_100k": _growth(watch.samples),
            "samples": watch.samples,
            **store,
        },
    }


@dataclass
class _Watch:
    begun: float
    done_at: float
    samples: list[dict[str, float]]


async def _watch_ingest(cfg: BenchConfig, js: Any, service: Service, total: int) -> _Watch:
    """Start the service and follow its consumer until it has acked ``total`` messages:
    timed from the moment its durable consumer exists, RSS sampled on the way."""
    starting = asyncio.create_task(service.start())
    begun: float | None = None
    last_sample = 0.0
    samples: list[dict[str, float]] = []
    with progress_bar(cfg, total, "notifier ingest (null channels)") as bar:
        while True:
            found = await consumer_progress(js)
            progress = found or 0
            now = time.perf_counter()
            if begun is None and found is not None:
                begun = now
            bar.update(progress - bar.n)
            if starting.done():
                starting.result()  # a service that failed to start ends the run here
                if now - last_sample >= RSS_EVERY_S:
                    last_sample = now
                    samples.append(
                        {
                            "t": now - (begun or now),
                            "events": progress,
                            "rss_mb": rss_mb(service.pid)[0],
                        }
                    )
            if progress >= total:
                break
            await asyncio.sleep(POLL_S)
    await starting
    return _Watch(begun or now, now, samples)


async def _settled(engine: Any) -> bool:
    # standby rows stay: a null SMS gets no delivery receipt to release its fallbacks
    return not await unsettled(engine, PENDING)


def _growth(samples: list[dict[str, float]]) -> float | None:
    """MB of RSS per 100,000 events over the second half of the run (a least-squares slope)."""
    half = [s for s in samples if s["events"] >= samples[-1]["events"] / 2] if samples else []
    xs = [s["events"] for s in half]
    if len(set(xs)) < 2:
        return None
    slope = statistics.linear_regression(xs, [s["rss_mb"] for s in half]).slope
    return slope * 100_000


async def _count(engine: Any, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _store(work: Path, database_url: str) -> dict[str, Any]:
    """The store's size and rows, then what retention leaves once every row has aged past
    the default retention (30 days of dedup records, 180 of notifications)."""
    engine = create_engine(database_url)
    try:
        size = await store_bytes(engine, work)
        rows = {
            "events": await _count(engine, events),
            "notifications": await _count(engine, notifications),
        }
        later = datetime.now(UTC) + timedelta(days=181)
        await prune(engine, dedup_days=30, notification_days=180, now=later)
        after = {
            "events": await _count(engine, events),
            "notifications": await _count(engine, notifications),
        }
    finally:
        await engine.dispose()
    return {"store_bytes": size, "store_rows": rows, "store_rows_after_retention": after}
