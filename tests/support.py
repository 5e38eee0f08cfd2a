"""Helpers shared by tests; fixtures live in ``conftest.py``."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from notifier.devtools.natsserver import free_port

__all__ = ["free_port", "wait_until"]


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,  # noqa: ASYNC109 - the error then names what we waited for
    interval: float = 0.05,
) -> None:
    """Poll ``predicate`` (sync or async) until it is true, instead of sleeping a guess.

    Raises ``TimeoutError`` naming the predicate, so a failing test says what it waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            name = getattr(predicate, "__qualname__", repr(predicate))
            raise TimeoutError(f"condition {name} still false after {timeout}s")
        await asyncio.sleep(interval)
