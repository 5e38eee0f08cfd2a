"""The ``dead_letters`` table: which refused event sits where in the DEADLETTER stream.

The stream keeps the payload, for operators to fix and replay; this index keeps what
it takes to find the payload again without reading the stream: for erasure (a
customer's dead letters), retention (the old ones) and triage (how many, of which
reason, from which source). A row is written once its stream message is stored, and
before the event is acked; it is removed when its message is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, desc, func, select, true
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.store.tables import dead_letters

D = dead_letters.c


@dataclass(frozen=True, slots=True)
class IndexedDeadLetter:
    """One event dead letter as the index knows it (no payload: that is in the stream)."""

    seq: int
    reason: str
    source: str
    order_id: str | None
    customer_id: str | None
    original_seq: int
    detail: str
    received_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "seq": self.seq,
            "reason": self.reason,
            "source": self.source,
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "original_seq": self.original_seq,
            "detail": self.detail,
            "received_at": self.received_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Triage:
    """Dead letters that match, newest first, and how they add up, most frequent first."""

    total: int
    by_reason: list[tuple[str, int]]
    by_source: list[tuple[str, int]]
    items: list[IndexedDeadLetter]

    def counts(self) -> dict[str, Any]:
        """The counts, JSON-friendly and still most frequent first."""
        return {
            "total": self.total,
            "by_reason": [{"reason": r, "count": n} for r, n in self.by_reason],
            "by_source": [{"source": s, "count": n} for s, n in self.by_source],
        }


def _row(letter: IndexedDeadLetter) -> dict[str, Any]:
    # bounded to the columns, so no payload can make the insert fail for good
    return {
        "seq": letter.seq,
        "reason": letter.reason[:40],
        "source": letter.source[:100],
        "order_id": letter.order_id[:200] if letter.order_id else None,
        "customer_id": letter.customer_id[:200] if letter.customer_id else None,
        "original_seq": letter.original_seq,
        "detail": letter.detail[:2000],
        "received_at": letter.received_at,
    }


async def record_dead_letters(engine: AsyncEngine, letters: Sequence[IndexedDeadLetter]) -> None:
    """Index the stored dead letters; one indexed before (a redelivered batch, whose
    republished dead letter the stream deduplicated to the same sequence) is left as is."""
    if not letters:
        return
    async with engine.begin() as conn:
        insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(
            insert(dead_letters).on_conflict_do_nothing(index_elements=["seq"]),
            [_row(letter) for letter in letters],
        )


def _where(reason: str | None, source: str | None) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = true()
    if reason is not None:
        condition = condition & (D.reason == reason)
    if source is not None:
        condition = condition & (D.source == source)
    return condition


async def _counts(
    conn: AsyncConnection, column: Any, where: ColumnElement[bool]
) -> list[tuple[str, int]]:
    n = func.count().label("n")
    rows = await conn.execute(
        select(column, n).where(where).group_by(column).order_by(desc(n), column)
    )
    return [(str(value), int(count)) for value, count in rows]


async def dead_letter_triage(
    engine: AsyncEngine,
    *,
    reason: str | None = None,
    source: str | None = None,
    limit: int = 100,
) -> Triage:
    """The newest ``limit`` event dead letters of this reason and source (either may be
    left open), with counts over all that match by reason and by source."""
    where = _where(reason, source)
    async with engine.connect() as conn:
        by_reason = await _counts(conn, D.reason, where)
        by_source = await _counts(conn, D.source, where)
        rows = (
            (
                await conn.execute(
                    select(dead_letters).where(where).order_by(D.seq.desc()).limit(limit)
                )
            )
            .mappings()
            .all()
        )
    items = [
        IndexedDeadLetter(
            seq=r["seq"],
            reason=r["reason"],
            source=r["source"],
            order_id=r["order_id"],
            customer_id=r["customer_id"],
            original_seq=r["original_seq"],
            detail=r["detail"],
            # SQLite hands back naive datetimes; everything is stored in UTC
            received_at=r["received_at"]
            if r["received_at"].tzinfo
            else r["received_at"].replace(tzinfo=UTC),
        )
        for r in rows
    ]
    return Triage(
        total=sum(n for _, n in by_reason), by_reason=by_reason, by_source=by_source, items=items
    )


async def customer_dead_letters(engine: AsyncEngine, customer_id: str) -> list[int]:
    """The DEADLETTER sequences of one customer's refused events."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(D.seq).where(D.customer_id == customer_id).order_by(D.seq))
        return [seq for (seq,) in rows]


async def forget_dead_letters(engine: AsyncEngine, seqs: Sequence[int]) -> None:
    """Drop the index rows of dead letters whose stream messages are gone."""
    async with engine.begin() as conn:
        for start in range(0, len(seqs), 500):
            await conn.execute(delete(dead_letters).where(D.seq.in_(seqs[start : start + 500])))


async def prune_dead_letters(conn: AsyncConnection, cutoff: datetime) -> int:
    """Drop the rows the stream's own max age has removed (or is about to)."""
    result = await conn.execute(delete(dead_letters).where(D.received_at < cutoff))
    return int(result.rowcount)
