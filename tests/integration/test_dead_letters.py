"""Dead letters are never lost: a dead letter is stored (the DEADLETTER stream
acknowledged it, and it is indexed) before its event is acked; a store that refuses
or does not answer leaves the event unacked, visibly; a batch that keeps failing is
given back instead of stalling ingest; and no dead-letter batch leaks a subscription.
Real nats-server, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats as nats_client
import pytest
from httpx import AsyncClient
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError
from sqlalchemy import select

from notifier.devtools.natsserver import NatsServer
from notifier.service import Service
from notifier.store.tables import dead_letters
from notifier.streams import DEADLETTER_STREAM, ORDERS_STREAM, StreamSettings, ensure_streams
from tests.integration.helpers import event, order, running, settings_for
from tests.support import wait_until

BAD = b"{not json"


@pytest.fixture
def monitored_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server whose monitoring endpoint tells each connection's subscriptions."""
    with NatsServer(store_dir=tmp_path / "nats", monitor_port=0) as server:
        yield server


@pytest.fixture
async def nc(nats: NatsServer) -> AsyncIterator[NatsClient]:
    """A client of the test's own, to publish and to look at the streams."""
    client = await nats_client.connect(nats.url)
    yield client
    await client.close()


async def _publish(nc: NatsClient, body: bytes | dict[str, Any], msg_id: str) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    ack = await nc.jetstream().publish("orders.state.web", data, headers={"Nats-Msg-Id": msg_id})
    return int(ack.seq)


def _sample(service: Service, name: str) -> float:
    return service.metrics.registry.get_sample_value(name) or 0.0


async def _indexed(service: Service) -> list[dict[str, Any]]:
    async with service.engine.connect() as conn:
        rows = (await conn.execute(select(dead_letters).order_by(dead_letters.c.seq))).mappings()
        return [dict(r) for r in rows]


async def _stored(nc: NatsClient) -> int:
    try:
        info = await nc.jetstream().stream_info(DEADLETTER_STREAM)
    except NotFoundError:
        return 0
    return int(info.state.messages)


async def _ack_pending(nc: NatsClient) -> tuple[int, int]:
    """(delivered but unacked, not yet delivered) of the ingest consumer."""
    info = await nc.jetstream().consumer_info(ORDERS_STREAM, "notifier-ingest")
    return int(info.num_ack_pending), int(info.num_pending or 0)


def _outstanding(nc: NatsClient, expected: tuple[int, int]) -> Any:
    async def check() -> bool:
        return await _ack_pending(nc) == expected

    check.__qualname__ = f"ack pending, pending == {expected}"
    return check


def _quick_retries(service: Service, **changes: Any) -> None:
    # the consumer reads its settings at each batch: retry in tenths of a second
    service.consumer.settings = dataclasses.replace(
        service.consumer.settings, retry_delay_s=0.1, **changes
    )


async def _readyz(client: AsyncClient) -> tuple[int, dict[str, str]]:
    response = await client.get("/readyz")
    checks: dict[str, str] = response.json()["checks"]
    return response.status_code, checks


async def test_a_refused_dead_letter_leaves_its_event_unacked_and_retried_visibly(
    nats: NatsServer, nc: NatsClient, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None, ingest_batch_attempts=1000)
    async with running(settings) as (service, client):
        _quick_retries(service)
        await nc.jetstream().delete_stream(DEADLETTER_STREAM)
        seq = await _publish(nc, BAD, "bad-1")

        await wait_until(
            lambda: _sample(service, "notifier_deadletter_publish_failures_total") >= 2, timeout=15
        )
        status, checks = await _readyz(client)
        assert status == 503
        assert checks["dead_letters"].startswith("error: dead letters not stored since")
        assert "DEADLETTER missing" in checks["dead_letters"]
        # not acked, not lost: held and retried
        assert await _ack_pending(nc) == (1, 0)
        assert await _indexed(service) == []

        await ensure_streams(nc.jetstream(), StreamSettings())

        async def stored() -> bool:
            return len(await _indexed(service)) == 1 and await _stored(nc) == 1

        await wait_until(stored, timeout=15)
        await wait_until(_outstanding(nc, (0, 0)), timeout=15)
        (row,) = await _indexed(service)
        assert (row["reason"], row["source"], row["original_seq"]) == ("invalid_json", "web", seq)
        status, checks = await _readyz(client)
        assert (status, checks["dead_letters"]) == (200, "ok")


async def test_a_dead_letter_store_that_never_answers_does_not_hang_ingest(
    nats: NatsServer, nc: NatsClient, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None, ingest_batch_attempts=1000)
    async with running(settings) as (service, _client):
        _quick_retries(service)
        await nc.jetstream().delete_stream(DEADLETTER_STREAM)
        # something listens on the dead-letter subjects but never answers: a lost reply
        silent = await nc.subscribe("deadletter.>")
        await _publish(nc, BAD, "bad-1")

        # the publish gives up after its timeout (5 s); ingest was not left hanging on it
        await wait_until(
            lambda: _sample(service, "notifier_deadletter_publish_failures_total") >= 1, timeout=20
        )
        assert await _ack_pending(nc) == (1, 0)
        await silent.unsubscribe()
        await ensure_streams(nc.jetstream(), StreamSettings())

        async def stored() -> bool:
            return len(await _indexed(service)) == 1

        await wait_until(stored, timeout=15)
        # ingest moved on: a good event after it is applied
        await _publish(nc, event("G-1", "placed", 0), "G-1-placed-0")
        await wait_until(lambda: _has_order(client=_client, order_id="G-1"), timeout=15)


async def _has_order(*, client: AsyncClient, order_id: str) -> bool:
    return await order(client, order_id) is not None


async def test_a_batch_that_keeps_failing_is_given_back_and_ingest_goes_on(
    nats: NatsServer, nc: NatsClient, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None, ingest_batch_attempts=2)
    async with running(settings) as (service, client):
        _quick_retries(service, give_back_delay_s=1.0)
        await nc.jetstream().delete_stream(DEADLETTER_STREAM)
        bad = await _publish(nc, BAD, "bad-1")
        await wait_until(
            lambda: _sample(service, "notifier_ingest_batches_given_back_total") >= 1, timeout=15
        )

        # the stream still refuses, and a good event behind the bad one goes through
        await _publish(nc, event("G-1", "placed", 0), "G-1-placed-0")
        await wait_until(lambda: _has_order(client=client, order_id="G-1"), timeout=15)
        # only the bad event is still out: nakked and redelivered, never acked or dropped
        await wait_until(_outstanding(nc, (1, 0)), timeout=15)
        assert await _indexed(service) == []

        await ensure_streams(nc.jetstream(), StreamSettings())

        async def stored() -> bool:
            return len(await _indexed(service)) == 1

        await wait_until(stored, timeout=15)
        await wait_until(_outstanding(nc, (0, 0)), timeout=15)
        (row,) = await _indexed(service)
        assert row["original_seq"] == bad


async def _subscriptions(monitor_url: str, name: str) -> int:
    async with httpx.AsyncClient() as http:
        connz = (await http.get(f"{monitor_url}/connz", params={"subs": "1"})).json()
    (conn,) = [c for c in connz["connections"] if c.get("name") == name]
    return int(conn["subscriptions"])


async def test_dead_letter_batches_leave_no_subscription_behind(
    monitored_nats: NatsServer, database_url: str
) -> None:
    settings = settings_for(monitored_nats.url, database_url, None)
    monitor = monitored_nats.monitor_url
    assert monitor is not None
    client = await nats_client.connect(monitored_nats.url)
    try:
        async with running(settings):
            counts = []
            for i in range(1, 51):
                await _publish(client, BAD + str(i).encode(), f"bad-{i}")

                async def stored(n: int = i) -> bool:
                    return await _stored(client) == n

                await wait_until(stored, timeout=15)
                if i in (1, 50):
                    counts.append(await _subscriptions(monitor, "notifier"))
    finally:
        await client.close()
    first, last = counts
    assert last == first, f"{first} subscriptions after one dead-letter batch, {last} after 50"


async def test_an_index_outage_longer_than_the_duplicate_window_leaves_one_indexed_copy(
    nats: NatsServer, nc: NatsClient, database_url: str
) -> None:
    """The stream stored the dead letter, the database could not index it, and the retry
    comes after the stream's duplicate window: the retry indexes the copy already
    stored instead of publishing a second one that erasure could never find."""
    import asyncio

    from sqlalchemy import text

    from notifier.core.model import DeadLetter, DeadLetterReason, RawMessage
    from notifier.ingest.deadletter_store import DeadLetterStore
    from notifier.metrics import Metrics
    from notifier.store.db import create_engine
    from notifier.store.migrate import upgrade

    js = nc.jetstream()
    await ensure_streams(js, StreamSettings(duplicate_window_s=0.2))
    engine = create_engine(database_url)
    await upgrade(engine)
    store = DeadLetterStore(engine, Metrics())
    store.start(js)
    body = json.dumps({"event_id": "e1", "customer": {"id": "c-42"}}).encode()
    letter = DeadLetter(
        RawMessage(body, {}, "orders.state.web", 7),
        DeadLetterReason.SCHEMA_VIOLATION,
        "state: field required",
    )
    try:
        async with engine.begin() as conn:  # the index is unreachable: a real database error
            await conn.execute(text("ALTER TABLE dead_letters RENAME TO dead_letters_away"))
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await store.store([letter])
        assert await _stored(nc) == 1
        await asyncio.sleep(0.5)  # past the stream's duplicate window
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE dead_letters_away RENAME TO dead_letters"))
        assert await store.store([letter]) == 1
        assert await _stored(nc) == 1
        async with engine.connect() as conn:
            rows = (
                await conn.execute(select(dead_letters.c.seq, dead_letters.c.customer_id))
            ).all()
        info = await js.stream_info(DEADLETTER_STREAM)
        assert [(r.seq, r.customer_id) for r in rows] == [(info.state.last_seq, "c-42")]
    finally:
        await engine.dispose()
