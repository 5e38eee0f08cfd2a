"""Read models for the HTTP API and support: what happened to an order, which push
tokens a customer lost, and what the order-status page is built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.tracking import OrderRecord, StoredEvent
from notifier.store.tables import dead_push_tokens, events, notifications, orders


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite hands back naive datetimes; everything is stored in UTC.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


async def order_view(engine: AsyncEngine, order_id: str) -> dict[str, Any] | None:
    """State, shipment states, event history and notifications of one order.

    Contacts and bodies are left out: support sees what was sent where by id, channel,
    template and status, not the customer's address.
    """
    async with engine.connect() as conn:
        row = (await conn.execute(select(orders).where(orders.c.order_id == order_id))).first()
        if row is None:
            return None
        history = (
            (
                await conn.execute(
                    select(
                        events.c.event_id,
                        events.c.seq,
                        events.c.state,
                        events.c.shipment_id,
                        events.c.occurred_at,
                        events.c.outcome,
                        events.c.retracted,
                        events.c.revised_seq,
                    )
                    .where(events.c.order_id == order_id)
                    .order_by(events.c.seq)
                )
            )
            .mappings()
            .all()
        )
        n = notifications.c
        sent = (
            (
                await conn.execute(
                    select(
                        n.id,
                        n.event_id,
                        n.channel,
                        n.template,
                        n.template_version,
                        n.locale,
                        n.state,
                        n.status,
                        n.attempts,
                        n.provider,
                        n.provider_message_id,
                        n.last_error,
                        n.created_at,
                        n.updated_at,
                        n.sent_at,
                        n.delivered_at,
                        n.subject,
                        n.event_seq,
                        n.fallback_group,
                        n.fallback_rank,
                        n.sender,
                        n.reply_to,
                        n.not_before,
                    )
                    .where(n.order_id == order_id)
                    .order_by(n.event_seq, n.created_at, n.id)
                )
            )
            .mappings()
            .all()
        )
    o = row._mapping
    return {
        "order_id": o["order_id"],
        "source": o["source"],
        "customer_id": o["customer_id"],
        "state": o["state"],
        "order_state": o["order_state"],
        "shipments": o["shipments"],
        "last_event_at": _iso(o["last_event_at"]),
        "updated_at": _iso(o["updated_at"]),
        "events": [
            {
                "event_id": e["event_id"],
                "seq": e["seq"],
                "state": e["state"],
                "shipment_id": e["shipment_id"],
                "occurred_at": _iso(e["occurred_at"]),
                "outcome": e["outcome"],
                "revised": e["revised_seq"] != e["seq"],
            }
            for e in history
        ],
        "notifications": [{k: _iso(v) for k, v in m.items()} for m in sent],
    }


async def dead_push_token_view(engine: AsyncEngine, customer_id: str) -> list[dict[str, Any]]:
    """The push tokens FCM said are gone for one customer, oldest first, each shown by
    the first 12 characters of its hash (the token itself is personal data)."""
    t = dead_push_tokens.c
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(t.token_sha256, t.reason, t.created_at)
                .where(t.customer_id == customer_id)
                .order_by(t.created_at)
            )
        ).all()
    return [
        {
            "token_sha256_prefix": r.token_sha256[:12],
            "reason": r.reason,
            "marked_at": _iso(r.created_at),
        }
        for r in rows
    ]


async def order_record(engine: AsyncEngine, order_id: str) -> OrderRecord | None:
    """What the order-status page shows is built from: ``None`` for an unknown order."""
    e = events.c
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(orders.c.state, orders.c.order_state, orders.c.shipments).where(
                    orders.c.order_id == order_id
                )
            )
        ).first()
        if row is None:
            return None
        history = (
            await conn.execute(
                select(
                    e.seq,
                    e.state,
                    e.shipment_id,
                    e.occurred_at,
                    e.outcome,
                    e.retracted,
                    e.payload,
                )
                .where(e.order_id == order_id)
                .order_by(e.seq)
            )
        ).all()
    return OrderRecord(
        order_id=order_id,
        state=row.state,
        order_state=row.order_state,
        shipments=dict(row.shipments or {}),
        events=[
            StoredEvent(
                seq=h.seq,
                state=h.state,
                shipment_id=h.shipment_id,
                occurred_at=h.occurred_at,
                outcome=h.outcome,
                retracted=bool(h.retracted),
                payload=h.payload,
            )
            for h in history
        ],
    )
