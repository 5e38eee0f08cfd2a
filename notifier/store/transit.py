"""The delivered shipments the predicted-late model learns from (``core.transit``).

Reads ``events``: each shipment's first applied ``shipped`` and its ``delivered``, the
carrier from either event's payload. Only the most recent ``limit`` deliveries within
``window`` count, so a carrier that got slower is seen as slower within weeks and the
read stays bounded. Retention (``store.maintenance``) already ages the events out.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.contracts.events import OrderState
from notifier.core.transit import TransitSample
from notifier.store.tables import events

_DELIVERED = (
    select(events.c.order_id, events.c.shipment_id, events.c.occurred_at, events.c.payload)
    .where(
        events.c.state == OrderState.DELIVERED.value,
        events.c.shipment_id.is_not(None),
        events.c.outcome == "applied",
        events.c.retracted.is_(False),
    )
    .order_by(events.c.occurred_at.desc())
)


_SHIPPED = (
    select(events.c.order_id, events.c.shipment_id, events.c.occurred_at, events.c.payload)
    .where(
        events.c.state == OrderState.SHIPPED.value,
        events.c.shipment_id.is_not(None),
        events.c.outcome == "applied",
        events.c.retracted.is_(False),
    )
    .order_by(events.c.occurred_at)
)
#: order ids per look-up of their shipping events (SQLite bounds a statement's parameters)
_CHUNK = 500


def _carrier(payload: str) -> str | None:
    try:
        body: Any = json.loads(payload)
    except ValueError:
        return None
    shipment = body.get("shipment") if isinstance(body, dict) else None
    carrier = shipment.get("carrier") if isinstance(shipment, dict) else None
    return carrier if isinstance(carrier, str) and carrier else None


def _source(payload: str) -> str:
    try:
        body: Any = json.loads(payload)
    except ValueError:
        return ""
    source = body.get("source") if isinstance(body, dict) else None
    return source if isinstance(source, str) else ""


async def load_samples(
    engine: AsyncEngine, *, since: datetime, limit: int = 20_000
) -> list[TransitSample]:
    """Delivered shipments with a known carrier, delivered after ``since``, newest first."""
    async with engine.connect() as conn:
        delivered = (
            await conn.execute(_DELIVERED.where(events.c.occurred_at >= since).limit(limit))
        ).all()
        if not delivered:
            return []
        order_ids = sorted({r.order_id for r in delivered})
        shipped: dict[tuple[str, str], tuple[datetime, str]] = {}
        for start in range(0, len(order_ids), _CHUNK):
            rows = await conn.execute(
                _SHIPPED.where(events.c.order_id.in_(order_ids[start : start + _CHUNK]))
            )
            for row in rows:
                shipped.setdefault((row.order_id, row.shipment_id), (row.occurred_at, row.payload))
    samples = []
    for row in delivered:
        first = shipped.get((row.order_id, row.shipment_id))
        if first is None:
            continue
        carrier = _carrier(row.payload) or _carrier(first[1])
        if carrier is None:
            continue
        samples.append(TransitSample(carrier, _source(row.payload), first[0], row.occurred_at))
    return samples
