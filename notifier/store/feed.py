"""The in-app feed's rows: adding an item once, reading a feed a page at a time, read
marks, and what a resumed stream missed.

A feed is ordered by ``seq``, which the database assigns and never reuses: a page is
"the ``limit`` items below this seq", so items that arrive while a customer scrolls
land above the first page and never shift the pages after it. A seq is taken at INSERT,
not at COMMIT: a stream that resumes looks back a little as well as forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.contracts.feed import FeedItem, NewFeedItem
from notifier.store.tables import feed_items, notifications

F = feed_items.c
_COLUMNS = (F.seq, F.id, F.customer_id, F.title, F.body, F.link, F.template, F.order_id)


@dataclass(frozen=True, slots=True)
class FeedPage:
    """Items newest first, the customer's unread count, and the seq the next page
    starts below (None: this is the last page)."""

    items: list[FeedItem]
    unread_count: int
    next_before: int | None


def _item(row: Row[Any]) -> FeedItem:
    return FeedItem(
        seq=row.seq,
        id=row.id,
        customer_id=row.customer_id,
        title=row.title,
        body=row.body,
        link=row.link,
        template=row.template,
        order_id=row.order_id,
        created_at=row.created_at,
        read=row.read_at is not None,
    )


def _select() -> Any:
    return select(*_COLUMNS, F.created_at, F.read_at)


async def add_item(engine: AsyncEngine, new: NewFeedItem) -> tuple[FeedItem, bool] | None:
    """Add ``new`` unless an item with its id exists; the stored item, and whether it
    was added now (False: a redelivery found the one made before).

    None when the ledger says its customer was erased meanwhile (the notification has
    lost its recipient): an item written by a send in flight during an erasure would
    outlive it. On PostgreSQL the ledger row is read under a share lock, so an erasure
    either comes first (and is seen) or waits for this item (and deletes it)."""
    values = {
        "id": new.id,
        "customer_id": new.customer_id,
        "order_id": new.order_id,
        "template": new.template,
        "title": new.title,
        "body": new.body,
        "link": new.link,
        "created_at": datetime.now(UTC),
    }
    async with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        ledger = select(notifications.c.recipient).where(notifications.c.id == new.id)
        if postgres:
            ledger = ledger.with_for_update(read=True)
        found = (await conn.execute(ledger)).first()
        if found is not None and found.recipient is None:
            return None
        insert = postgresql_insert if postgres else sqlite_insert
        added = await conn.execute(
            insert(feed_items).values(values).on_conflict_do_nothing(index_elements=["id"])
        )
        row = (await conn.execute(_select().where(F.id == new.id))).one()
    return _item(row), added.rowcount == 1


async def feed_page(
    engine: AsyncEngine, customer_id: str, *, limit: int, before: int | None = None
) -> FeedPage:
    """Up to ``limit`` of the customer's items below seq ``before`` (all when None)."""
    query = _select().where(F.customer_id == customer_id)
    if before is not None:
        query = query.where(F.seq < before)
    query = query.order_by(F.seq.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        unread = (await conn.execute(_unread(customer_id))).scalar_one()
    items = [_item(r) for r in rows[:limit]]
    more = len(rows) > limit
    return FeedPage(items, unread, items[-1].seq if more and items else None)


async def mark_read(engine: AsyncEngine, customer_id: str, ids: Sequence[str] | None) -> int:
    """Mark the customer's items with these ids read (every unread one when None); ids
    of another customer's items are not touched. How many were unread and now are not."""
    query = (
        update(feed_items)
        .where(F.customer_id == customer_id, F.read_at.is_(None))
        .values(read_at=datetime.now(UTC))
    )
    if ids is not None:
        if not ids:
            return 0
        query = query.where(F.id.in_(list(ids)))
    async with engine.begin() as conn:
        return (await conn.execute(query)).rowcount


def _unread(customer_id: str) -> Any:
    return (
        select(func.count())
        .select_from(feed_items)
        .where(F.customer_id == customer_id, F.read_at.is_(None))
    )


async def unread_count(engine: AsyncEngine, customer_id: str) -> int:
    """How many of the customer's items are unread."""
    async with engine.connect() as conn:
        return int((await conn.execute(_unread(customer_id))).scalar_one())


async def newest_items(engine: AsyncEngine, *, limit: int) -> list[FeedItem]:
    """Up to ``limit`` of the newest items of every customer, newest first (what
    ``notifier dev``'s outbox page lists)."""
    query = _select().order_by(F.seq.desc()).limit(limit)
    async with engine.connect() as conn:
        return [_item(r) for r in (await conn.execute(query)).all()]


async def seq_of(engine: AsyncEngine, customer_id: str, item_id: str) -> int | None:
    """The seq of one of the customer's items, None when they have no such item."""
    query = select(F.seq).where(F.customer_id == customer_id, F.id == item_id)
    async with engine.connect() as conn:
        found: int | None = (await conn.execute(query)).scalar_one_or_none()
    return found


async def items_after(
    engine: AsyncEngine, customer_id: str, after: int, *, limit: int
) -> list[FeedItem]:
    """Up to ``limit`` of the customer's items above seq ``after``, oldest first: what a
    stream that last saw ``after`` missed."""
    query = (
        _select().where(F.customer_id == customer_id, F.seq > after).order_by(F.seq).limit(limit)
    )
    async with engine.connect() as conn:
        return [_item(r) for r in (await conn.execute(query)).all()]


async def items_committed_late(
    engine: AsyncEngine, customer_id: str, upto: int, window: timedelta, *, limit: int
) -> list[FeedItem]:
    """Up to ``limit`` of the customer's items below seq ``upto`` created at most
    ``window`` before item ``upto`` was (or after it), oldest first: ones a stream that
    last saw ``upto`` may have missed. A seq is taken at INSERT, so two dispatches at
    once can commit (and announce) out of seq order; ``items_after`` cannot see an item
    that took the lower seq and came second. Empty when there is no item ``upto``."""
    query = select(F.created_at).where(F.customer_id == customer_id, F.seq == upto)
    async with engine.connect() as conn:
        created: datetime | None = (await conn.execute(query)).scalar_one_or_none()
        if created is None:
            return []
        recent = (
            _select()
            .where(F.customer_id == customer_id, F.seq < upto, F.created_at >= created - window)
            .order_by(F.seq.desc())
            .limit(limit)
        )
        rows = (await conn.execute(recent)).all()
    return [_item(r) for r in reversed(rows)]


async def delete_customer_items(conn: AsyncConnection, customer_id: str) -> int:
    """Delete every item of one customer (erasure); how many there were."""
    result = await conn.execute(feed_items.delete().where(F.customer_id == customer_id))
    return result.rowcount


async def prune_items(conn: AsyncConnection, cutoff: datetime) -> int:
    """Delete items created before ``cutoff`` (retention); how many there were."""
    result = await conn.execute(feed_items.delete().where(F.created_at < cutoff))
    return result.rowcount
