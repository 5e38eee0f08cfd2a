"""Times keep their instant in the store, whatever offset they arrived with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import insert, select

from notifier.store.db import create_engine
from notifier.store.migrate import upgrade
from notifier.store.tables import orders


async def test_a_time_with_an_offset_is_the_same_instant_when_read_back(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        paris = timezone(timedelta(hours=1))
        at = datetime(2026, 11, 22, 10, 0, tzinfo=paris)
        async with engine.begin() as conn:
            await conn.execute(
                insert(orders).values(
                    order_id="o1",
                    source="web",
                    customer_id="c1",
                    state="placed",
                    shipments=[],
                    last_event_at=at,
                    updated_at=datetime.now(UTC),
                )
            )
            stored = (await conn.execute(select(orders.c.last_event_at))).scalar_one()
            later = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)  # 10:30 in Paris
            newer = (
                await conn.execute(select(orders.c.order_id).where(orders.c.last_event_at < later))
            ).all()
        assert stored == at
        assert stored.utcoffset() == timedelta(0)
        assert newer == [("o1",)]
    finally:
        await engine.dispose()
