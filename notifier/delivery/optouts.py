"""The opt-out check at send time: a message still queued when its customer opted out
(an unsubscribe link, a changed preference, an SMS STOP) or muted its order is
suppressed when it is claimed, not sent.

Planning already honours the preferences it found (``core.preferences``); this catches
what changed between planning and sending. One query per claim, joined on the
customers who stored preferences at all, so a claim of customers who never did reads
nothing more than an empty join. The reason is the one planning would have written.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.contracts.preferences import ChannelsByCategory, CustomerPreferences
from notifier.core.preferences import refusal
from notifier.store.tables import customer_preferences, notifications

N = notifications.c
P = customer_preferences.c

_REFUSABLE = (
    select(
        N.id,
        N.order_id,
        N.channel,
        N.category,
        P.transactional_channels,
        P.alerts_channels,
        P.muted_orders,
    )
    .join(customer_preferences, P.customer_id == N.customer_id)
    .where(N.id.in_(bindparam("b_ids", expanding=True)))
)


async def refusals(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, str]:
    """Of the notifications ``ids``, those their customer no longer wants, with why."""
    if not ids:
        return {}
    found: dict[str, str] = {}
    for r in await conn.execute(_REFUSABLE, {"b_ids": list(ids)}):
        prefs = CustomerPreferences.model_construct(
            channels=ChannelsByCategory.model_construct(
                transactional=r.transactional_channels, alerts=r.alerts_channels
            ),
            muted_orders=list(r.muted_orders or ()),
        )
        why = refusal(prefs, r.order_id, r.channel, r.category or "transactional")
        if why is not None:
            found[r.id] = why
    return found
