"""The service and its in-app channel stop cleanly when NATS went away first
(``notifier dev`` on Ctrl-C stops its nats-server before the service has finished
stopping): a connection that is reconnecting is closed, not drained."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx

from notifier.delivery.feed import Announcer, FeedDelivery
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.store.db import create_engine
from tests.integration.test_crash import _env, _start
from tests.support import wait_until


async def test_closing_while_nats_is_down_does_not_raise(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
    server = NatsServer(store_dir=tmp_path / "nats")
    server.start()
    feed = FeedDelivery(engine, Announcer(server.url, None))
    try:
        await feed.start()
        nc = feed._nc
        assert nc is not None and nc.is_connected
        server.stop()
        await wait_until(lambda: nc.is_reconnecting or nc.is_connecting, timeout=10)
        await feed.close()  # a drain would raise ConnectionReconnectingError
        assert nc.is_closed
    finally:
        server.stop()
        await engine.dispose()


async def test_the_service_stops_cleanly_after_nats_went_away(
    mail: MailCatcher, database_url: str, tmp_path: Path
) -> None:
    server = NatsServer(store_dir=tmp_path / "nats")
    server.start()
    env = _env(server.url, database_url, mail.port)
    log = tmp_path / "service.log"
    service = _start(env, log)
    try:
        port = int(env["NOTIFIER_HTTP_PORT"])
        await wait_until(lambda: _ready(port), timeout=60)
        server.stop()  # as Ctrl-C on `notifier dev` stops its nats-server first
        await wait_until(lambda: "reconnecting" in log.read_text(), timeout=15)
        service.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(service.wait, 60)
    finally:
        if service.poll() is None:
            service.kill()
        server.stop()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "notifier stopped" in text


async def _ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False
