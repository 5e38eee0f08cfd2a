"""Pulling from a JetStream consumer without waiting for a full batch.

nats-py's ``fetch(n, timeout)``, when nothing is waiting at the moment it is called,
sends a lingering pull request and then waits for all ``n`` messages until the
timeout runs out, even after the first one has arrived. A dispatcher fetching 50
at a time with a 0.5 s timeout therefore held a lone message for up to half a
second: measured with ``notifier bench`` at 50 events/s, publish-to-provider p50
was ~300 ms. Here the wait is for one message only; whatever else the consumer has
ready (JetStream says how many in each message's metadata) is then taken at once.
"""

from __future__ import annotations

import contextlib

from nats.aio.msg import Msg
from nats.js import JetStreamContext


async def fetch_ready(
    sub: JetStreamContext.PullSubscription, batch: int, wait_s: float
) -> list[Msg]:
    """Up to ``batch`` messages: wait up to ``wait_s`` for the first (``TimeoutError`` if
    none comes), then add those already waiting without waiting for more."""
    messages: list[Msg] = await sub.fetch(1, timeout=wait_s)
    waiting = messages[-1].metadata.num_pending or 0
    if batch > 1 and waiting:
        with contextlib.suppress(TimeoutError):
            messages += await sub.fetch(min(batch - 1, waiting), timeout=wait_s)
    return messages
