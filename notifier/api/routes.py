"""HTTP API: health, readiness, metrics, and what happened to an order."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.api.auth import bearer_guard
from notifier.api.preferences import build_preferences_router
from notifier.api.responses import error_responses, query_error
from notifier.api.triage import build_triage_router
from notifier.delivery.stats import delivery_stats, parse_window
from notifier.errors import DeadLetterError
from notifier.metrics import Metrics
from notifier.store.maintenance import erase_customer
from notifier.store.queries import dead_push_token_view, order_view

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


Engine = Annotated[AsyncEngine, Depends(_engine)]


class Readiness(BaseModel):
    """What ``/readyz`` answers: ``ok`` or ``unavailable``, and each check's result."""

    status: str
    checks: dict[str, str]


#: what the document promises ``window`` looks like: a positive number and a unit, in
#: ASCII, without the spaces parse_window forgives (a regex cannot say "at most 400d")
WINDOW_SYNTAX = re.compile(r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)[smhd]?$")

#: ``/metrics`` is Prometheus' text exposition format, not JSON
PROMETHEUS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
}


def build_ops_router(
    metrics: Metrics,
    readiness: ReadinessCheck,
    *,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> APIRouter:
    """``/healthz``, ``/readyz`` and ``/metrics``: all a dispatch process serves."""
    router = APIRouter()

    @router.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        tags=["operations"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Something is down"}},
    )
    async def readyz() -> JSONResponse:
        """NATS and the database are reachable; 503 names what is not. A ``degraded``
        check (ingest stalled) keeps 200: the pod still serves, but says so."""
        checks = await readiness()
        down = [v for v in checks.values() if v != "ok" and not v.startswith("degraded")]
        status = "unavailable" if down else "ok"
        if not down and any(v != "ok" for v in checks.values()):
            status = "degraded"
        return JSONResponse({"status": status, "checks": checks}, status_code=503 if down else 200)

    @router.get(
        "/metrics", tags=["operations"], response_class=PlainTextResponse, responses=PROMETHEUS_TEXT
    )
    async def metrics_endpoint() -> Response:
        """Prometheus exposition."""
        if before_scrape is not None:
            await before_scrape()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def build_router(
    metrics: Metrics,
    readiness: ReadinessCheck,
    *,
    channels: Sequence[str],
    api_token: str | None = None,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
    providers: Mapping[str, str] | None = None,
    extra: Sequence[APIRouter] = (),
) -> APIRouter:
    """The service's routes; ``/v1`` needs ``Authorization: Bearer <api_token>`` when set.
    ``extra`` routers are mounted under ``/v1``, behind the same token.

    ``channels`` are every channel name the service knows, configured or not: the stats
    of one that is switched off today are still there to read, and any other name is a
    422 rather than a page of zeros.
    """
    router = build_ops_router(metrics, readiness, before_scrape=before_scrape)
    # without a token the document claims no security, as the service then asks for none
    v1 = APIRouter(
        prefix="/v1",
        dependencies=[Depends(bearer_guard(api_token))] if api_token is not None else [],
        responses=error_responses(401) if api_token is not None else {},
    )
    known_channels = sorted(channels)

    @v1.get("/orders/{order_id}", tags=["orders"], responses=error_responses(404))
    async def get_order(order_id: str, engine: Engine) -> dict[str, Any]:
        """State, shipment states, event history and notifications with their status."""
        view = await order_view(engine, order_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"order {order_id!r} not found")
        return view

    @v1.delete(
        "/customers/{customer_id}/personal-data",
        tags=["privacy"],
        responses=error_responses(
            503, s503="NATS could not remove every dead letter; the database part is done"
        ),
    )
    async def erase(customer_id: str, engine: Engine, request: Request) -> dict[str, Any]:
        """Erase one customer's contacts, names and message bodies (ids and fates stay),
        their in-app feed items and stored preferences, and their refused events from
        the dead letters."""
        try:
            report = await erase_customer(
                engine, customer_id, delete_dead_letter=request.app.state.delete_dead_letter
            )
        except DeadLetterError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        return {
            "customer_id": customer_id,
            "events": report.events,
            "notifications": report.notifications,
            "dead_letters": report.dead_letters,
            "feed_items": report.feed_items,
            "preferences": report.preferences,
        }

    @v1.get("/stats/delivery", tags=["operations"])
    async def stats(
        engine: Engine,
        window: Annotated[
            str,
            Query(
                description="e.g. 90s, 15m, 1h, 7d (at most 400d)",
                json_schema_extra={"pattern": WINDOW_SYNTAX.pattern},
            ),
        ] = "1h",
        # a default rather than Annotated: the names are known only when the router is built
        channel: str | None = Query(
            None, description="only this channel", json_schema_extra={"enum": known_channels}
        ),
    ) -> dict[str, Any]:
        """Notifications created in the window, by status, with delivery rates: in total,
        per channel, and per channel x provider x template x state."""
        try:
            if not WINDOW_SYNTAX.fullmatch(window):
                raise ValueError(f"window {window!r} is not a duration like 90s, 15m, 1h or 7d")
            window_s = parse_window(window)
        except ValueError as exc:
            raise query_error("window", str(exc), window) from None
        if channel is not None and channel not in known_channels:
            raise query_error(
                "channel", f"unknown channel; one of {', '.join(known_channels)}", channel
            )
        found = await delivery_stats(engine, window_s, channel=channel, providers=providers)
        return found.as_dict()

    @v1.get("/customers/{customer_id}/dead-push-tokens", tags=["privacy"])
    async def dead_tokens(customer_id: str, engine: Engine) -> dict[str, Any]:
        """Push tokens FCM said are gone, never used again (shown by hash prefix only)."""
        found = await dead_push_token_view(engine, customer_id)
        return {"customer_id": customer_id, "dead_push_tokens": found}

    v1.include_router(build_triage_router())
    v1.include_router(build_preferences_router())
    for router_ in extra:
        v1.include_router(router_)
    router.include_router(v1)
    return router
