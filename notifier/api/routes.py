"""HTTP API: health, readiness, metrics, and what happened to an order."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.delivery.stats import delivery_stats, parse_window
from notifier.metrics import Metrics
from notifier.store.maintenance import erase_customer
from notifier.store.queries import order_view
from notifier.store.tables import dead_push_tokens

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


Engine = Annotated[AsyncEngine, Depends(_engine)]


def _token_check(api_token: str | None) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        if api_token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_token}".encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    return check


def build_router(
    metrics: Metrics,
    readiness: ReadinessCheck,
    *,
    api_token: str | None = None,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
    providers: Mapping[str, str] | None = None,
) -> APIRouter:
    """The service's routes; ``/v1`` needs ``Authorization: Bearer <api_token>`` when set."""
    router = APIRouter()
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_token_check(api_token))])

    @router.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """NATS and the database are reachable; 503 names what is not. A ``degraded``
        check (ingest stalled) keeps 200: the pod still serves, but says so."""
        checks = await readiness()
        down = [v for v in checks.values() if v != "ok" and not v.startswith("degraded")]
        status = "unavailable" if down else "ok"
        if not down and any(v != "ok" for v in checks.values()):
            status = "degraded"
        return JSONResponse({"status": status, "checks": checks},
                            status_code=503 if down else 200)

    @router.get("/metrics", tags=["operations"])
    async def metrics_endpoint() -> Response:
        """Prometheus exposition."""
        if before_scrape is not None:
            await before_scrape()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @v1.get("/orders/{order_id}", tags=["orders"])
    async def get_order(order_id: str, engine: Engine) -> dict[str, Any]:
        """State, shipment states, event history and notifications with their status."""
        view = await order_view(engine, order_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"order {order_id!r} not found")
        return view

    @v1.delete("/customers/{customer_id}/personal-data", tags=["privacy"])
    async def erase(customer_id: str, engine: Engine) -> dict[str, Any]:
        """Erase one customer's contacts, names and message bodies (ids and fates stay)."""
        report = await erase_customer(engine, customer_id)
        return {"customer_id": customer_id, "events": report.events,
                "notifications": report.notifications}

    @v1.get("/stats/delivery", tags=["operations"])
    async def stats(
        engine: Engine,
        window: Annotated[str, Query(description="e.g. 15m, 1h, 24h, 7d")] = "1h",
        channel: Annotated[str | None, Query(description="only this channel")] = None,
    ) -> dict[str, Any]:
        """Notifications created in the window, by status, with delivery rates: in total,
        per channel, and per channel x provider x template x state."""
        try:
            window_s = parse_window(window)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        found = await delivery_stats(engine, window_s, channel=channel, providers=providers)
        return found.as_dict()

    @v1.get("/customers/{customer_id}/dead-push-tokens", tags=["privacy"])
    async def dead_tokens(customer_id: str, engine: Engine) -> dict[str, Any]:
        """Push tokens FCM said are gone, never used again (shown by hash prefix only)."""
        t = dead_push_tokens.c
        async with engine.connect() as conn:
            rows = (await conn.execute(
                select(t.token_sha256, t.reason, t.created_at)
                .where(t.customer_id == customer_id).order_by(t.created_at)
            )).all()
        return {"customer_id": customer_id, "dead_push_tokens": [
            {"token_sha256_prefix": r.token_sha256[:12], "reason": r.reason,
             # SQLite hands back naive datetimes; everything is stored in UTC
             "marked_at": (r.created_at if r.created_at.tzinfo
                           else r.created_at.replace(tzinfo=UTC)).isoformat()}
            for r in rows]}

    router.include_router(v1)
    return router
