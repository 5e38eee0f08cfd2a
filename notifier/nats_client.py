"""Short-lived NATS connections for commands (emit, dlq): fail in seconds, quietly.

nats-py retries the first connection ``max_reconnect_attempts`` times (60 by default,
two seconds apart) even with ``allow_reconnect=False``, and its default error
callback prints a traceback per attempt; a command pointed at the wrong URL would
hang for two minutes. The service itself connects in ``notifier.service``.
"""

from __future__ import annotations

import nats
from nats.aio.client import Client


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
