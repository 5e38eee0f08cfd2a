"""The provider fakes (aiosmtpd mail catcher, Twilio, FCM) in a process of their own.

They used to run on the bench's own event loop, parsing every email and answering every
request on the cores the service was being measured on. Here they run in a helper
process (``python -m notifier.bench.fakes``) with a small control API on 127.0.0.1: what
was received (channel, key, when), forget it all, and write what was received back out
as the messages that were sent, which the client ceiling replays (``clients.py``).

The parent holds a :class:`FakesHost`; the helper's side is :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from aiohttp import web

from notifier.bench.child import Child, bench_env, say
from notifier.bench.cores import CoreLayout
from notifier.bench.latency import Received, timestamp
from notifier.channels.base import OutboundMessage
from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.fcmwire import ReceivedPush
from notifier.devtools.mailcatcher import CaughtMessage, MailCatcher
from notifier.devtools.twiliofake import TwilioFake
from notifier.devtools.twiliowire import FakeMessage

#: the fakes keep every message of a run
KEEP = 10_000_000


class FakesHost:
    """The parent's handle on the fakes' process: where each fake listens, and control."""

    def __init__(
        self, work: Path, log_path: Path, layout: CoreLayout, *, account_sid: str, auth_token: str
    ) -> None:
        self.work = work
        self.log_path = log_path
        self.layout = layout
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.credentials_file = work / "fcm.json"
        self._child: Child | None = None
        self._ready: dict[str, Any] = {}
        self._http = httpx.AsyncClient(timeout=120.0)

    async def start(self) -> None:
        """Start the helper and wait until every fake listens."""
        self.work.mkdir(parents=True, exist_ok=True)
        args = ["--account-sid", self.account_sid, "--credentials", str(self.credentials_file)]
        self._child = await Child.start(
            "notifier.bench.fakes",
            args,
            self.log_path,
            # the auth token is a secret of sorts: not on the command line
            env=bench_env({"BENCH_TWILIO_AUTH_TOKEN": self.auth_token}),
            place=self.layout.pin_load,
        )
        self._ready = await self._child.ready()

    @property
    def smtp_port(self) -> int:
        """The mail catcher's port."""
        return int(self._field("smtp_port"))

    @property
    def twilio_base_url(self) -> str:
        """What ``NOTIFIER_TWILIO_API_BASE`` should be."""
        return str(self._field("twilio_base_url"))

    @property
    def fcm_base_url(self) -> str:
        """What ``NOTIFIER_FCM_API_BASE`` should be."""
        return str(self._field("fcm_base_url"))

    @property
    def pid(self) -> int:
        """The helper's PID."""
        if self._child is None:
            raise RuntimeError("the fakes are not started")
        return self._child.pid

    async def clear(self) -> None:
        """Forget everything the fakes received."""
        (await self._http.post(self._url("/clear"))).raise_for_status()

    async def received(self) -> list[Received]:
        """Every send the fakes received, as the latency join wants it."""
        answer = await self._http.get(self._url("/received"))
        answer.raise_for_status()
        return [Received(c, key, timestamp(at)) for c, key, at in answer.json()["sends"]]

    async def export(self, path: Path) -> dict[str, int]:
        """Write what the fakes received to ``path`` as the messages that were sent
        (JSON lines of ``OutboundMessage``); returns how many per channel."""
        answer = await self._http.post(self._url("/export"), json={"path": str(path)})
        answer.raise_for_status()
        counts: dict[str, int] = answer.json()
        return counts

    async def stop(self) -> None:
        """Stop the helper (it hangs up on every client)."""
        child, self._child = self._child, None
        await self._http.aclose()
        if child is not None:
            await child.stop()

    def _field(self, name: str) -> Any:
        if name not in self._ready:
            raise RuntimeError("the fakes are not started: call start() first")
        return self._ready[name]

    def _url(self, path: str) -> str:
        return str(self._field("control_url")) + path


def outbound_email(m: CaughtMessage) -> OutboundMessage:
    """A caught email as the message that was sent (its notification id from the
    Message-ID, ``<id@domain>``)."""
    notification_id = m.message_id.strip("<>").rpartition("@")[0] or m.message_id
    return OutboundMessage(
        notification_id=notification_id,
        channel="email",
        to=m.rcpt_tos[0] if m.rcpt_tos else "",
        text=m.text,
        subject=m.subject,
        html=m.html,
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


class _Fakes:
    """The helper's side: the three fakes and the control API, on one loop."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.catcher = MailCatcher(max_messages=KEEP)
        self.twilio = TwilioFake(account_sid, auth_token)
        self.fcm = FcmFake(max_messages=KEEP)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2**20)
        app.router.add_post("/clear", self._clear)
        app.router.add_get("/received", self._received)
        app.router.add_post("/export", self._export)
        return app

    async def _clear(self, _request: web.Request) -> web.Response:
        self.catcher.clear()
        self.twilio.clear()
        self.fcm.clear()
        return web.json_response({})

    async def _received(self, _request: web.Request) -> web.Response:
        sends = [("email", m.message_id, m.received_at) for m in self.catcher.messages()]
        sends += [("sms", m.sid, m.received_at) for m in self.twilio.messages()]
        sends += [
            ("push", p.data.get("notification_id", ""), p.received_at) for p in self.fcm.messages()
        ]
        return web.json_response({"sends": sends})

    async def _export(self, request: web.Request) -> web.Response:
        path = Path((await request.json())["path"])
        messages = {
            "email": [outbound_email(m) for m in self.catcher.messages()],
            "sms": [outbound_sms(m) for m in self.twilio.messages()],
            "push": [outbound_push(m) for m in self.fcm.messages()],
        }
        await asyncio.to_thread(_write_lines, path, messages)
        return web.json_response({channel: len(sent) for channel, sent in messages.items()})


def _write_lines(path: Path, messages: dict[str, list[OutboundMessage]]) -> None:
    with path.open("w") as out:
        for sent in messages.values():
            out.writelines(json.dumps(asdict(m), ensure_ascii=False) + "\n" for m in sent)


async def _serve(account_sid: str, auth_token: str, credentials: Path) -> None:
    fakes = _Fakes(account_sid, auth_token)
    smtp_port = await fakes.catcher.start(port=0)
    await fakes.twilio.start()
    await fakes.fcm.start()
    fakes.fcm.write_credentials(credentials)
    runner = web.AppRunner(fakes.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    say(
        ready=True,
        smtp_port=smtp_port,
        twilio_base_url=fakes.twilio.base_url,
        fcm_base_url=fakes.fcm.base_url,
        control_url=f"http://127.0.0.1:{runner.addresses[0][1]}",
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await fakes.fcm.stop()
        await fakes.twilio.stop()
        await fakes.catcher.stop()


def main() -> None:
    """The helper: start the fakes, say where they listen, serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m notifier.bench.fakes")
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--credentials", type=Path, required=True)
    args = parser.parse_args()
    auth_token = os.environ["BENCH_TWILIO_AUTH_TOKEN"]
    asyncio.run(_serve(args.account_sid, auth_token, args.credentials))


if __name__ == "__main__":
    main()
