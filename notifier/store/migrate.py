"""Alembic migrations, run programmatically on the service's own async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: the PostgreSQL advisory lock that serialises start-up migrations (an arbitrary key,
#: the same in every process of every version)
MIGRATION_LOCK = 7_135_441_230_871


def alembic_config(connection: Connection | None = None) -> Config:
    """Configuration pointing at the package's migrations; no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent).

    Replicas and dispatch workers start together and each migrates at start-up: on
    PostgreSQL they take turns under a transaction-scoped advisory lock, so the second
    finds the schema already there instead of racing the first to create alembic's
    version table (a unique violation that stopped it). SQLite's one writer at a time
    already serialises them.
    """

    def _run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(_run)
