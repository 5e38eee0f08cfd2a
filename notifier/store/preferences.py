"""Customers' stored preferences: read for a batch (one query), read and written by the
API, changed by an opt-out (an unsubscribe link, an SMS STOP), erased and aged out.

A row holds contact overrides (personal data), so it goes with the customer
(``erase_customer``) and, once the customer has no order left and the row has not
changed for the ledger's retention, with ``prune``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.contracts.channels import CUSTOMER_CHANNELS
from notifier.contracts.preferences import ChannelsByCategory, CustomerPreferences, QuietHours
from notifier.store.tables import customer_preferences, orders

P = customer_preferences.c
#: every category, as a provider's opt-out (an SMS STOP) applies to them all
CATEGORIES = ("transactional", "alerts")
#: customer ids per query, well under every driver's limit on bound parameters
_CHUNK = 1000


def _from_row(r: Any) -> CustomerPreferences:
    quiet = (
        QuietHours(start=r.quiet_hours_start, end=r.quiet_hours_end)
        if r.quiet_hours_start is not None and r.quiet_hours_end is not None
        else None
    )
    # stored values were validated when they were written: built without re-checking
    return CustomerPreferences.model_construct(
        channels=ChannelsByCategory.model_construct(
            transactional=r.transactional_channels, alerts=r.alerts_channels
        ),
        preferred_channel=r.preferred_channel,
        email=r.email,
        phone=r.phone,
        locale=r.locale,
        timezone=r.timezone,
        quiet_hours=quiet,
        muted_orders=list(r.muted_orders or ()),
    )


def _to_row(prefs: CustomerPreferences, now: datetime) -> dict[str, Any]:
    quiet = prefs.quiet_hours
    return {
        "transactional_channels": prefs.channels.transactional,
        "alerts_channels": prefs.channels.alerts,
        "preferred_channel": prefs.preferred_channel,
        "email": prefs.email,
        "phone": prefs.phone,
        "locale": prefs.locale,
        "timezone": prefs.timezone,
        "quiet_hours_start": quiet.start if quiet else None,
        "quiet_hours_end": quiet.end if quiet else None,
        "muted_orders": list(prefs.muted_orders),
        "updated_at": now,
    }


async def load_preferences(
    conn: AsyncConnection, customer_ids: Iterable[str]
) -> dict[str, CustomerPreferences]:
    """The stored preferences of these customers (those without any are absent)."""
    ids = sorted(set(customer_ids))
    found: dict[str, CustomerPreferences] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(
            select(customer_preferences).where(P.customer_id.in_(ids[start : start + _CHUNK]))
        )
        found.update((r.customer_id, _from_row(r)) for r in rows)
    return found


async def get_preferences(engine: AsyncEngine, customer_id: str) -> CustomerPreferences | None:
    """One customer's stored preferences, or None when they stored none."""
    async with engine.connect() as conn:
        return (await load_preferences(conn, [customer_id])).get(customer_id)


async def put_preferences(
    engine: AsyncEngine, customer_id: str, prefs: CustomerPreferences
) -> None:
    """Replace the customer's whole preferences document."""
    async with engine.begin() as conn:
        await _write(conn, customer_id, prefs, exists=await _locked(conn, customer_id))


async def opt_out(
    engine: AsyncEngine, customer_id: str, channel: str, categories: Collection[str]
) -> CustomerPreferences:
    """Take ``channel`` out of each of ``categories`` for the customer; what they now have.

    A category the customer left to the event (no list) gets every other customer
    channel. Transactional messages keep a channel: when ``channel`` was their last, the
    other customer channels take its place (an SMS STOP must stop SMS even then)."""
    others = [c for c in CUSTOMER_CHANNELS if c != channel]
    async with engine.begin() as conn:
        exists = await _locked(conn, customer_id)
        current = (await load_preferences(conn, [customer_id])).get(customer_id)
        prefs = current or CustomerPreferences()
        lists = {
            "transactional": prefs.channels.transactional,
            "alerts": prefs.channels.alerts,
        }
        for category in categories:
            kept = [c for c in (lists[category] or others) if c != channel]
            lists[category] = kept or (others if category == "transactional" else [])
        prefs = prefs.model_copy(
            update={
                "channels": ChannelsByCategory.model_construct(
                    transactional=lists["transactional"], alerts=lists["alerts"]
                )
            }
        )
        await _write(conn, customer_id, prefs, exists=exists)
    return prefs


async def _locked(conn: AsyncConnection, customer_id: str) -> bool:
    """Whether the customer has a row, locked for this transaction (PostgreSQL; SQLite's
    write transaction holds the whole database)."""
    stmt = select(P.customer_id).where(P.customer_id == customer_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).first() is not None


async def _write(
    conn: AsyncConnection, customer_id: str, prefs: CustomerPreferences, *, exists: bool
) -> None:
    row = _to_row(prefs, datetime.now(UTC))
    if not exists:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(customer_preferences).values(customer_id=customer_id, **row)
                )
            return
        except IntegrityError:
            pass  # written meanwhile by another request: replaced below
    await conn.execute(update(customer_preferences).where(P.customer_id == customer_id).values(row))


async def erase_preferences(conn: AsyncConnection, customer_id: str) -> int:
    """Delete the customer's preferences (erasure); how many rows went (0 or 1)."""
    result = await conn.execute(delete(customer_preferences).where(P.customer_id == customer_id))
    return result.rowcount


async def prune_preferences(conn: AsyncConnection, cutoff: datetime) -> int:
    """Forget the preferences of customers without any order left whose row has not
    changed since ``cutoff``: a customer still ordering keeps theirs."""
    still_ordering = select(orders.c.customer_id).where(orders.c.customer_id == P.customer_id)
    result = await conn.execute(
        delete(customer_preferences).where(P.updated_at < cutoff).where(~still_ordering.exists())
    )
    return result.rowcount
