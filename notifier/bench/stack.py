"""What a benchmark phase runs against: nats-server, the service as its own process,
and ways to watch both (consumer progress, RSS, the ledger)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.bench.workload import Outgoing
from notifier.core.notification_status import UNSETTLED, NotificationStatus
from notifier.devtools.natsserver import free_port
from notifier.store.moves import status_values
from notifier.store.tables import notifications
from notifier.streams import ORDERS_STREAM

INGEST_DURABLE = "notifier-ingest"
#: publishes in flight before waiting for their acks
PUBLISH_CHUNK = 2000


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of ``pid`` in MB, from ``/proc``."""
    fields: dict[str, float] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


@dataclass
class Service:
    """``notifier run`` in a child process, configured only by environment variables."""

    env: Mapping[str, str]
    log_path: Path
    http_port: int
    #: called with the child's PID as soon as it exists (to pin it to cores)
    place: Callable[[int], None] | None = None
    _process: subprocess.Popen[bytes] | None = None

    @classmethod
    def configure(
        cls,
        settings: Mapping[str, str],
        log_path: Path,
        *,
        place: Callable[[int], None] | None = None,
    ) -> Service:
        """The service with ``settings`` (``NOTIFIER_*`` names) on a free HTTP port; any
        ``NOTIFIER_*`` variable of the caller's own is left out, so only these apply;
        ``place(pid)`` runs right after it starts."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env |= dict(settings) | {"NOTIFIER_HTTP_PORT": str(port)}
        env["NOTIFIER_PUBLIC_BASE_URL"] = env.get("NOTIFIER_PUBLIC_BASE_URL") or (
            f"http://127.0.0.1:{port}"
        )
        return cls(env, log_path, port, place)

    @property
    def base_url(self) -> str:
        """Where its HTTP API listens."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        """The child's PID (the service itself, no wrapper)."""
        if self._process is None:
            raise RuntimeError("the service is not started")
        return self._process.pid

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start it and wait for ``/readyz``; a child that dies says why (its log's tail)."""
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [sys.executable, "-m", "notifier", "run"],
            env=dict(self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if self.place is not None:
            self.place(self._process.pid)
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(f"the service exited at start-up:\n{self._tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base_url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"the service was not ready within {timeout_s:.0f}s:\n{self._tail()}")

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit code."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            return await asyncio.to_thread(process.wait)

    def _tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


async def publish(js: JetStreamContext, messages: Iterable[Outgoing]) -> int:
    """Publish as fast as JetStream acks; returns how many went out."""
    count = 0
    for out in messages:
        await js.publish_async(out.subject, out.data, headers={"Nats-Msg-Id": out.msg_id})
        count += 1
        if count % PUBLISH_CHUNK == 0:
            await js.publish_async_completed()
    await js.publish_async_completed()
    return count


async def last_seq(js: JetStreamContext) -> int:
    """The ORDERS stream's last sequence number."""
    info = await js.stream_info(ORDERS_STREAM)
    return int(info.state.last_seq)


async def consumer_progress(js: JetStreamContext, durable: str = INGEST_DURABLE) -> int | None:
    """The stream sequence up to which the durable has acknowledged everything; None
    while the durable does not exist yet."""
    try:
        info = await js.consumer_info(ORDERS_STREAM, durable)
    except NotFoundError:
        return None
    return int(info.ack_floor.stream_seq) if info.ack_floor else 0


async def acked_through(js: JetStreamContext, durable: str = INGEST_DURABLE) -> int:
    """Like :func:`consumer_progress`, with 0 for a durable that does not exist yet."""
    return await consumer_progress(js, durable) or 0


async def unsettled(engine: AsyncEngine, statuses: Iterable[NotificationStatus] = UNSETTLED) -> int:
    """Ledger rows still on their way (queued, sending, standby, or not yet dispatched)."""
    query = (
        select(func.count())
        .select_from(notifications)
        .where(
            or_(
                notifications.c.status.in_(status_values(statuses)),
                notifications.c.dispatch_pending,
            )
        )
    )
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def wait_until(done: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    """Poll ``done`` every 0.1 s until it says yes (True) or time runs out (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await done():
            return True
        await asyncio.sleep(0.1)
    return False


async def nats_connect(url: str) -> NatsClient:
    """The benchmark's own client (publishing, watching the consumers)."""
    client: NatsClient = await nats.connect(url, name="notifier-bench", max_reconnect_attempts=3)
    return client
