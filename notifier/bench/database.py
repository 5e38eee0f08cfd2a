"""Each benchmark phase gets a store of its own: a SQLite file in the run's temporary
directory, or a fresh PostgreSQL database (created on the server given, dropped after)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from notifier.store.db import normalize_url


@asynccontextmanager
async def phase_database(postgres_url: str | None, work: Path) -> AsyncIterator[str]:
    """The database URL for one phase (``work`` exists); a PostgreSQL database made for it
    is dropped after."""
    if postgres_url is None:
        yield f"sqlite+aiosqlite:///{work / 'notifier.db'}"
        return
    server = make_url(normalize_url(postgres_url))
    name = f"notifier_bench_{secrets.token_hex(4)}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def store_bytes(engine: AsyncEngine, work: Path) -> int:
    """How much the store takes: the SQLite file with its WAL, or the PostgreSQL database."""
    if engine.dialect.name == "sqlite":
        return await asyncio.to_thread(_sqlite_bytes, work)
    async with engine.connect() as conn:
        size = await conn.execute(text("SELECT pg_database_size(current_database())"))
        return int(size.scalar_one())


def _sqlite_bytes(work: Path) -> int:
    return sum(p.stat().st_size for p in work.glob("notifier.db*"))
