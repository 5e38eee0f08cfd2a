"""``--replicas N``: the ingest and end-to-end phases with N service processes on one
PostgreSQL database, next to the same phases with one, run back to back.

Both counts are measured the same way, each on a fresh nats-server and database: the
services are started and ready first, then the backlog (ingest, null channels) or the
burst (end to end, the fakes) is published, and the clock runs from the first publish
to the last ack (ingest) or the last send a fake received (end to end). The replicas
share the durable ingest consumer and the dispatch queues, as deployed replicas do.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from notifier.bench.cores import CoreLayout
from notifier.bench.database import phase_database
from notifier.bench.settings import (
    REPLICAS_NEED_POSTGRES,
    BenchConfig,
    progress_bar,
    service_settings,
)
from notifier.bench.stack import Service, acked_through, last_seq, nats_connect, publish
from notifier.bench.values import at, num
from notifier.bench.workload import Workload
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.publisher import ensure_stream

POLL_S = 0.05


async def ingest_with_replicas(
    cfg: BenchConfig, work: Path, replicas: int, layout: CoreLayout | None = None
) -> dict[str, Any]:
    """The ingest backlog (``cfg.ingest_events``, sends to null channels) through
    ``replicas`` services on a fresh nats-server (its store under ``work``) and
    PostgreSQL database, on the service side's cores (``layout``)."""
    if cfg.postgres_url is None:
        raise ValueError(REPLICAS_NEED_POSTGRES)
    nats = NatsServer(store_dir=work / "nats")
    nats.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(nats.stop)
        database_url = await stack.enter_async_context(phase_database(cfg.postgres_url, work))
        nc = await nats_connect(nats.url)
        stack.push_async_callback(nc.close)
        js = nc.jetstream()
        await ensure_stream(js)
        settings = service_settings(nats.url, database_url)
        settings["NOTIFIER_NULL_CHANNELS"] = "email,sms,push"
        services = [
            Service.configure(
                settings,
                cfg.out_dir / f"service-ingest-{replicas}-{i + 1}.log",
                place=layout.pin_service if layout is not None else None,
            )
            for i in range(replicas)
        ]
        for service in services:
            stack.push_async_callback(service.stop)
            # one after another, each ready before the next starts, so that start-up
            # (migrations take turns under an advisory lock) is not in what is timed
            await service.start()
        workload = Workload(run_id=secrets.token_hex(3), seed=cfg.seed)
        label = f"ingest, {replicas} service(s)"
        with progress_bar(cfg, cfg.ingest_events, label) as bar:
            started = time.perf_counter()
            await publish(js, workload.take(cfg.ingest_events))
            total = await last_seq(js)
            while (done := await acked_through(js)) < total:
                bar.update(done - bar.n)
                await asyncio.sleep(POLL_S)
            seconds = time.perf_counter() - started
    return {
        "replicas": replicas,
        "events": total,
        "seconds": seconds,
        "events_per_s": total / seconds if seconds > 0 else None,
    }


def scaling(replicas: int, one: Mapping[str, Any], many: Mapping[str, Any]) -> dict[str, Any]:
    """``results["replicas"]``: events/s with one service and with ``replicas``, and the
    factor between them, for ingest and end to end (``one``/``many``: each phase's
    results by ``"ingest"`` and ``"e2e"``)."""

    def line(phase: str, key: str) -> dict[str, Any]:
        a, b = num(at(one, phase, key)), num(at(many, phase, key))
        return {"1": a, str(replicas): b, "factor": b / a if a and b is not None else None}

    return {
        "n": replicas,
        "ingest": line("ingest", "events_per_s")
        | {"runs": [one.get("ingest"), many.get("ingest")]},
        "e2e": line("e2e", "events_per_s")
        | {
            "sends_per_s": line("e2e", "sends_per_s"),
            "runs": [one.get("e2e"), many.get("e2e")],
        },
    }
