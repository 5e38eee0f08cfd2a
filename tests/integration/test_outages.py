"""Outages of our own infrastructure: nothing is lost, everything resumes by itself."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import nats as nats_client
import pytest

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.ingest.deadletters import list_dead_letters
from tests.integration.conftest import POSTGRES_ADMIN
from tests.integration.helpers import event, order, publish, running, settings_for
from tests.support import wait_until


async def _block(database: str, blocked: bool) -> None:
    admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {not blocked!s}')
        if blocked:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
    finally:
        await admin.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_database_outage_longer_than_the_redelivery_bound_loses_nothing(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    database = database_url.rsplit("/", 1)[1]
    settings = settings_for(
        nats.url, database_url, mail.port, ingest_max_deliver=2, ingest_ack_wait_s=1
    )
    async with running(settings) as (_service, client):
        await publish(nats.url, event("DB-0", "placed", 0))
        await mail.wait_for(1, timeout=15)
        await _block(database, True)
        try:
            await publish(nats.url, *[event(f"DB-{i}", "placed", 0) for i in range(1, 6)])
            # longer than ack_wait x max_deliver: a naked batch would be gone by now
            await asyncio.sleep(5)
            assert len(mail.messages()) == 1
        finally:
            await _block(database, False)
        got = await mail.wait_for(6, timeout=60)
        assert sorted(m.subject for m in got) == sorted(
            f"Your order DB-{i} is confirmed" for i in range(6)
        )
        view = await order(client, "DB-5")
        assert view is not None and view["state"] == "placed"


async def test_an_event_jetstream_gave_up_on_is_dead_lettered(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings):
        await publish(nats.url, event("MD-1", "placed", 0))
        await mail.wait_for(1, timeout=15)
        nc = await nats_client.connect(nats.url)
        try:
            # what nats-server publishes when a message ran out of deliveries
            advisory = {
                "type": "io.nats.jetstream.advisory.v1.max_deliver",
                "stream": "ORDERS",
                "consumer": "notifier-ingest",
                "stream_seq": 1,
                "deliveries": 20,
            }
            await nc.publish(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.ORDERS.notifier-ingest",
                json.dumps(advisory).encode(),
            )
            js = nc.jetstream()

            async def dead_lettered() -> bool:
                return len(await list_dead_letters(js)) == 1

            await wait_until(dead_lettered, timeout=10)
            (letter,) = await list_dead_letters(js)
        finally:
            await nc.close()
    assert letter.reason == "max_deliveries"
    assert letter.original_seq == 1
    assert json.loads(letter.body)["event_id"] == "MD-1-placed-0"
