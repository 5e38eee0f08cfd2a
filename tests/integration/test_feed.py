"""The in-app feed end to end: the channel keeps one item per notification, the feed
API pages, counts and marks, customer tokens open only their own feed, the live
stream sends new items (on every replica) and resumes from ``Last-Event-ID``, and
erasure takes the items with the customer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import AsyncClient, Response
from nats import connect as nats_connect
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.testing import CliRunner

from notifier import signing
from notifier.channels.base import OutboundMessage
from notifier.cli import app as cli_app
from notifier.contracts.feed import NewFeedItem
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.service import Service
from notifier.store.feed import add_item
from notifier.store.tables import feed_items
from tests.integration.helpers import event, order, publish, running, serving, settings_for
from tests.support import free_port, wait_until

SECRET = "feed-secret-0123456789abcdef"
TOKEN = "operator-token-0123456789"


def _item(customer: str, n: int) -> NewFeedItem:
    return NewFeedItem(
        id=f"n-{customer}-{n}",
        customer_id=customer,
        order_id=f"O-{n}",
        template="shipped",
        title=f"title {n}",
        body=f"body {n}",
        link=None,
    )


def _message(customer: str, nid: str) -> OutboundMessage:
    return OutboundMessage(
        notification_id=nid,
        channel="inapp",
        to=customer,
        text="Your order is on its way.",
        subject="Shipped",
        html="https://shop.example/track/O-1?t=x",
        order_id="O-1",
        template="shipped",
        state="shipped",
    )


async def _count(service: Service, customer: str) -> int:
    query = select(func.count()).select_from(feed_items).where(feed_items.c.customer_id == customer)
    async with service.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def test_a_notification_becomes_one_feed_item_however_often_it_is_sent(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (service, client):
        await publish(nats.url, event("F-1", "shipped", 0))
        feed: dict[str, Any] = {}

        async def item_arrived() -> bool:
            nonlocal feed
            feed = (await client.get("/v1/customers/cust-F-1/feed")).json()
            return len(feed["items"]) == 1

        await wait_until(item_arrived, timeout=15)
        item = feed["items"][0]
        assert item["template"] == "shipped" and item["order_id"] == "F-1"
        assert item["title"] == "Your order has shipped"
        assert "DHL number: JD0001" in item["body"]
        assert item["link"] is None and item["read"] is False
        assert feed["unread_count"] == 1

        async def ledger_sent() -> bool:
            view = await order(client, "F-1")
            found = [n for n in (view or {}).get("notifications", []) if n["id"] == item["id"]]
            return bool(found) and found[0]["status"] == "sent"

        await wait_until(ledger_sent, timeout=10)
        # the dispatch redelivered (a crash after the item, before the ledger said sent)
        adapter = service.dispatcher.workers["inapp"].adapter
        for _ in range(3):
            receipt = await adapter.send(_message("cust-F-1", item["id"]))
            assert receipt.provider_message_id == item["id"]
        assert await _count(service, "cust-F-1") == 1
        # erased, then a send that was in flight lands: it keeps no item
        erased = (await client.delete("/v1/customers/cust-F-1/personal-data")).json()
        assert erased["feed_items"] == 1
        await adapter.send(_message("cust-F-1", item["id"]))
        assert await _count(service, "cust-F-1") == 0


async def test_pages_are_stable_newest_first_and_read_marks_stay_with_their_customer(
    nats: NatsServer, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None)
    async with running(settings) as (service, client):
        for n in range(5):
            await add_item(service.engine, _item("ada", n))
        await add_item(service.engine, _item("bob", 0))
        first = (await client.get("/v1/customers/ada/feed", params={"limit": 2})).json()
        assert [i["id"] for i in first["items"]] == ["n-ada-4", "n-ada-3"]
        assert first["unread_count"] == 5
        # a new item arrives while the customer scrolls: later pages do not shift
        await add_item(service.engine, _item("ada", 5))
        second = (
            await client.get(
                "/v1/customers/ada/feed", params={"limit": 2, "cursor": first["next_cursor"]}
            )
        ).json()
        assert [i["id"] for i in second["items"]] == ["n-ada-2", "n-ada-1"]
        last = (
            await client.get(
                "/v1/customers/ada/feed", params={"limit": 2, "cursor": second["next_cursor"]}
            )
        ).json()
        assert [i["id"] for i in last["items"]] == ["n-ada-0"]
        assert last["next_cursor"] is None

        marked = await client.post(
            "/v1/customers/ada/feed/read", json={"ids": ["n-ada-4", "n-bob-0", "nope"]}
        )
        assert marked.json() == {"marked": 1, "unread_count": 5}
        bob = (await client.get("/v1/customers/bob/feed")).json()
        assert bob["unread_count"] == 1 and bob["items"][0]["read"] is False
        again = await client.post("/v1/customers/ada/feed/read", json={"ids": ["n-ada-4"]})
        assert again.json() == {"marked": 0, "unread_count": 5}
        everything = await client.post("/v1/customers/ada/feed/read", json={"all": True})
        assert everything.json() == {"marked": 5, "unread_count": 0}

        for bad in ({}, {"ids": []}, {"all": False}, {"ids": ["a"], "all": True}, {"x": 1}):
            refused = await client.post("/v1/customers/ada/feed/read", json=bad)
            assert refused.status_code == 422, bad
        cursor = await client.get("/v1/customers/ada/feed", params={"cursor": "garbage!"})
        assert cursor.status_code == 422
        assert cursor.json()["detail"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_customer_tokens_open_their_own_feed_and_nothing_else(
    nats: NatsServer, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None, api_token=TOKEN, feed_secret=SECRET)
    later = int(time.time()) + 600
    ada = signing.mint(SECRET, "feed", "ada", later)
    bob = signing.mint(SECRET, "feed", "bob", later)
    expired = signing.mint(SECRET, "feed", "ada", int(time.time()) - 1)
    track = signing.mint(SECRET, "track", "ada", later)
    async with running(settings) as (service, client):
        await add_item(service.engine, _item("ada", 0))

        async def get(token: str | None, *, query: bool = False) -> Response:
            if query:
                return await client.get("/v1/customers/ada/feed", params={"token": token})
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return await client.get("/v1/customers/ada/feed", headers=headers)

        assert (await get(TOKEN)).status_code == 200
        assert (await get(ada)).status_code == 200
        assert (await get(ada, query=True)).status_code == 200
        assert (await get(bob)).status_code == 403
        assert (await get(bob, query=True)).status_code == 403
        assert (await get(track)).status_code == 403  # another purpose
        for refused in (expired, "garbage", None):
            answer = await get(refused)
            assert answer.status_code == 401, refused
            assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert (await get(expired)).json()["detail"] == "the token has expired"
        read = await client.post(
            "/v1/customers/ada/feed/read",
            json={"all": True},
            headers={"Authorization": f"Bearer {bob}"},
        )
        assert read.status_code == 403
        # the customer token opens the feed only, not the rest of the API
        assert (
            await client.get("/v1/orders/O-0", headers={"Authorization": f"Bearer {ada}"})
        ).status_code == 401

    without = settings_for(nats.url, database_url, None, api_token=TOKEN)
    async with running(without) as (_service, client):
        answer = await client.get(
            "/v1/customers/ada/feed", headers={"Authorization": f"Bearer {ada}"}
        )
        assert answer.status_code == 401
        assert "NOTIFIER_FEED_SECRET is not set" in answer.json()["detail"]


async def _events(lines: AsyncIterator[str], count: int) -> list[dict[str, str]]:
    """The next ``count`` SSE events (comments skipped), each as its fields; each is
    expected within a second of its commit, so 10 s is plenty on a busy machine."""
    found: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(10):
        async for line in lines:
            if line == "":
                if fields:
                    found.append(fields)
                    fields = {}
                    if len(found) == count:
                        return found
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
    raise AssertionError(f"the stream ended after {len(found)} of {count} events")


@contextlib.asynccontextmanager
async def _stream(
    client: AsyncClient, customer: str, **params: str
) -> AsyncIterator[AsyncIterator[str]]:
    headers = {}
    if "last_event_id" in params:
        headers["Last-Event-ID"] = params.pop("last_event_id")
    async with client.stream(
        "GET", f"/v1/customers/{customer}/feed/stream", params=params, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        # the stream says it is connected once it listens: nothing after this is missed
        lines = response.aiter_lines()
        async with asyncio.timeout(10):
            async for line in lines:
                if line.startswith(": connected"):
                    break
        yield lines


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_stream_sends_new_items_live_and_resumes_after_the_last_one_seen(
    nats: NatsServer, database_url: str
) -> None:
    settings = settings_for(
        nats.url,
        database_url,
        None,
        http_port=free_port(),
        api_token=TOKEN,
        feed_secret=SECRET,
        feed_keepalive_s=0.2,
    )
    token = signing.mint(SECRET, "feed", "cust-S-1", int(time.time()) + 600)
    async with serving(settings) as (_service, client):
        async with _stream(client, "cust-S-1", token=token) as live:
            started = time.monotonic()
            # apart: "shipped" arriving with "delivered" would be stale, never shown
            await publish(nats.url, event("S-1", "shipped", 0))
            got = await _events(live, 1)
            await publish(nats.url, event("S-1", "delivered", 1))
            got += await _events(live, 1)
            assert time.monotonic() - started < 10
        items = [json.loads(e["data"]) for e in got]
        assert [e["event"] for e in got] == ["item", "item"]
        assert [e["id"] for e in got] == [i["id"] for i in items]
        assert [i["template"] for i in items] == ["shipped", "delivered"]

        await publish(nats.url, event("S-1", "refunded", 2))
        # back after the first item: the second and what came since, from the database
        async with _stream(client, "cust-S-1", token=token, last_event_id=got[0]["id"]) as again:
            resumed = await _events(again, 2)
        assert [json.loads(e["data"])["template"] for e in resumed] == ["delivered", "refunded"]

        other = signing.mint(SECRET, "feed", "someone-else", int(time.time()) + 600)
        refused = await client.get(
            "/v1/customers/cust-S-1/feed/stream", params={"token": other}, timeout=5
        )
        assert refused.status_code == 403


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_an_item_reaches_a_stream_on_the_other_replica(
    nats: NatsServer, database_url: str
) -> None:
    def replica() -> Any:
        return settings_for(nats.url, database_url, None, http_port=free_port())

    async with (
        serving(replica()) as (first, first_client),
        serving(replica()) as (_second, second_client),
        _stream(second_client, "cust-R-1") as on_second,
        _stream(first_client, "cust-R-1") as on_first,
    ):
        # written by the first process's channel; its stream is served by the other
        adapter = first.dispatcher.workers["inapp"].adapter
        await adapter.send(_message("cust-R-1", "n-replica-1"))
        got = await _events(on_second, 1)
        assert got[0]["id"] == "n-replica-1"
        assert (await _events(on_first, 1))[0]["id"] == "n-replica-1"
        # and one that the pipeline dispatches, on whichever replica
        await publish(nats.url, event("R-1", "shipped", 0))
        both = [await _events(s, 1) for s in (on_second, on_first)]
        assert both[0][0]["id"] == both[1][0]["id"]
        assert json.loads(both[0][0]["data"])["template"] == "shipped"


async def test_erasure_removes_the_customers_feed_items(
    nats: NatsServer, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None)
    async with running(settings) as (service, client):
        for n in range(3):
            await add_item(service.engine, _item("ada", n))
        await add_item(service.engine, _item("bob", 0))
        erased = (await client.delete("/v1/customers/ada/personal-data")).json()
        assert erased["feed_items"] == 3
        assert (await client.get("/v1/customers/ada/feed")).json()["items"] == []
        assert await _count(service, "bob") == 1


def test_feed_token_prints_a_token_for_one_customer(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.delenv("NOTIFIER_FEED_SECRET", raising=False)
    refused = runner.invoke(cli_app, ["feed-token", "ada"])
    assert refused.exit_code == 2
    assert "NOTIFIER_FEED_SECRET is not set" in refused.output
    monkeypatch.setenv("NOTIFIER_FEED_SECRET", SECRET)
    printed = runner.invoke(cli_app, ["feed-token", "ada", "--ttl", "120"])
    assert printed.exit_code == 0, printed.output
    token = printed.output.strip()
    assert signing.check(SECRET, "feed", "ada", token) is None
    assert signing.check(SECRET, "feed", "bob", token) is signing.TokenProblem.FORGED
    assert signing.check(SECRET, "feed", "ada", token, now=time.time() + 121) is not None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_slow_stream_catches_up_from_the_database_and_ends_when_closed(
    nats: NatsServer, database_url: str
) -> None:
    from notifier.api.feed_stream import FeedStreams
    from notifier.delivery.feed import Announcer, FeedDelivery
    from notifier.store.db import create_engine
    from notifier.store.migrate import upgrade

    engine = create_engine(database_url)
    await upgrade(engine)
    nc = await nats_connect(nats.url)
    feed = FeedDelivery(engine, Announcer(nats.url))
    await feed.start()
    streams = FeedStreams(engine, lambda: nc, keepalive_s=0.1, queue_size=2)
    try:
        # items from before the stream: catching up does not look back at them
        for n in (100, 101):
            await feed.write(_item("ada", n))
        events = streams.events("ada", None)
        assert await anext(events) == ": connected\n\n"
        # nobody reads while eight items are announced: two wait, the rest overflow
        for n in range(8):
            await feed.write(_item("ada", n))
        await nc.flush()
        await asyncio.sleep(0.2)
        texts = [await anext(events) for _ in range(8)]
        ids = [t.split("\n")[0].removeprefix("id: ") for t in texts]
        assert ids == [f"n-ada-{n}" for n in range(8)]  # each once, in order
        assert await anext(events) == ": keep-alive\n\n"
        streams.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), 5)
        assert not streams.available()
    finally:
        await feed.close()
        await nc.close()
        await engine.dispose()


async def _insert(conn: AsyncConnection, item: NewFeedItem, created_at: datetime) -> None:
    """An item as the in-app channel writes it, in a transaction the test holds open."""
    await conn.execute(
        feed_items.insert().values(
            id=item.id,
            customer_id=item.customer_id,
            order_id=item.order_id,
            template=item.template,
            title=item.title,
            body=item.body,
            link=item.link,
            created_at=created_at,
        )
    )


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_resumed_stream_sends_an_earlier_item_that_committed_after_the_one_seen(
    nats: NatsServer, database_url: str
) -> None:
    from notifier.api.feed_stream import RESEND_WINDOW, FeedStreams
    from notifier.store.db import create_engine
    from notifier.store.migrate import upgrade

    engine = create_engine(database_url)
    await upgrade(engine)
    nc = await nats_connect(nats.url)
    streams = FeedStreams(engine, lambda: nc, keepalive_s=0.5, queue_size=10)
    try:
        old = _item("ada", 0)
        async with engine.begin() as conn:
            await _insert(conn, old, datetime.now(UTC) - 2 * RESEND_WINDOW)
        # two dispatches at once: the first takes the lower seq and commits last
        late = _item("ada", 1)
        async with engine.begin() as slow:
            await _insert(slow, late, datetime.now(UTC))
            kept = await add_item(engine, _item("ada", 2))
            assert kept is not None
            seen, _ = kept
        lower = select(feed_items.c.seq).where(feed_items.c.id == late.id)
        async with engine.connect() as conn:
            assert (await conn.execute(lower)).scalar_one() < seen.seq
        # a client saw the second live, went away before the first committed, and is back
        events = streams.events("ada", seen.id)
        assert await anext(events) == ": connected\n\n"
        resent = await asyncio.wait_for(anext(events), 5)
        assert resent.startswith(f"id: {late.id}\n"), resent
        # only what may have committed late: not the one seen, nor one long before it
        assert await asyncio.wait_for(anext(events), 5) == ": keep-alive\n\n"
        await events.aclose()
        # a new stream (no Last-Event-ID) starts after what is there: it sends none of it
        fresh = streams.events("ada", None)
        assert await anext(fresh) == ": connected\n\n"
        assert await asyncio.wait_for(anext(fresh), 5) == ": keep-alive\n\n"
        await fresh.aclose()
    finally:
        await nc.close()
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_stopping_service_ends_its_streams_rather_than_wait_for_them(
    nats: NatsServer, database_url: str, tmp_path: Path
) -> None:
    # uvicorn waits up to 30 s for open responses; a live stream never ends by itself
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env |= {
        "NOTIFIER_ENVIRONMENT": "test",
        "NOTIFIER_NATS_URL": nats.url,
        "NOTIFIER_DATABASE_URL": database_url,
        "NOTIFIER_HTTP_PORT": str(port),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def up() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(up, timeout=30)
            async with _stream(client, "ada") as lines:
                process.send_signal(signal.SIGTERM)
                started = time.monotonic()
                async with asyncio.timeout(15):
                    async for _line in lines:
                        pass  # the server ends the stream
            code = await asyncio.wait_for(process.wait(), 15)
            assert code == 0
            assert time.monotonic() - started < 15
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_retention_deletes_feed_items_with_the_ledger(
    nats: NatsServer, database_url: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from notifier.store.maintenance import prune

    settings = settings_for(nats.url, database_url, None)
    async with running(settings) as (service, _client):
        await add_item(service.engine, _item("ada", 0))
        now = datetime.now(UTC)
        kept = await prune(service.engine, dedup_days=30, notification_days=180, now=now)
        assert kept.feed_items == 0 and await _count(service, "ada") == 1
        later = now + timedelta(days=181)
        gone = await prune(service.engine, dedup_days=30, notification_days=180, now=later)
        assert gone.feed_items == 1 and await _count(service, "ada") == 0
