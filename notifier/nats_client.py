"""NATS connections: short-lived ones for commands (emit, dlq), which fail in seconds,
quietly, and the service's, which are bounded at start-up and reconnect for ever after.

nats-py retries the first connection ``max_reconnect_attempts`` times (60 by default,
two seconds apart) even with ``allow_reconnect=False``, and its default error
callback prints a traceback per attempt; a command pointed at the wrong URL would
hang for two minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
from nats.aio.client import Client

from notifier.errors import StartupError

#: how long a service process waits for NATS at start-up before it gives up
STARTUP_TIMEOUT_S = 15.0


async def _quiet(_exc: Exception) -> None:
    return None


async def connect_once(url: str, *, name: str = "notifier-cli", timeout_s: float = 5.0) -> Client:
    """Connect or raise (``NoServersError`` or ``OSError``) within about ``timeout_s``."""
    client: Client = await nats.connect(
        url,
        name=name,
        allow_reconnect=False,
        connect_timeout=timeout_s,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.2,
        error_cb=_quiet,
    )
    return client


async def connect_for_life(
    url: str,
    *,
    name: str,
    creds_file: Path | None,
    error_cb: Callable[[Exception], Awaitable[None]],
    disconnected_cb: Callable[[], Awaitable[None]] | None = None,
    reconnected_cb: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """A service connection: once connected, it reconnects for ever; at start-up it
    gives up after ``STARTUP_TIMEOUT_S``, so a wrong URL is one clear line
    (``StartupError``), not a silent hang."""
    try:
        client: Client = await asyncio.wait_for(
            nats.connect(
                url,
                name=name,
                connect_timeout=5,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                user_credentials=str(creds_file) if creds_file else None,
                error_cb=error_cb,
                disconnected_cb=disconnected_cb,
                reconnected_cb=reconnected_cb,
            ),
            STARTUP_TIMEOUT_S,
        )
    except TimeoutError:
        raise StartupError(
            f"NATS at {url} unreachable for {STARTUP_TIMEOUT_S:.0f} s ({name})"
        ) from None
    return client


async def close_for_good(nc: Client) -> str | None:
    """Drain a long-lived connection (what it still holds goes out), or, when the
    server is already gone (stopped first, as ``notifier dev`` on Ctrl-C does), close
    it: a connection that is reconnecting cannot be drained, and closing one whose
    socket was lost raises from the flush nats-py attempts. Never raises; returns why
    it was not drained, if it was not."""
    if nc.is_closed:
        return None
    why: str | None = None
    if nc.is_connecting or nc.is_reconnecting:
        why = "the server was gone"
    else:
        try:
            await nc.drain()
        except Exception as exc:  # nats-py's own errors and OSError alike
            why = type(exc).__name__
    if why is not None and not nc.is_closed:
        # the socket is gone: the connection ends closed all the same
        with contextlib.suppress(Exception):
            await nc.close()
    return why
