"""Group commit for dispatch's ledger work: claims and send outcomes that arrive while
the database is busy go into the next transaction together.

Nothing waits on a timer: when the database is free, work is done at once, alone;
when it is busy (an ingest commit, the outbox), the claims and outcomes of every
channel that pile up meanwhile share one transaction. On SQLite, with its one pooled
connection, dispatch then takes one turn at the database between two ingest batches
instead of one turn per message, and a send no longer waits behind a queue of other
sends' commits.

Outcomes are written before claims in a turn: a claim that waits for an earlier
message of its order then sees that message already recorded as sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.delivery.fates import Outcome, record

log = logging.getLogger(__name__)

T = TypeVar("T")
#: work for a transaction: it runs on the shared connection and returns its result
Op = Callable[[AsyncConnection], Awaitable[Any]]
#: pieces of work done in one transaction at most; more wait for the next
MAX_BATCH = 500


class Recorder:
    """Runs dispatch's ledger work many pieces per transaction; each call returns once
    its work is committed (or raises ``SQLAlchemyError`` if it could not be)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._queue: list[tuple[Outcome | Op, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, outcome: Outcome) -> None:
        """Record ``outcome``; returns when it is committed."""
        await self._submit(outcome)

    async def run(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``op`` in the next transaction; its result once that has committed."""
        result: T = await self._submit(op)
        return result

    async def _submit(self, work: Outcome | Op) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="ledger-recorder")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch: list[tuple[Outcome | Op, asyncio.Future[Any]]] = []
            try:
                async with self.engine.begin() as conn:
                    # taken once the connection is ours: what arrived while we waited for
                    # it goes in too
                    batch = self._take()
                    results = await _do(conn, batch)
            except SQLAlchemyError as exc:
                if len(batch) > 1:
                    # one bad row must not cost the others their work
                    await self._one_by_one(batch)
                else:
                    # no connection, or one piece of work that cannot be done
                    _fail(batch or self._take(), exc)
                continue
            except BaseException as exc:
                _fail(batch + self._take(len(self._queue)), exc)
                raise
            _succeed(batch, results)

    def _take(self, limit: int = MAX_BATCH) -> list[tuple[Outcome | Op, asyncio.Future[Any]]]:
        batch, self._queue = self._queue[:limit], self._queue[limit:]
        return batch

    async def _one_by_one(self, batch: list[tuple[Outcome | Op, asyncio.Future[Any]]]) -> None:
        for piece in batch:
            try:
                async with self.engine.begin() as conn:
                    results = await _do(conn, [piece])
            except SQLAlchemyError as exc:
                _fail([piece], exc)
            else:
                _succeed([piece], results)


async def _do(
    conn: AsyncConnection, batch: list[tuple[Outcome | Op, asyncio.Future[Any]]]
) -> list[Any]:
    """Outcomes first (in one :func:`record`), then the other work in order."""
    await record(conn, [work for work, _ in batch if isinstance(work, Outcome)])
    return [None if isinstance(work, Outcome) else await work(conn) for work, _ in batch]


def _succeed(batch: list[tuple[Outcome | Op, asyncio.Future[Any]]], results: list[Any]) -> None:
    for (_, future), result in zip(batch, results, strict=True):
        if not future.done():
            future.set_result(result)


def _fail(batch: list[tuple[Outcome | Op, asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, future in batch:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
