"""Building events, publishing them, and running the service in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import uvicorn
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select

from notifier.app import build_service, create_app
from notifier.config import Settings, load_settings
from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.twiliofake import TwilioFake
from notifier.service import Service
from notifier.store.db import create_engine
from notifier.store.tables import notifications
from notifier.streams import StreamSettings, ensure_streams
from tests.support import wait_until

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def event(
    order_id: str,
    state: str,
    minute: int,
    *,
    event_id: str | None = None,
    locale: str = "en-US",
    email: str | None = "ada@example.com",
    phone: str | None = None,
    push_tokens: list[str] | None = None,
    shipment: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A contract-v1 event; shipment states get a shipment unless one is given."""
    body: dict[str, Any] = {
        "event_id": event_id or f"{order_id}-{state}-{minute}",
        "order_id": order_id,
        "source": "web",
        "state": state,
        "occurred_at": (T0 + timedelta(minutes=minute)).isoformat(),
        "customer": {
            "id": f"cust-{order_id}",
            "name": "Ada Lovelace",
            "email": email,
            "locale": locale,
            "timezone": "Europe/Paris",
            "phone": phone,
            "push_tokens": push_tokens or [],
        },
        "attributes": {"store_name": "Tea & Co", "total": "42.00", "currency": "EUR"},
    }
    if state in {
        "shipped",
        "in_transit",
        "out_for_delivery",
        "delivered",
        "delivery_failed",
        "returned",
    }:
        body["shipment"] = shipment or {
            "id": "p1",
            "carrier": "DHL",
            "tracking_number": "JD0001",
            "tracking_url": "https://track.example.com/JD0001",
        }
    body.update(extra)
    return body


async def publish(
    url: str,
    *bodies: dict[str, Any] | bytes,
    msg_ids: list[str] | None = None,
    subject: str = "orders.state.web",
) -> None:
    """Publish raw bodies in order, each with ``Nats-Msg-Id`` (the event id by default)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, StreamSettings())
        for i, body in enumerate(bodies):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers = {}
            if msg_ids is not None:
                headers["Nats-Msg-Id"] = msg_ids[i]
            elif isinstance(body, dict) and "event_id" in body:
                headers["Nats-Msg-Id"] = str(body["event_id"])
            await js.publish(subject, data, headers=headers or None)
    finally:
        await nc.close()


def settings_for(
    nats_url: str, database_url: str, smtp_port: int | None, **overrides: Any
) -> Settings:
    """Settings as a test deployment would have them."""
    values: dict[str, Any] = {
        "environment": "test",
        "nats_url": nats_url,
        "database_url": database_url,
        "smtp_host": "127.0.0.1" if smtp_port else None,
        "smtp_port": smtp_port or 25,
        "smtp_from": "Tea & Co <orders@tea.example.com>",
        "dispatch_backoff_base_s": 0.2,
        "dispatch_backoff_max_s": 1.0,
        "dispatch_max_attempts": 50,
        "breaker_open_s": 1.0,
        # off unless a test is about it: the tests run at any hour
        "quiet_hours": "",
    }
    values.update(overrides)
    return load_settings(**values)


def channel_settings(
    nats_url: str,
    database_url: str,
    smtp_port: int | None,
    *,
    twilio: TwilioFake | None = None,
    fcm: FcmFake | None = None,
    credentials: Path | None = None,
    http_port: int | None = None,
    **overrides: Any,
) -> Settings:
    """Test settings with SMS (Twilio fake) and push (FCM fake) switched on; receipts
    reach the API on ``http_port`` (serve it with :func:`serving`)."""
    values: dict[str, Any] = {}
    if twilio is not None:
        values.update(
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_from="+15005550006",
            twilio_api_base=twilio.base_url,
        )
    if fcm is not None:
        if credentials is None:
            raise ValueError("give the path fcm.write_credentials wrote")
        values.update(fcm_credentials_file=credentials, fcm_api_base=fcm.base_url)
    if http_port is not None:
        values.update(http_port=http_port, public_base_url=f"http://127.0.0.1:{http_port}")
    values.update(overrides)
    return settings_for(nats_url, database_url, smtp_port, **values)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Service, AsyncClient]]:
    """The whole service in this process, its API served over HTTP on
    ``settings.http_port`` (so providers' callbacks can reach it)."""
    service = build_service(settings)
    await service.start()
    app = create_app(service)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=settings.http_port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        base = f"http://127.0.0.1:{settings.http_port}"
        async with AsyncClient(base_url=base) as client:
            yield service, client
    finally:
        server.should_exit = True
        await task
        await service.stop()


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Service, AsyncClient]]:
    """The whole service in this process, with an HTTP client on its API."""
    service = build_service(settings)
    await service.start()
    app = create_app(service)
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            yield service, client
    finally:
        await service.stop()


async def order(client: AsyncClient, order_id: str) -> dict[str, Any] | None:
    """The order as the API shows it, or None before it exists."""
    response = await client.get(f"/v1/orders/{order_id}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


async def publish_apart(url: str, client: AsyncClient, *bodies: dict[str, Any]) -> None:
    """Publish one order's events one at a time, each once the messages of the one before
    are out: steps that arrive apart. (Arriving together, a later step makes the earlier
    steps' messages stale, and they are suppressed: ``test_timing.py``.)"""
    for n, body in enumerate(bodies, 1):
        await publish(url, body)

        async def settled(n: int = n, order_id: str = body["order_id"]) -> bool:
            view = await order(client, order_id)
            return (
                view is not None
                and len(view["events"]) >= n
                and all(x["status"] not in ("queued", "sending") for x in view["notifications"])
            )

        await wait_until(settled, timeout=15)


def statuses(view: dict[str, Any] | None, channel: str = "email") -> dict[str, str]:
    """template → status of the order's notifications on a channel."""
    if view is None:
        return {}
    return {n["template"]: n["status"] for n in view["notifications"] if n["channel"] == channel}


async def stale_rows(database_url: str) -> set[tuple[str, str, str, str]]:
    """(order, channel, template, state) of every notification the ledger suppressed as
    stale: still queued when a later state of its order arrived, so never sent. A test
    that publishes whole lifecycles at once counts each message as sent or stale."""
    n = notifications.c
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(n.order_id, n.channel, n.template, n.state).where(
                        n.last_error.like("stale:%")
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    return {(r.order_id, r.channel, r.template, r.state) for r in rows}
