"""The AsyncAPI description of what notifier consumes and publishes.

Generate it with::

    faststream docs gen --factory notifier.contracts.asyncapi:asyncapi_app \
        --yaml --out docs/asyncapi.yaml

The broker here only describes channels and payloads for the document; the running
service consumes with ``notifier.ingest.consumer`` (see its docstring for why).
"""

from __future__ import annotations

from faststream import FastStream
from faststream.nats import JStream, NatsBroker
from faststream.specification import AsyncAPI

from notifier.contracts.events import OrderEvent
from notifier.streams import DEADLETTER_PREFIX, DEADLETTER_STREAM, ORDERS_STREAM


def asyncapi_app() -> FastStream:
    """A FastStream app whose specification is notifier's event contract v1."""
    broker = NatsBroker("nats://127.0.0.1:4222", description="The platform's NATS JetStream")

    @broker.subscriber(
        "orders.state.{source}",
        stream=JStream(ORDERS_STREAM, declare=False),
        title="orders.state.<source>",
        description=(
            "Order-state events, contract v1. Header `Nats-Msg-Id: <event_id>`. "
            "Invalid events go to the dead-letter stream with a reason."
        ),
    )
    async def order_state(event: OrderEvent) -> None:
        raise RuntimeError("documentation only; the service consumes in notifier.ingest")

    broker.publisher(
        f"{DEADLETTER_PREFIX}.{{reason}}",
        stream=JStream(DEADLETTER_STREAM, declare=False),
        title="deadletter.orders.<reason>",
        description=(
            "Refused events: the original body, the original headers, and headers "
            "`Notifier-Reason` (invalid_json, schema_violation, limit_exceeded, "
            "future_timestamp, unknown_state, illegal_transition, event_id_conflict, "
            "processing_error, max_deliveries), `Notifier-Detail`, "
            "`Notifier-Original-Subject`, `Notifier-Original-Seq`."
        ),
        schema=bytes,
    )
    return FastStream(
        broker,
        specification=AsyncAPI(
            title="notifier",
            version="1.0.0",
            description="Order notifications: events in over NATS JetStream.",
        ),
    )
