"""Dead letters and errors carry no personal data they do not need, and the dead
letters that must keep it (refused events, for fixing and replay) are reached by
erasure, retention and triage. Real nats-server, real SMTP (aiosmtpd), SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats as nats_client
import pytest
from aiosmtpd.smtp import SMTP
from httpx import AsyncClient
from nats.aio.client import Client as NatsClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.devtools.natsserver import NatsServer
from notifier.ingest.deadletters import list_dead_letters
from notifier.store.db import create_engine
from notifier.store.deadletter_index import IndexedDeadLetter, record_dead_letters
from notifier.store.maintenance import prune
from notifier.store.migrate import upgrade
from notifier.store.tables import dead_letters, metadata
from notifier.streams import DEADLETTER_STREAM
from tests.integration.helpers import event, order, publish, running, settings_for
from tests.support import wait_until

NAME = "Jane Doe"
EMAIL = "jane.doe@example.com"
PHONE = "+14155550123"
#: what a mail server might answer: the address, and a number to call
REFUSAL = f"550 5.1.1 <{EMAIL}>: no such mailbox; the owner asks to be called on +1 415 555 0123"
TRACES = (EMAIL, "jane.doe@example", NAME, PHONE, "415 555 0123", "4155550123")


class _Refusing:
    """aiosmtpd handler that refuses every recipient, quoting contacts as servers do."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        return REFUSAL


@pytest.fixture
async def refusing_smtp() -> AsyncIterator[int]:
    """A real SMTP server (aiosmtpd) on this loop that refuses every recipient."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(_Refusing(), hostname="mx.test"), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def _customer(customer_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": customer_id,
        "name": NAME,
        "email": EMAIL,
        "phone": PHONE,
        "locale": "en-US",
        "timezone": "Europe/Paris",
        **overrides,
    }


async def _indexed(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(dead_letters).order_by(dead_letters.c.seq))).mappings()
        return [dict(r) for r in rows]


async def _stream_texts(nc: NatsClient) -> list[str]:
    """Every message of the DEADLETTER stream, body and headers, as text."""
    js = nc.jetstream()
    info = await js.stream_info(DEADLETTER_STREAM)
    texts = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(DEADLETTER_STREAM, seq)
        except nats_client.js.errors.NotFoundError:
            continue
        texts.append(json.dumps(msg.headers or {}) + (msg.data or b"").decode())
    return texts


async def _database_texts(engine: AsyncEngine) -> list[str]:
    """Every row of every table, as text."""
    texts = []
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            texts += [repr(tuple(row)) for row in await conn.execute(select(table))]
    return texts


async def _failed(client: AsyncClient, order_id: str) -> bool:
    view = await order(client, order_id)
    return view is not None and [
        n["status"] for n in view["notifications"] if n["channel"] == "email"
    ] == ["failed"]


async def test_erasure_leaves_no_trace_of_the_customer_in_the_database_or_the_dead_letters(
    nats: NatsServer, refusing_smtp: int, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, refusing_smtp)
    nc = await nats_client.connect(nats.url)
    try:
        async with running(settings) as (service, client):
            await publish(
                nats.url,
                event("C-1", "placed", 0, customer=_customer("cust-C")),
                # refused, payload and all: a bad address, an unknown state
                event("C-2", "placed", 0, customer=_customer("cust-C", email="jane.doe@example")),
                event("C-3", "teleported", 0, customer=_customer("cust-C")),
                event(
                    "K-1",
                    "placed",
                    0,
                    customer=_customer(
                        "cust-K", email="keep@example", name="Kim Keep", phone="+33612345678"
                    ),
                ),
            )
            await wait_until(lambda: _failed(client, "C-1"), timeout=20)

            async def indexed() -> bool:
                return len(await _indexed(service.engine)) == 3

            await wait_until(indexed, timeout=15)
            # what there is to erase: the customer's data is in both places
            assert any("jane.doe@example" in t for t in await _stream_texts(nc))
            assert any(NAME in t for t in await _database_texts(service.engine))

            response = await client.delete("/v1/customers/cust-C/personal-data")
            assert response.status_code == 200, response.text
            assert response.json()["dead_letters"] == 2

            stream = await _stream_texts(nc)
            database = await _database_texts(service.engine)
            for trace in TRACES:
                assert not [t for t in stream if trace in t], trace
                assert not [t for t in database if trace in t], trace
            assert not [t for t in stream if "cust-C" in t]
            # the other customer's dead letter, and the notification's, stay
            assert len(stream) == 2
            assert [t for t in stream if "keep@example" in t]
            assert [r["customer_id"] for r in await _indexed(service.engine)] == ["cust-K"]

            again = await client.delete("/v1/customers/cust-C/personal-data")
            assert (again.status_code, again.json()["dead_letters"]) == (200, 0)
    finally:
        await nc.close()


async def test_a_provider_error_is_kept_without_the_contacts_it_quotes(
    nats: NatsServer, refusing_smtp: int, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, refusing_smtp)
    nc = await nats_client.connect(nats.url)
    try:
        async with running(settings) as (_service, client):
            await publish(nats.url, event("R-1", "placed", 0, customer=_customer("cust-R")))
            await wait_until(lambda: _failed(client, "R-1"), timeout=20)
            view = await order(client, "R-1")
            assert view is not None
            (note,) = [n for n in view["notifications"] if n["channel"] == "email"]
            (letter,) = await list_dead_letters(nc.jetstream())
    finally:
        await nc.close()
    assert note["last_error"].startswith("smtp-550: recipient refused: 550 5.1.1")
    assert "<phone>" in note["last_error"]
    body = json.loads(letter.body)
    assert body["notification_id"] == note["id"]
    assert "customer_id" not in body
    for text in (note["last_error"], letter.detail, letter.body):
        for trace in TRACES:
            assert trace not in text, (trace, text)


async def test_triage_lists_dead_letters_and_counts_them_most_frequent_first(
    nats: NatsServer, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None, api_token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    async with running(settings) as (service, client):
        await publish(nats.url, b"{a", b"{b", b"{c", msg_ids=["j1", "j2", "j3"])
        await publish(nats.url, event("U-1", "teleported", 0), msg_ids=["u1"])
        await publish(
            nats.url,
            event(
                "S-1",
                "placed",
                0,
                source="pos",
                customer=_customer("cust-S", email="jane.doe@example"),
            ),
            msg_ids=["s1"],
            subject="orders.state.pos",
        )

        async def five() -> bool:
            return len(await _indexed(service.engine)) == 5

        await wait_until(five, timeout=15)
        assert (await client.get("/v1/dead-letters")).status_code == 401

        everything = (await client.get("/v1/dead-letters", headers=auth)).json()
        assert everything["total"] == 5
        assert everything["by_reason"] == [
            {"reason": "invalid_json", "count": 3},
            {"reason": "schema_violation", "count": 1},
            {"reason": "unknown_state", "count": 1},
        ]
        assert everything["by_source"] == [
            {"source": "web", "count": 4},
            {"source": "pos", "count": 1},
        ]
        seqs = [item["seq"] for item in everything["items"]]
        assert seqs == sorted(seqs, reverse=True) and len(seqs) == 5

        pos = await client.get("/v1/dead-letters", params={"source": "pos"}, headers=auth)
        (item,) = pos.json()["items"]
        assert (item["reason"], item["order_id"], item["customer_id"]) == (
            "schema_violation",
            "S-1",
            "cust-S",
        )
        assert item["detail"] == "customer.email: not an email address"
        assert "jane.doe" not in pos.text

        bad_json = await client.get(
            "/v1/dead-letters", headers=auth, params={"reason": "invalid_json", "limit": 2}
        )
        found = bad_json.json()
        assert (found["total"], len(found["items"])) == (3, 2)
        assert found["by_source"] == [{"source": "web", "count": 3}]
        assert {i["customer_id"] for i in found["items"]} == {None}

        none = await client.get("/v1/dead-letters", params={"reason": "nope"}, headers=auth)
        assert none.json() == {"total": 0, "by_reason": [], "by_source": [], "items": []}
        assert (
            await client.get("/v1/dead-letters", params={"limit": 0}, headers=auth)
        ).status_code == 422


def _indexed_letter(seq: int, received_at: datetime) -> IndexedDeadLetter:
    return IndexedDeadLetter(
        seq=seq,
        reason="invalid_json",
        source="web",
        order_id=None,
        customer_id=f"cust-{seq}",
        original_seq=seq,
        detail="d",
        received_at=received_at,
    )


async def test_retention_forgets_dead_letters_when_the_stream_does(database_url: str) -> None:
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    try:
        await upgrade(engine)
        await record_dead_letters(
            engine,
            [
                _indexed_letter(1, now - timedelta(days=31)),
                _indexed_letter(2, now - timedelta(days=29)),
            ],
        )
        # recorded twice (a redelivered batch): kept once
        await record_dead_letters(engine, [_indexed_letter(2, now)])
        report = await prune(engine, dedup_days=30, notification_days=180, deadletter_days=30)
        assert report.dead_letters == 1
        assert [r["seq"] for r in await _indexed(engine)] == [2]
    finally:
        await engine.dispose()
