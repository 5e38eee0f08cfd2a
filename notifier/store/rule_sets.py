"""The ``rule_sets`` table: each rules document stored through the API, by version.

Versions only grow and a row is never changed, so "which rules are in effect" is one
cheap question every replica can ask twice a second (``newest_version``), and a
rollback is a new version with an old document. Validation is the caller's: this
module stores text and reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import desc, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.store.tables import rule_sets

R = rule_sets.c
#: two writers that read the same newest version: the second one's insert collides on
#: the primary key and takes the next number; more than this many in a row is a bug
_INSERT_TRIES = 5


@dataclass(frozen=True, slots=True)
class StoredRuleSet:
    """One stored version: the document as it was sent, who sent it, and when."""

    version: int
    document: str
    author: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RuleSetEntry:
    """A version in the history (without its document)."""

    version: int
    author: str
    created_at: datetime


async def newest_version(engine: AsyncEngine) -> int:
    """The highest stored version; 0 (the rules file) when none is stored."""
    async with engine.connect() as conn:
        found = await conn.scalar(select(func.max(R.version)))
    return int(found or 0)


async def newest_rule_set(engine: AsyncEngine) -> StoredRuleSet | None:
    """The newest stored version, or ``None`` while the rules file is in effect."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(rule_sets).order_by(desc(R.version)).limit(1))).first()
    return StoredRuleSet(**row._mapping) if row is not None else None


async def rule_set(engine: AsyncEngine, version: int) -> StoredRuleSet | None:
    """One stored version, or ``None`` when there is no such version."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(rule_sets).where(R.version == version))).first()
    return StoredRuleSet(**row._mapping) if row is not None else None


async def older_rule_sets(engine: AsyncEngine, below: int) -> list[StoredRuleSet]:
    """The stored versions under ``below``, newest first (to fall back on at start-up)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(rule_sets).where(R.version < below).order_by(desc(R.version))
        )
        return [StoredRuleSet(**row._mapping) for row in rows]


async def rule_set_history(engine: AsyncEngine) -> list[RuleSetEntry]:
    """Every stored version, newest first, without documents."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(R.version, R.author, R.created_at).order_by(desc(R.version))
        )
        return [RuleSetEntry(**row._mapping) for row in rows]


async def store_rule_set(engine: AsyncEngine, document: str, author: str) -> StoredRuleSet:
    """Store ``document`` as the next version and return it."""
    for _ in range(_INSERT_TRIES):
        now = datetime.now(UTC)
        try:
            async with engine.begin() as conn:
                version = int(await conn.scalar(select(func.max(R.version))) or 0) + 1
                await conn.execute(
                    insert(rule_sets).values(
                        version=version, document=document, author=author, created_at=now
                    )
                )
        except IntegrityError:
            continue  # another replica took this number first
        return StoredRuleSet(version, document, author, now)
    raise RuntimeError(f"no free rule-set version after {_INSERT_TRIES} tries")
