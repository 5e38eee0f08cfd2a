"""Live feed streams (Server-Sent Events): each new item of one customer's feed, as it
is committed, to every connection that follows that feed, on whichever replica.

A connection subscribes to the customer's core NATS subject (the in-app channel
announces each item there after its commit) before it reads anything, so nothing falls
between reading and listening. ``Last-Event-ID`` (or ``?last_event_id=``) names the
last item a client saw: what came after it is read from the database first. Each
connection has a bounded queue; one that overflows (a slow client) drops what arrives
and catches up from the database once it has sent what it holds, so a slow reader
costs memory for ``queue_size`` items, and loses none. Items are sent once per
connection, however they reached it (caught up, announced, announced again after a
redelivery). A comment goes out every ``keepalive_s`` so proxies keep the connection
open; :meth:`FeedStreams.close` ends every stream when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.contracts.feed import FeedItem, feed_subject
from notifier.store.feed import feed_page, items_after, seq_of

log = logging.getLogger(__name__)

#: item ids one connection remembers having sent, to send none twice
SEEN_IDS = 1000
#: items read from the database at a time while catching up
CATCH_UP_PAGE = 100


def sse_item(item_id: str, item: dict[str, Any]) -> str:
    """One item as an SSE event: ``id``, ``event: item`` and the ITEM as JSON."""
    data = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
    return f"id: {item_id}\nevent: item\ndata: {data}\n\n"


@dataclass
class _Connection:
    queue: asyncio.Queue[tuple[int, dict[str, Any]]]
    #: the queue overflowed: catch up from the database after what it holds
    behind: bool = False
    last_seq: int = 0
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def first_time(self, item_id: str) -> bool:
        if item_id in self.seen:
            return False
        self.seen[item_id] = None
        if len(self.seen) > SEEN_IDS:
            self.seen.popitem(last=False)
        return True


class FeedStreams:
    """The live streams this process serves."""

    def __init__(
        self,
        engine: AsyncEngine,
        nats: Callable[[], NatsClient | None],
        *,
        keepalive_s: float,
        queue_size: int,
    ) -> None:
        self._engine = engine
        self._nats = nats
        self._keepalive_s = keepalive_s
        self._queue_size = queue_size
        self._closing = asyncio.Event()

    def available(self) -> bool:
        """Whether new streams can be served now (NATS is connected, not shutting down)."""
        nc = self._nats()
        return nc is not None and nc.is_connected and not self._closing.is_set()

    def close(self) -> None:
        """End every stream (the server is stopping); clients reconnect elsewhere."""
        self._closing.set()

    async def events(self, customer_id: str, last_event_id: str | None) -> AsyncIterator[str]:
        """The stream's text: what came after ``last_event_id``, then each new item."""
        nc = self._nats()
        if nc is None:
            raise RuntimeError("connect to NATS first: call Service.start()")
        conn = _Connection(asyncio.Queue(self._queue_size))

        async def heard(msg: Msg) -> None:
            try:
                body = json.loads(msg.data)
                announced = (int(body["seq"]), dict(body["item"]))
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable feed announcement dropped")
                return
            try:
                conn.queue.put_nowait(announced)
            except asyncio.QueueFull:
                conn.behind = True

        sub = await nc.subscribe(feed_subject(customer_id), cb=heard)
        closing = asyncio.create_task(self._closing.wait())
        try:
            resume = None
            if last_event_id:
                resume = await seq_of(self._engine, customer_id, last_event_id)
            if resume is None:
                newest = await feed_page(self._engine, customer_id, limit=1)
                conn.last_seq = newest.items[0].seq if newest.items else 0
            else:
                conn.last_seq = resume
            yield ": connected\n\n"
            if resume is not None:
                async for text in self._catch_up(customer_id, conn):
                    yield text
            while not self._closing.is_set():
                got = asyncio.create_task(conn.queue.get())
                done, _ = await asyncio.wait(
                    {got, closing}, timeout=self._keepalive_s, return_when=asyncio.FIRST_COMPLETED
                )
                if got not in done:
                    got.cancel()
                    if closing not in done:
                        yield ": keep-alive\n\n"
                    continue
                seq, item = got.result()
                if conn.first_time(str(item.get("id"))):
                    conn.last_seq = max(conn.last_seq, seq)
                    yield sse_item(str(item["id"]), item)
                if conn.behind and conn.queue.empty():
                    conn.behind = False
                    async for text in self._catch_up(customer_id, conn):
                        yield text
        finally:
            closing.cancel()
            with contextlib.suppress(Exception):  # the connection may be gone already
                await sub.unsubscribe()

    async def _catch_up(self, customer_id: str, conn: _Connection) -> AsyncIterator[str]:
        """Every item after ``conn.last_seq`` from the database, oldest first."""
        while True:
            page: list[FeedItem] = await items_after(
                self._engine, customer_id, conn.last_seq, limit=CATCH_UP_PAGE
            )
            for item in page:
                conn.last_seq = max(conn.last_seq, item.seq)
                if conn.first_time(item.id):
                    yield sse_item(item.id, item.as_json())
            if len(page) < CATCH_UP_PAGE:
                return
