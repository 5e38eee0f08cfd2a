"""The in-app feed as the in-app channel writes to it: the item is kept in the database
(once per notification id), then announced on its customer's core NATS subject, so that
whichever replica holds the customer's live stream sends it within moments.

The announcement comes after the item's commit, so a stream that hears of an item can
always find it again; one lost with a crash between the two is announced when the
dispatch is redelivered (the item is found, not made twice), and a stream that was
away catches up from the database (``Last-Event-ID``). The announcer has a NATS
connection of its own: it lives with the channel, wherever that runs (a dispatch
worker process too), and reconnects for ever once it has connected.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as NatsClient
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.contracts.feed import NewFeedItem, feed_subject
from notifier.errors import TransientDeliveryError
from notifier.nats_client import close_for_good, connect_for_life
from notifier.store.feed import add_item

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Announcer:
    """Where announcements go: the NATS server the service uses."""

    nats_url: str
    creds_file: Path | None = None


class FeedDelivery:
    """Keeps in-app items and announces them; the ``FeedWriter`` of the in-app channel."""

    def __init__(self, engine: AsyncEngine, announcer: Announcer) -> None:
        self._engine = engine
        self._announcer = announcer
        self._nc: NatsClient | None = None

    async def start(self) -> None:
        """Connect to NATS (bounded now; once connected, reconnect for ever)."""
        a = self._announcer
        self._nc = await connect_for_life(
            a.nats_url, name="notifier-feed", creds_file=a.creds_file, error_cb=_nats_error
        )

    async def write(self, item: NewFeedItem) -> None:
        """Keep ``item`` unless it is kept already, then announce it."""
        nc = self._nc
        if nc is None:
            raise RuntimeError("FeedDelivery is not running: call start() first")
        try:
            kept = await add_item(self._engine, item)
        except SQLAlchemyError as exc:
            raise TransientDeliveryError(
                f"feed item not stored: {type(exc).__name__}", code="database"
            ) from exc
        if kept is None:
            # erased while this was in flight: the ledger says suppressed already
            log.info("notification %s: customer erased, no feed item kept", item.id)
            return
        stored, _added = kept
        data = json.dumps(stored.announcement(), separators=(",", ":")).encode()
        try:
            await nc.publish(feed_subject(stored.customer_id), data)
        except Exception as exc:  # nats-py raises its own errors and OSError alike
            raise TransientDeliveryError(
                f"feed item stored, not announced: {type(exc).__name__}", code="announce"
            ) from exc

    async def close(self) -> None:
        """Flush announcements in flight and disconnect. A connection that is down (the
        server stopped first, as ``notifier dev`` does on Ctrl-C) cannot be drained:
        it is closed, and what it held is lost only as announcements (the items are
        stored; a stream's look-back re-sends them)."""
        nc, self._nc = self._nc, None
        if nc is not None and (why := await close_for_good(nc)) is not None:
            log.warning("NATS (feed): closed without draining: %s", why)


async def _nats_error(exc: Exception) -> None:
    log.warning("NATS (feed): %s: %s", type(exc).__name__, exc)
