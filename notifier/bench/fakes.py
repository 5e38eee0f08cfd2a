"""The provider fakes (SMTP to aiosmtpd, Twilio, FCM), each in a process of its own.

They used to run on the bench's own event loop, parsing every email and answering every
request on the cores the service was being measured on, and all three behind one GIL.
Here each runs in a helper process (``fakehost.py``), on the load side's cores where
there are enough to split (``cores.py``), with a small control API on 127.0.0.1: what
was received (channel, key, when), forget it all, and write what was received back out
as the messages that were sent, which the client ceiling replays (``clients.py``).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx

from notifier.bench.child import Child, bench_env
from notifier.bench.cores import CoreLayout
from notifier.bench.fakehost import FAKES
from notifier.bench.latency import Received, timestamp


class FakesHost:
    """The parent's handle on the fakes' processes: where each fake listens, and control."""

    def __init__(
        self, work: Path, log_dir: Path, layout: CoreLayout, *, account_sid: str, auth_token: str
    ) -> None:
        self.work = work
        self.log_dir = log_dir
        self.layout = layout
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.credentials_file = work / "fcm.json"
        self._children: dict[str, Child] = {}
        self._ready: dict[str, dict[str, Any]] = {}
        self._http = httpx.AsyncClient(timeout=300.0)

    async def start(self) -> None:
        """Start a helper per fake and wait until every fake listens."""
        self.work.mkdir(parents=True, exist_ok=True)
        for fake in FAKES:
            args = ["--fake", fake, "--account-sid", self.account_sid]
            args += ["--credentials", str(self.credentials_file)]
            self._children[fake] = await Child.start(
                "notifier.bench.fakehost",
                args,
                self.log_dir / f"bench-fake-{fake}.log",
                # the auth token is a secret of sorts: not on the command line
                env=bench_env({"BENCH_TWILIO_AUTH_TOKEN": self.auth_token}),
                place=self.layout.pin_load,
            )
        for fake, child in self._children.items():
            self._ready[fake] = await child.ready()

    @property
    def smtp_port(self) -> int:
        """The SMTP sink's port."""
        return int(self._field("email", "smtp_port"))

    @property
    def twilio_base_url(self) -> str:
        """What ``NOTIFIER_TWILIO_API_BASE`` should be."""
        return str(self._field("sms", "twilio_base_url"))

    @property
    def fcm_base_url(self) -> str:
        """What ``NOTIFIER_FCM_API_BASE`` should be."""
        return str(self._field("push", "fcm_base_url"))

    async def clear(self) -> None:
        """Forget everything the fakes received."""
        answers = await asyncio.gather(*(self._http.post(self._url(f, "/clear")) for f in FAKES))
        for answer in answers:
            answer.raise_for_status()

    async def received(self) -> list[Received]:
        """Every send the fakes received, as the latency join wants it."""
        answers = await asyncio.gather(*(self._http.get(self._url(f, "/received")) for f in FAKES))
        found = []
        for answer in answers:
            answer.raise_for_status()
            found += [Received(c, key, timestamp(at)) for c, key, at in answer.json()["sends"]]
        return found

    async def export(self, path: Path) -> dict[str, int]:
        """Write what the fakes received to ``path`` as the messages that were sent
        (JSON lines of ``OutboundMessage``); returns how many per channel."""
        parts = {fake: path.with_name(f"{path.stem}-{fake}.jsonl") for fake in FAKES}
        answers = await asyncio.gather(
            *(self._http.post(self._url(f, "/export"), json={"path": str(parts[f])}) for f in FAKES)
        )
        counts = {}
        for fake, answer in zip(FAKES, answers, strict=True):
            answer.raise_for_status()
            counts[fake] = int(answer.json()["count"])
        await asyncio.to_thread(_concatenate, list(parts.values()), path)
        return counts

    async def stop(self) -> None:
        """Stop the helpers (each hangs up on every client)."""
        children, self._children = self._children, {}
        await asyncio.gather(*(child.stop() for child in children.values()))
        await self._http.aclose()

    def _field(self, fake: str, name: str) -> Any:
        ready = self._ready.get(fake, {})
        if name not in ready:
            raise RuntimeError("the fakes are not started: call start() first")
        return ready[name]

    def _url(self, fake: str, path: str) -> str:
        return str(self._field(fake, "control_url")) + path


def _concatenate(parts: list[Path], path: Path) -> None:
    with path.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, out)
            part.unlink()
