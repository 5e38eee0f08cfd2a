"""The raw ceiling: how fast plain nats-py pulls and acks the same messages.

A durable of its own on the ORDERS stream, ``fetch`` in batches the size the service
uses, ``json.loads`` of each body (the least any consumer does) and one ack per
message: everything the service must do with a message except the work itself.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from notifier.streams import EVENTS_FILTER, ORDERS_STREAM

CEILING_DURABLE = "bench-ceiling"


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` messages in ``seconds``."""

    count: int
    seconds: float

    @property
    def per_s(self) -> float:
        """Messages per second (0 when nothing was timed)."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


async def raw_consume(
    nc: NatsClient, total: int, *, batch: int = 500, idle_timeout_s: float = 10.0
) -> Rate:
    """Pull ``total`` messages (or until none comes for ``idle_timeout_s``) and ack each."""
    js = nc.jetstream()
    await js.add_consumer(
        ORDERS_STREAM,
        ConsumerConfig(
            durable_name=CEILING_DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=EVENTS_FILTER,
            max_ack_pending=batch * 4,
            ack_wait=60,
        ),
    )
    sub = await js.pull_subscribe_bind(durable=CEILING_DURABLE, stream=ORDERS_STREAM)
    got = 0
    started = time.perf_counter()
    last_progress = started
    while got < total and time.perf_counter() - last_progress < idle_timeout_s:
        try:
            messages = await sub.fetch(min(batch, total - got), timeout=1.0)
        except TimeoutError:
            continue
        for message in messages:
            with contextlib.suppress(ValueError):  # poison is acked all the same
                json.loads(message.data)
            await message.ack()
        got += len(messages)
        last_progress = time.perf_counter()
    await nc.flush()  # the last acks are on the wire
    seconds = time.perf_counter() - started
    await sub.unsubscribe()
    await js.delete_consumer(ORDERS_STREAM, CEILING_DURABLE)
    return Rate(got, seconds)
