"""The predicted-late model learns from what ingest stored: real pipeline, real schema."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from notifier.app import build_service
from notifier.core.model import DeadLetter, RawMessage
from notifier.store.migrate import upgrade
from notifier.store.transit import load_samples
from tests.integration.helpers import T0, event, settings_for


async def test_transit_samples_pair_each_delivery_with_its_first_shipping(
    database_url: str,
) -> None:
    service = build_service(settings_for("nats://127.0.0.1:9", database_url, None))
    await upgrade(service.engine)

    async def keep(batch: Sequence[DeadLetter]) -> int:
        return len(batch)

    processor = dataclasses.replace(service.consumer.processor, dead_letter_sink=keep)
    ups = {"id": "p1", "carrier": "UPS", "tracking_number": "1Z"}
    bodies: list[dict[str, Any]] = [
        # shipped, re-scanned as shipped, delivered 2 days after the first
        event("T1", "placed", 0),
        event("T1", "shipped", 60, shipment=ups),
        event("T1", "in_transit", 600, shipment=ups),
        event("T1", "delivered", 60 + 2 * 24 * 60, shipment=ups),
        # the carrier named only on the shipping event
        event("T2", "placed", 0),
        event("T2", "shipped", 0, shipment=ups),
        event("T2", "delivered", 30 * 60, shipment={"id": "p1"}),
        # never delivered, and delivered without a carrier: not samples
        event("T3", "placed", 0),
        event("T3", "shipped", 0, shipment=ups),
        event("T4", "placed", 0),
        event("T4", "shipped", 0, shipment={"id": "p1"}),
        event("T4", "delivered", 90, shipment={"id": "p1"}),
    ]
    messages = [
        RawMessage(json.dumps(b).encode(), {}, "orders.state.web", seq)
        for seq, b in enumerate(bodies, start=1)
    ]
    try:
        await processor.process(messages)
        samples = await load_samples(service.engine, since=T0 - timedelta(days=1))
        hours = sorted((s.carrier, s.source, s.hours) for s in samples)
        assert hours == [("UPS", "web", 30.0), ("UPS", "web", 48.0)]
        # older than the window: nothing
        assert await load_samples(service.engine, since=T0 + timedelta(days=5)) == []
    finally:
        await service.engine.dispose()
