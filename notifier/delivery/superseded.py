"""Never stale, at send time: a queued row whose order has moved on is suppressed at claim.

A row can wait long after it was planned: behind a retry, an open circuit, or quiet
hours. By the time a dispatcher claims it, the order may be somewhere its message would
mislead ("out for delivery" when the parcel is on the doorstep). The claim asks this
module first: each queued row is judged against the order's current state (``orders``:
its order-level state and each shipment's) by the one table in
``notifier.core.staleness``, and a stale one moves ``queued`` → ``suppressed`` by the
``supersede`` move with its reason, together with the standby channels of its fallback
group, which carry the same message. Partner webhooks and corrections are never judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.contracts.events import OrderState
from notifier.core.lifecycle import shipment_key
from notifier.core.notification_status import Move, NotificationStatus, sources
from notifier.core.staleness import stale_reason
from notifier.core.timing import is_exempt
from notifier.store.moves import any_of, move
from notifier.store.tables import events, notifications, orders

N = notifications.c
Q = NotificationStatus

_CANDIDATES = (
    select(
        N.id,
        N.state,
        N.channel,
        N.idempotency_key,
        N.fallback_group,
        events.c.shipment_id,
        orders.c.order_state,
        orders.c.shipments,
    )
    .select_from(
        notifications.join(orders, orders.c.order_id == N.order_id).outerjoin(
            events, events.c.event_id == N.event_id
        )
    )
    .where(N.id.in_(bindparam("b_ids", expanding=True)))
    .where(any_of(N.status, sources(Move.CLAIM, Q.SENDING)))
)
_NOW = bindparam("b_now", type_=N.updated_at.type)
_ROW = (
    move(Move.SUPERSEDE, Q.SUPPRESSED)
    .where(N.id == bindparam("b_id"))
    .values(last_error=bindparam("b_error"), updated_at=_NOW)
)
_GROUP = (
    move(Move.SUPERSEDE, Q.SUPPRESSED)
    .where(N.fallback_group == bindparam("b_group"))
    .values(last_error=bindparam("b_error"), updated_at=_NOW)
)


async def suppress_stale(conn: AsyncConnection, ids: Sequence[str], now: datetime) -> set[str]:
    """Suppress the queued rows among ``ids`` that their order has moved past; their ids."""
    rows = (await conn.execute(_CANDIDATES, {"b_ids": list(ids)})).all()
    stale: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    for r in rows:
        if is_exempt(r.channel, r.idempotency_key):
            continue
        why = stale_reason(
            r.state,
            shipment_state=_shipment_state(r.shipments, r.state, r.shipment_id),
            order_state=r.order_state,
        )
        if why is None:
            continue
        stale.append({"b_id": r.id, "b_error": why, "b_now": now})
        if r.fallback_group:
            groups.append({"b_group": r.fallback_group, "b_error": why, "b_now": now})
    if stale:
        await conn.execute(_ROW, stale)
    if groups:
        await conn.execute(_GROUP, groups)
    return {p["b_id"] for p in stale}


def _shipment_state(shipments: Any, state: str, shipment_id: str | None) -> str | None:
    """The current state of the shipment a message about ``state`` refers to."""
    if not isinstance(shipments, Mapping):
        return None
    try:
        key = shipment_key(OrderState(state), shipment_id)
    except ValueError:
        return None
    found = shipments.get(key) if key is not None else None
    return found if isinstance(found, str) else None
