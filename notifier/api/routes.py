"""HTTP API: health, readiness, metrics, and what happened to an order."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.metrics import Metrics
from notifier.store.maintenance import erase_customer
from notifier.store.queries import order_view

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
        """NATS and the database are reachable; 503 names what is not."""
        checks = await readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

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

    router.include_router(v1)
    return router
