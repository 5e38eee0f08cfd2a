"""The FastStream batch pull consumer on ``orders.state.>``.

One durable pull consumer, shared by every replica (JetStream spreads batches across
them); explicit acks, sent only after the batch's transaction committed; bounded
redelivery. FastStream's batch mode is used because its per-message handler costs a
thread-pool hop per message (see FACTS.md).
"""

from __future__ import annotations

import logging
from typing import Any

from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from notifier.core.model import RawMessage
from notifier.ingest.processor import TRANSIENT, BatchProcessor
from notifier.ingest.streams import EVENTS_FILTER, ORDERS_STREAM

log = logging.getLogger(__name__)


def _raw(msg: Msg) -> RawMessage:
    return RawMessage(
        data=msg.data,
        headers=dict(msg.headers or {}),
        subject=msg.subject,
        seq=msg.metadata.sequence.stream,
    )


async def _keep_raw(msg: StreamMessage[Any]) -> Any:
    # The processor decodes and validates itself, so it can dead-letter bad JSON with
    # a reason instead of FastStream failing the whole batch.
    return msg.raw_message


def register_ingest(
    broker: NatsBroker,
    processor: BatchProcessor,
    *,
    durable: str,
    batch_size: int,
    batch_wait_s: float,
    ack_wait_s: float,
    max_deliver: int,
) -> None:
    """Attach the ingest handler to the broker (the broker is started by the app)."""
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
        max_ack_pending=max(batch_size * 4, 1000),
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=EVENTS_FILTER,
    )

    @broker.subscriber(
        EVENTS_FILTER,
        stream=JStream(ORDERS_STREAM, declare=False),
        durable=durable,
        config=config,
        pull_sub=PullSub(batch_size=batch_size, timeout=batch_wait_s, batch=True),
        ack_policy=AckPolicy.MANUAL,
        decoder=_keep_raw,
        title="ingest",
        description="Order-state events, contract v1 (see README: Event contract)",
    )
    async def ingest(body: Any) -> None:
        messages: list[Msg] = body
        try:
            await processor.process([_raw(m) for m in messages])
        except TRANSIENT as exc:
            log.warning("batch of %d not applied (%s); redelivering", len(messages), exc)
            for m in messages:
                await m.nak(delay=2.0)
            return
        for m in messages:
            await m.ack()
