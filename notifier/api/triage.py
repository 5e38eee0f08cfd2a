"""``GET /v1/dead-letters``: what was refused, and what is refused most.

Read from the ``dead_letters`` index, not the stream: ids, reason, source and the
detail (which names the field and the rule, never the value). Payloads, with their
contacts, stay in the DEADLETTER stream, for ``notifier dlq list``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.store.deadletter_index import dead_letter_triage


class DeadLetterItem(BaseModel):
    """One refused event."""

    seq: int
    reason: str
    source: str
    order_id: str | None
    customer_id: str | None
    original_seq: int
    detail: str
    received_at: datetime


class ReasonCount(BaseModel):
    """How many dead letters have this reason."""

    reason: str
    count: int


class SourceCount(BaseModel):
    """How many dead letters came from this source."""

    source: str
    count: int


class DeadLetterTriage(BaseModel):
    """The newest matching dead letters and the counts over every match."""

    total: int
    by_reason: list[ReasonCount]
    by_source: list[SourceCount]
    items: list[DeadLetterItem]


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def build_triage_router() -> APIRouter:
    """The triage route; include it in the ``/v1`` router, which does the auth."""
    router = APIRouter()

    @router.get("/dead-letters", tags=["operations"])
    async def dead_letters(
        engine: Annotated[AsyncEngine, Depends(_engine)],
        reason: Annotated[str | None, Query(max_length=40, description="only this reason")] = (
            None
        ),
        source: Annotated[str | None, Query(max_length=100, description="only this source")] = (
            None
        ),
        limit: Annotated[int, Query(ge=1, le=1000, description="newest items returned")] = 100,
    ) -> DeadLetterTriage:
        """Refused events, newest first, with counts by reason and by source, most
        frequent first (over every match, not only the items returned)."""
        found = await dead_letter_triage(engine, reason=reason, source=source, limit=limit)
        return DeadLetterTriage(
            total=found.total,
            by_reason=[ReasonCount(reason=r, count=n) for r, n in found.by_reason],
            by_source=[SourceCount(source=s, count=n) for s, n in found.by_source],
            items=[DeadLetterItem(**item.as_dict()) for item in found.items],
        )

    return router
