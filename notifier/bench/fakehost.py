"""The helper side of ``fakes.py``: one provider fake and its control API, in this process.

``python -m notifier.bench.fakehost --fake email|sms|push`` starts that fake on
127.0.0.1, says where it listens (one JSON line on stdout), and serves a control API
until SIGTERM: ``POST /clear``, ``GET /received`` (channel, key, when, per send, the
keys the latency join uses) and ``POST /export`` (what was received, written as the
messages that were sent, JSON lines of ``OutboundMessage``, for the client ceiling).

The Twilio and FCM fakes are the devtools ones. Email goes to aiosmtpd too, but to
:class:`RawMailSink` rather than the devtools mail catcher: the catcher parses every
message as it arrives (~3 ms each here), which would make the fake, not our client,
the limit of the client ceiling. The sink keeps the bytes and the arrival time, and
parses when asked, after the phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from aiosmtpd.smtp import SMTP

from notifier.bench.child import say
from notifier.channels.base import OutboundMessage
from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.fcmwire import ReceivedPush
from notifier.devtools.mailcatcher import BANNER_HOSTNAME, CaughtMessage
from notifier.devtools.twiliofake import TwilioFake
from notifier.devtools.twiliowire import FakeMessage

#: the fakes keep every message of a run
KEEP = 10_000_000
FAKES = ("email", "sms", "push")


def outbound_email(m: CaughtMessage) -> OutboundMessage:
    """A caught email as the message that was sent (its notification id from the
    Message-ID, ``<id@domain>``)."""
    notification_id = m.message_id.strip("<>").rpartition("@")[0] or m.message_id
    return OutboundMessage(
        notification_id=notification_id,
        channel="email",
        to=m.rcpt_tos[0] if m.rcpt_tos else "",
        # SMTP carries lines as CRLF; the rendering had plain newlines
        text=m.text.replace("\r\n", "\n"),
        subject=m.subject,
        html=m.html.replace("\r\n", "\n") if m.html is not None else None,
        locale=m.headers.get("Content-Language", "en"),
    )


def outbound_sms(m: FakeMessage) -> OutboundMessage:
    """An accepted SMS as the message that was sent (its notification id from the status
    callback's ``n``, if it had one)."""
    query = parse_qs(urlsplit(m.status_callback or "").query)
    notification_id = query.get("n", [m.sid])[0]
    return OutboundMessage(notification_id=notification_id, channel="sms", to=m.to, text=m.body)


def outbound_push(m: ReceivedPush) -> OutboundMessage:
    """An accepted push as the message that was sent."""
    return OutboundMessage(
        notification_id=m.data.get("notification_id", m.message_id),
        channel="push",
        to=m.token,
        text=m.body or "",
        subject=m.title,
        order_id=m.data.get("order_id", ""),
        state=m.data.get("state", ""),
    )


@dataclass(frozen=True, slots=True)
class _Raw:
    data: bytes
    mail_from: str
    rcpt_tos: list[str]
    received_at: str


class RawMailSink:
    """aiosmtpd on this loop that keeps each message's bytes and arrival time."""

    def __init__(self) -> None:
        self._kept: list[_Raw] = []
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1 and return it."""
        loop = asyncio.get_running_loop()
        handler = _Keep(self._kept)

        def new_session() -> Any:
            session = SMTP(handler, hostname=BANNER_HOSTNAME, enable_SMTPUTF8=True, loop=loop)
            self._sessions.add(session)
            return session

        self._server = await loop.create_server(new_session, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Stop listening and hang up on every client."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()

    def clear(self) -> None:
        """Forget every message."""
        self._kept.clear()

    def received(self) -> list[tuple[str, str, str]]:
        """(``email``, Message-ID, arrival) per message: the headers alone are parsed."""
        parser = BytesHeaderParser()
        return [
            ("email", str(parser.parsebytes(raw.data).get("Message-ID", "")), raw.received_at)
            for raw in self._kept
        ]

    def outbound(self) -> list[OutboundMessage]:
        """Every message parsed, as the message that was sent."""
        return [
            outbound_email(
                CaughtMessage.parse(raw.data, mail_from=raw.mail_from, rcpt_tos=raw.rcpt_tos)
            )
            for raw in self._kept
        ]


class _Keep:
    """The aiosmtpd handler: every ``DATA`` is kept as it came."""

    def __init__(self, kept: list[_Raw]) -> None:
        self._kept = kept

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = datetime.now(UTC).isoformat()
        data = envelope.original_content or b""
        self._kept.append(_Raw(data, envelope.mail_from or "", list(envelope.rcpt_tos), arrived))
        return "250 OK: kept"


@dataclass(frozen=True, slots=True)
class _Served:
    """One running fake, as the control API drives it."""

    where: dict[str, Any]
    clear: Callable[[], None]
    received: Callable[[], list[tuple[str, str, str]]]
    outbound: Callable[[], list[OutboundMessage]]
    stop: Callable[[], Awaitable[None]]


async def _email() -> _Served:
    sink = RawMailSink()
    port = await sink.start()
    return _Served({"smtp_port": port}, sink.clear, sink.received, sink.outbound, sink.stop)


async def _sms(account_sid: str, auth_token: str) -> _Served:
    fake = TwilioFake(account_sid, auth_token)
    await fake.start()
    return _Served(
        {"twilio_base_url": fake.base_url},
        fake.clear,
        lambda: [("sms", m.sid, m.received_at) for m in fake.messages()],
        lambda: [outbound_sms(m) for m in fake.messages()],
        fake.stop,
    )


async def _push(credentials: Path) -> _Served:
    fake = FcmFake(max_messages=KEEP)
    await fake.start()
    fake.write_credentials(credentials)
    return _Served(
        {"fcm_base_url": fake.base_url},
        fake.clear,
        lambda: [
            ("push", p.data.get("notification_id", ""), p.received_at) for p in fake.messages()
        ],
        lambda: [outbound_push(p) for p in fake.messages()],
        fake.stop,
    )


def _control(served: _Served) -> web.Application:
    async def clear(_request: web.Request) -> web.Response:
        served.clear()
        return web.json_response({})

    async def received(_request: web.Request) -> web.Response:
        return web.json_response({"sends": served.received()})

    async def export(request: web.Request) -> web.Response:
        path = Path((await request.json())["path"])
        messages = served.outbound()
        await asyncio.to_thread(_write_lines, path, messages)
        return web.json_response({"count": len(messages)})

    app = web.Application()
    app.router.add_post("/clear", clear)
    app.router.add_get("/received", received)
    app.router.add_post("/export", export)
    return app


def _write_lines(path: Path, messages: list[OutboundMessage]) -> None:
    with path.open("w") as out:
        out.writelines(json.dumps(asdict(m), ensure_ascii=False) + "\n" for m in messages)


async def _serve(fake: str, account_sid: str, credentials: Path) -> None:
    if fake == "email":
        served = await _email()
    elif fake == "sms":
        served = await _sms(account_sid, os.environ["BENCH_TWILIO_AUTH_TOKEN"])
    else:
        served = await _push(credentials)
    runner = web.AppRunner(_control(served), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    say(ready=True, control_url=f"http://127.0.0.1:{runner.addresses[0][1]}", **served.where)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await served.stop()


def main() -> None:
    """The helper: start one fake, say where it listens, serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m notifier.bench.fakehost")
    parser.add_argument("--fake", choices=FAKES, required=True)
    parser.add_argument("--account-sid", default="")
    parser.add_argument("--credentials", type=Path, default=Path("fcm.json"))
    args = parser.parse_args()
    asyncio.run(_serve(args.fake, args.account_sid, args.credentials))


if __name__ == "__main__":
    main()
