"""``GET /track/{order_id}?t=<token>``: the shopper's order-status page.

The token (``notifier.signing``, purpose ``track``, subject the order id) is what
every email and SMS links to (``core.links``). A missing, forged or expired token,
an unknown order and an erased one all get the same 403 page, which names no order:
the page is no oracle for which order ids exist. The token is checked before the
database is read.

The URL holds a credential, so the answer is never cached, indexed or sent on as a
``Referer``; the page loads nothing from elsewhere, and its Content-Security-Policy
says so.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import signing
from notifier.core.links import TRACK_PATH, TRACK_PURPOSE
from notifier.core.tracking import StoreFor, page_language
from notifier.core.tracking import order_page as build_page
from notifier.rendering.pages import PageRenderer
from notifier.store.queries import order_record

log = logging.getLogger("notifier.track")


def security_headers(nonce: str) -> dict[str, str]:
    """What every answer of the page carries."""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'"
        ),
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Robots-Tag": "noindex, nofollow",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def build_track_router(
    engine: AsyncEngine,
    secret: str | None,
    *,
    pages: PageRenderer | None = None,
    store_for: StoreFor | None = None,
) -> APIRouter:
    """The page's route; without ``secret`` it answers 404 saying the page is off."""
    router = APIRouter()
    renderer = pages or PageRenderer()

    def answer(status: int, page: str, context: dict[str, Any]) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = renderer.render(page, {**context, "nonce": nonce})
        return HTMLResponse(html, status_code=status, headers=security_headers(nonce))

    def closed(status: int, reason: str, request: Request) -> HTMLResponse:
        lang = page_language(_first_language(request.headers.get("accept-language", "")))
        return answer(status, "closed", {"lang": lang, "reason": reason, "store": None})

    @router.get(
        TRACK_PATH + "{order_id:path}",
        tags=["shoppers"],
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    async def track(
        order_id: str,
        request: Request,
        t: Annotated[str, Query(description="the token the message's link carries")] = "",
    ) -> HTMLResponse:
        """The order's state, shipments, what happened and the shop's contact."""
        if secret is None:
            return closed(404, "not_configured", request)
        problem = signing.check(secret, TRACK_PURPOSE, order_id, t)
        if problem is not None:
            log.info("order-status page refused: token %s", problem.value)
            return closed(403, "forbidden", request)
        try:
            record = await order_record(engine, order_id)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("order-status page: the database did not answer (%s)", type(exc).__name__)
            return closed(503, "unavailable", request)
        page = None if record is None else build_page(record, store_for=store_for)
        if page is None:
            log.info("order-status page refused: the order is gone or erased")
            return closed(403, "forbidden", request)
        return answer(200, "track", page)

    return router


def _first_language(header: str) -> str:
    """The first tag of an ``Accept-Language`` header (the page speaks two languages;
    weights would not change which of them wins often enough to parse)."""
    return header.split(",", maxsplit=1)[0].split(";", maxsplit=1)[0].strip()
