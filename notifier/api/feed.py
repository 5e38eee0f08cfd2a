"""``/v1/customers/{customer_id}/feed``: a customer's in-app feed, its read marks and
its live stream, for the operator or the customer's own app (``api.feed_auth``).

A page is newest first; ``next_cursor`` is opaque and names the item the next page
starts below, so items that arrive meanwhile never shift the pages after the first.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.api.feed_auth import feed_guard
from notifier.api.feed_stream import FeedStreams
from notifier.api.responses import error_responses, query_error
from notifier.store.feed import feed_page, mark_read, unread_count

MAX_LIMIT = 100
#: ids one read-mark request may name
MAX_IDS = 500
_CURSOR_PREFIX = "v1:"
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


class ReadMarks(BaseModel):
    """Which items to mark read: ``{"ids": [...]}`` or ``{"all": true}``."""

    model_config = ConfigDict(extra="forbid")

    ids: list[ItemId] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    all: Literal[True] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ReadMarks:
        if (self.ids is None) == (self.all is None):
            raise ValueError('send either {"ids": [...]} or {"all": true}')
        return self


class ReadResult(BaseModel):
    """How many items were marked read now, and how many stay unread."""

    marked: int
    unread_count: int


def encode_cursor(seq: int) -> str:
    """The opaque cursor of the page below ``seq``."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    """The seq a cursor names; ``ValueError`` for one this API did not give."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor this API gave") from None
    number = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not number.isdigit() or len(number) > 19:
        raise ValueError("not a cursor this API gave")
    return int(number)


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
    router = APIRouter(
        prefix="/v1/customers/{customer_id}/feed",
        tags=["feed"],
        dependencies=[Depends(feed_guard(api_token, feed_secret))],
        responses=_AUTH_ERRORS,
    )

    @router.get("", response_model=FeedPageBody)
    async def get_feed(
        customer_id: str,
        engine: Engine,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        """The customer's items, newest first, with how many are unread."""
        try:
            before = decode_cursor(cursor) if cursor is not None else None
        except ValueError as exc:
            raise query_error("cursor", str(exc), cursor or "") from None
        page = await feed_page(engine, customer_id, limit=limit, before=before)
        return {
            "items": [item.as_json() for item in page.items],
            "unread_count": page.unread_count,
            "next_cursor": encode_cursor(page.next_before) if page.next_before else None,
        }

    @router.post("/read", response_model=ReadResult)
    async def read(customer_id: str, marks: ReadMarks, engine: Engine) -> dict[str, int]:
        """Mark items read, by id (another customer's ids are left alone) or all."""
        marked = await mark_read(engine, customer_id, marks.ids)
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
