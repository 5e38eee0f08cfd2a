"""The migrations build exactly the schema ``store/tables.py`` declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from notifier.store.db import create_engine
from notifier.store.migrate import upgrade
from notifier.store.tables import metadata


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": False})
    return [
        d
        for d in compare_metadata(context, metadata)
        if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")
    ]


async def test_migrations_match_the_declared_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()


async def test_processes_starting_together_on_an_empty_database_all_migrate(
    database_url: str,
) -> None:
    """Replicas and dispatch workers start at once and each migrates: on PostgreSQL they
    raced to create alembic's version table and all but one failed to start."""
    import asyncio

    engines = [create_engine(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(upgrade(e) for e in engines), return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        async with engines[0].connect() as conn:
            diff = await conn.run_sync(_differences)
        assert diff == []
    finally:
        for engine in engines:
            await engine.dispose()
