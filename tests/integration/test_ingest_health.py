"""Health tells the truth about ingest: lag, the oldest waiting event, and a stall,
read from a real nats-server's account of the durable consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.aio.client import Client as NatsClient

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.ingest.consumer import ConsumerSettings, IngestConsumer, consumer_config
from notifier.ingest.health import IngestHealth
from notifier.metrics import Metrics
from notifier.streams import ORDERS_STREAM, StreamSettings, ensure_streams
from tests.integration.helpers import event, order, publish, running, settings_for
from tests.support import wait_until


class Clock:
    """A monotonic clock and a wall clock that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.offset = timedelta()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
async def nc(nats: NatsServer) -> AsyncIterator[NatsClient]:
    """A plain client of the test's server, in the role of the service's connection."""
    client = await _connect(nats.url)
    yield client
    await client.close()


async def _connect(url: str) -> NatsClient:
    client: NatsClient = await nats.connect(url)
    return client


def _gauge(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def test_a_consumer_that_does_not_advance_is_a_stall_and_acking_ends_it(
    nats: NatsServer, nc: NatsClient
) -> None:
    js = nc.jetstream()
    await ensure_streams(js, StreamSettings())
    settings = ConsumerSettings(durable="probe")
    await js.add_consumer(ORDERS_STREAM, consumer_config(settings))
    await publish(nats.url, event("H-1", "placed", 0), event("H-2", "placed", 0))
    clock, metrics = Clock(), Metrics()
    health = IngestHealth("probe", 60.0, metrics, clock=clock.monotonic, wall=clock.wall)

    assert await health.check(js) == "ok"  # waiting, but not for long yet
    assert _gauge(metrics, "notifier_ingest_lag") == 2
    clock.advance(30)
    assert await health.check(js) == "ok"
    clock.advance(31)
    said = await health.check(js)
    assert said.startswith("degraded: ingest has not advanced for 61 s with 2 event(s) waiting")
    assert _gauge(metrics, "notifier_ingest_stalled") == 1
    assert (_gauge(metrics, "notifier_ingest_oldest_unacked_seconds") or 0) >= 61

    sub = await js.pull_subscribe_bind(durable="probe", stream=ORDERS_STREAM)
    [first] = await sub.fetch(1, timeout=5)
    await first.ack_sync()
    assert await health.check(js) == "ok"  # the floor moved: ingest advances
    assert _gauge(metrics, "notifier_ingest_lag") == 1
    clock.advance(61)
    assert (await health.check(js)).startswith("degraded")
    [second] = await sub.fetch(1, timeout=5)
    await second.ack_sync()
    assert await health.check(js) == "ok"
    assert _gauge(metrics, "notifier_ingest_lag") == 0
    assert _gauge(metrics, "notifier_ingest_oldest_unacked_seconds") == 0
    assert _gauge(metrics, "notifier_ingest_stalled") == 0


async def test_an_event_that_just_arrived_after_an_idle_spell_is_not_a_stall(
    nats: NatsServer, nc: NatsClient
) -> None:
    js = nc.jetstream()
    await ensure_streams(js, StreamSettings())
    await js.add_consumer(ORDERS_STREAM, consumer_config(ConsumerSettings(durable="probe")))
    clock = Clock()
    health = IngestHealth("probe", 60.0, Metrics(), clock=clock.monotonic, wall=clock.wall)
    assert await health.check(js) == "ok"
    clock.now += 3600  # nobody probed for an hour, and nothing waited
    await publish(nats.url, event("I-1", "placed", 0))
    assert await health.check(js) == "ok"


async def test_readyz_says_degraded_while_ingest_is_stopped_and_ok_once_it_moves(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port, ingest_stall_s=0.2)
    async with running(settings) as (service, client):
        await service.consumer.stop()  # as a wedged consumer would: nothing is pulled
        await publish(nats.url, *[event(f"S-{i}", "placed", 0) for i in range(3)])

        async def degraded() -> bool:
            return (await client.get("/readyz")).json()["status"] == "degraded"

        await wait_until(degraded, timeout=15)
        ready = await client.get("/readyz")
        assert ready.status_code == 200  # still serving: receipts and the API work
        checks = ready.json()["checks"]
        assert checks["nats"] == checks["database"] == "ok"
        assert checks["ingest"].startswith("degraded: ingest has not advanced")
        assert "3 event(s) waiting" in checks["ingest"]
        metrics = (await client.get("/metrics")).text
        assert "notifier_ingest_lag 3.0" in metrics
        assert "notifier_ingest_stalled 1.0" in metrics

        # a fresh consumer takes over; the service stops it on the way out
        service.consumer = IngestConsumer(service.consumer.processor, service.consumer.settings)
        assert service.nc is not None
        await service.consumer.start(service.nc)

        async def ok() -> bool:
            return (await client.get("/readyz")).json()["status"] == "ok"

        await wait_until(ok, timeout=15)
        assert await order(client, "S-2") is not None
        assert "notifier_ingest_lag 0.0" in (await client.get("/metrics")).text
