"""Live feed streams (Server-Sent Events): each new item of one customer's feed, as it
is committed, to every connection that follows that feed, on whichever replica.

A connection subscribes to the customer's core NATS subject (the in-app channel
announces each item there after its commit) before it reads anything, so nothing falls
between reading and listening. ``Last-Event-ID`` (or ``?last_event_id=``) names the
last item a client saw: what came after it is read from the database first, and so
is what came a little before it (items of the ``RESEND_WINDOW`` before it, which the
client may already hold: a seq is taken at INSERT, so an item with a lower seq can
commit, and be announced, after the one the client saw). The stream is therefore
at-least-once across a reconnection, and clients drop ids they hold. Each
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
from datetime import timedelta
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.contracts.feed import FeedItem, feed_subject
from notifier.store.feed import feed_page, items_after, items_committed_late, seq_of

log = logging.getLogger(__name__)

#: item ids one connection remembers having sent, to send none twice
SEEN_IDS = 1000
#: items read from the database at a time while catching up
CATCH_UP_PAGE = 100
#: how far before the last item seen a catch-up looks for items that committed after
#: it: far more than a dispatch takes from making an item to announcing it
RESEND_WINDOW = timedelta(seconds=60)


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
            resumed = await self._start(customer_id, conn, last_event_id)
            yield ": connected\n\n"
            if resumed:
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

    async def _start(self, customer_id: str, conn: _Connection, last_event_id: str | None) -> bool:
        """Where the stream starts: after ``last_event_id`` when the customer has that
        item (True: catch up first), else after their newest item."""
        if last_event_id:
            resume = await seq_of(self._engine, customer_id, last_event_id)
            if resume is not None:
                conn.last_seq = resume
                conn.first_time(last_event_id)
                return True
        newest = await feed_page(self._engine, customer_id, limit=1)
        if newest.items:
            await self._held_already(customer_id, conn, newest.items[0])
        return False

    async def _held_already(self, customer_id: str, conn: _Connection, newest: FeedItem) -> None:
        """A new stream starts after ``newest``: what a catch-up would look back at was
        there before the client connected, so it is not sent."""
        conn.last_seq = newest.seq
        conn.first_time(newest.id)
        before = await items_committed_late(
            self._engine, customer_id, newest.seq, RESEND_WINDOW, limit=CATCH_UP_PAGE
        )
        for item in before:
            conn.first_time(item.id)

    async def _catch_up(self, customer_id: str, conn: _Connection) -> AsyncIterator[str]:
        """From the database, oldest first: the items of the ``RESEND_WINDOW`` before
        ``conn.last_seq`` not sent yet on this connection, then every item after it."""
        late = await items_committed_late(
            self._engine, customer_id, conn.last_seq, RESEND_WINDOW, limit=CATCH_UP_PAGE
        )
        for item in late:
            if conn.first_time(item.id):
                yield sse_item(item.id, item.as_json())
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
