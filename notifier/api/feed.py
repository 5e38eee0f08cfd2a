"""``/v1/customers/{customer_id}/feed``: a customer's in-app feed, its read marks and
its live stream, for the operator or the customer's own app (``api.feed_auth``).

A page is newest first; ``next_cursor`` is opaque and names the item the next page
starts below, so items that arrive meanwhile never shift the pages after the first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.api.feed_auth import feed_guard
from notifier.api.feed_stream import FeedStreams
from notifier.api.responses import error_responses
from notifier.store.feed import feed_page, mark_read, unread_count

MAX_LIMIT = 100
#: ids one read-mark request may name
MAX_IDS = 500
#: a cursor: any that matches names a place in a feed (a seq, below 2^60), so the
#: document's pattern is the whole check
CURSOR_SYNTAX = r"^c[0-9a-f]{1,15}$"
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class FeedItemBody(BaseModel):
    """One item of a feed."""

    id: str
    title: str
    body: str
    link: str | None
    template: str
    order_id: str
    created_at: str = Field(description="ISO 8601")
    read: bool


class FeedPageBody(BaseModel):
    """A page of a feed, newest first."""

    items: list[FeedItemBody]
    unread_count: int
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: none")


class ReadIds(BaseModel):
    """Mark these items read (ids of another customer's items are left alone)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[ItemId] = Field(min_length=1, max_length=MAX_IDS)


class ReadAll(BaseModel):
    """Mark every item read."""

    model_config = ConfigDict(extra="forbid")

    all: Literal[True]


#: ``{"ids": [...]}`` or ``{"all": true}``, and nothing else
ReadMarks = ReadIds | ReadAll


class ReadResult(BaseModel):
    """How many items were marked read now, and how many stay unread."""

    marked: int
    unread_count: int


def encode_cursor(seq: int) -> str:
    """The opaque cursor of the page below ``seq``; clients pass it back as it is."""
    return f"c{seq:x}"


def decode_cursor(cursor: str) -> int:
    """The seq a cursor names (its syntax is checked by :data:`CURSOR_SYNTAX` first)."""
    return int(cursor[1:], 16)


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


Engine = Annotated[AsyncEngine, Depends(_engine)]

_AUTH_ERRORS = error_responses(
    401,
    403,
    s401="Missing, expired or unreadable token, or customer tokens are not configured",
    s403="A customer token for another customer's feed",
)


def build_feed_router(
    streams: FeedStreams, *, api_token: str | None, feed_secret: str | None
) -> APIRouter:
    """The feed routes, each open to the operator and to the customer it names."""
    # without an operator token the API is open, and its document claims no security
    router = APIRouter(
        prefix="/v1/customers/{customer_id}/feed",
        tags=["feed"],
        dependencies=[Depends(feed_guard(api_token, feed_secret))] if api_token else [],
        responses=_AUTH_ERRORS if api_token else {},
    )

    @router.get("", response_model=FeedPageBody)
    async def get_feed(
        customer_id: str,
        engine: Engine,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
        cursor: Annotated[
            str | None, Query(pattern=CURSOR_SYNTAX, description="`next_cursor` of a page")
        ] = None,
    ) -> dict[str, Any]:
        """The customer's items, newest first, with how many are unread."""
        before = decode_cursor(cursor) if cursor is not None else None
        page = await feed_page(engine, customer_id, limit=limit, before=before)
        return {
            "items": [item.as_json() for item in page.items],
            "unread_count": page.unread_count,
            "next_cursor": encode_cursor(page.next_before) if page.next_before else None,
        }

    @router.post(
        "/read",
        response_model=ReadResult,
        responses=error_responses(400, s400="The body is not JSON"),
    )
    async def read(
        customer_id: str, marks: Annotated[ReadMarks, Body()], engine: Engine
    ) -> dict[str, int]:
        """Mark items read: ``{"ids": [...]}`` (another customer's ids are left alone)
        or ``{"all": true}``."""
        ids = marks.ids if isinstance(marks, ReadIds) else None
        marked = await mark_read(engine, customer_id, ids)
        return {"marked": marked, "unread_count": await unread_count(engine, customer_id)}

    @router.get(
        "/stream",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events: `event: item`, `id` = item id, "
                "`data` = the item as JSON; comment lines keep the connection open",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **error_responses(503, s503="Live streams are unavailable on this replica now"),
        },
    )
    async def stream(
        customer_id: str,
        last_event_id_header: Annotated[
            str | None, Header(alias="Last-Event-ID", max_length=40)
        ] = None,
        last_event_id: Annotated[
            str | None, Query(max_length=40, description="as the Last-Event-ID header")
        ] = None,
    ) -> StreamingResponse:
        """New items as they arrive; with ``Last-Event-ID``, what came after that item first."""
        if not streams.available():
            raise HTTPException(status_code=503, detail="live streams are unavailable now")
        return StreamingResponse(
            streams.events(customer_id, last_event_id_header or last_event_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
