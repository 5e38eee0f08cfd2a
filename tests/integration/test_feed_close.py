"""The in-app channel stops cleanly when NATS went away first (``notifier dev`` on
Ctrl-C stops its nats-server before the service has finished stopping)."""

from __future__ import annotations

from pathlib import Path

from notifier.delivery.feed import Announcer, FeedDelivery
from notifier.devtools.natsserver import NatsServer
from notifier.store.db import create_engine
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
