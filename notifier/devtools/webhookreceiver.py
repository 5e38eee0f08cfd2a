"""A local webhook endpoint that checks signatures and keeps what it receives.

Tests point the real :class:`~notifier.channels.webhook.WebhookChannel` at it, and
``notifier dev`` can register it as a partner so a newcomer sees what partners get. It
serves from the *current* asyncio loop (aiohttp's ``AppRunner``), so an async test
can await an arrival with :meth:`WebhookReceiver.wait_for` instead of polling.

Its answers are scriptable, to rehearse a partner's bad day: :meth:`respond` queues
the next N answers (say 429 with ``Retry-After``), :attr:`latency_s` delays every
answer (timeouts), and :attr:`down` hangs up without answering (a crashed upstream).
Development only: it keeps the last :data:`MAX_DELIVERIES` in memory.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from notifier.channels.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, verify

#: how many deliveries the receiver keeps; older ones fall off the front
MAX_DELIVERIES = 1000
#: how long stop() lets a delayed answer finish before dropping it
SHUTDOWN_TIMEOUT_S = 0.5


@dataclass(frozen=True, slots=True)
class ReceivedDelivery:
    """One POST as the partner saw it, and what the receiver answered."""

    path: str
    headers: dict[str, str]
    #: the exact bytes received
    body: bytes
    #: the body parsed as JSON; None when it is not JSON
    json: Any
    #: the signature header checked out under the receiver's secret
    verified: bool
    #: the status the receiver answered with
    status: int
    #: when it arrived, ISO 8601 in UTC
    received_at: str

    @property
    def delivery_id(self) -> str | None:
        """The ``X-Notifier-Delivery`` header: the same on every attempt at one delivery."""
        return self.headers.get(DELIVERY_HEADER)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able view for the dev page (the parsed body, not the bytes)."""
        return {
            "path": self.path,
            "headers": self.headers,
            "json": self.json,
            "verified": self.verified,
            "status": self.status,
            "received_at": self.received_at,
        }


@dataclass(frozen=True, slots=True)
class _Scripted:
    status: int
    retry_after: str | None


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that accepts POSTs on any path."""

    def __init__(
        self,
        secret: bytes | str | None = None,
        *,
        reject_unverified: bool = True,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        """``secret`` checks signatures (None: nothing verifies); ``reject_unverified``
        answers 401 to a bad signature, as a careful partner would."""
        self._secret = secret
        self._reject_unverified = reject_unverified and secret is not None
        self._deliveries: deque[ReceivedDelivery] = deque(maxlen=max_deliveries)
        self._script: deque[_Scripted] = deque()
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        #: seconds to wait before answering (or hanging up)
        self.latency_s = 0.0
        #: hang up on every request without answering, and record nothing
        self.down = False

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:``port`` (0 = any free port) and return the port bound."""
        if self._runner is not None:
            raise RuntimeError("WebhookReceiver is already running")
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        # Bound here rather than by TCPSite so the port is known without private attributes.
        sock = socket.create_server(("127.0.0.1", port))
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(sock.getsockname()[1])
        return self._port

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        """The port bound by :meth:`start`; fails loudly before that."""
        if self._runner is None or self._port is None:
            raise RuntimeError("WebhookReceiver is not running: call start() first")
        return self._port

    def url(self, path: str = "/hooks") -> str:
        """The URL to register as an endpoint: ``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def respond(
        self, status: int, *, times: int = 1, retry_after: float | str | None = None
    ) -> None:
        """Answer the next ``times`` deliveries with ``status`` (then 200 again);
        ``retry_after`` is sent as given (seconds, or an HTTP-date string)."""
        header = None if retry_after is None else str(retry_after)
        self._script.extend(_Scripted(status, header) for _ in range(times))

    def deliveries(self, path: str | None = None) -> list[ReceivedDelivery]:
        """Everything received so far (on ``path`` only, if given), newest last."""
        found = list(self._deliveries)
        if path is not None:
            wanted = "/" + path.lstrip("/")
            found = [d for d in found if d.path == wanted]
        return found

    def outbox(self, path: str | None = None) -> list[dict[str, Any]]:
        """:meth:`deliveries` as JSON-able dicts, for the dev page."""
        return [d.as_dict() for d in self.deliveries(path)]

    def clear(self) -> None:
        """Forget every delivery and every scripted answer."""
        self._deliveries.clear()
        self._script.clear()

    # The bound sits in the call because a test reads better that way.
    async def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedDelivery]:  # noqa: ASYNC109
        """Wait until at least ``count`` deliveries are held; raises ``TimeoutError`` if not."""
        if count > (self._deliveries.maxlen or count):
            raise ValueError(f"the receiver keeps at most {self._deliveries.maxlen} deliveries")
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self._deliveries) >= count)
        return self.deliveries()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self.down:
            if request.transport is not None:
                request.transport.abort()
            # aiohttp takes a cancelled handler for a vanished client: nothing is written.
            raise asyncio.CancelledError
        verified = self._secret is not None and verify(
            self._secret, request.headers.get(SIGNATURE_HEADER, ""), body
        )
        scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            status, retry_after = scripted.status, scripted.retry_after
        elif self._reject_unverified and not verified:
            status, retry_after = 401, None
        else:
            status, retry_after = 200, None
        await self._record(
            ReceivedDelivery(
                path=request.path,
                headers=dict(request.headers),
                body=body,
                json=_parse_json(body),
                verified=verified,
                status=status,
                received_at=datetime.now(UTC).isoformat(),
            )
        )
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return web.Response(status=status, headers=headers)

    async def _record(self, delivery: ReceivedDelivery) -> None:
        async with self._arrived:
            self._deliveries.append(delivery)
            self._arrived.notify_all()


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
