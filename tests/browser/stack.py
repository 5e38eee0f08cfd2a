"""The service as a browser test meets it: ``notifier dev`` (or ``notifier run``) as a
subprocess on a free port, ready when ``/readyz`` answers 200, stopped by PID.

Reuse it for any page test (the ``dev`` fixture is one per module):

    async with dev_stack(tmp_path) as stack:
        await stack.emit_demo()
        await stack.wait_for_emails(lambda emails: len(emails) >= 3)
        await page.goto(stack.url("/dev/outbox"))

``notifier_process`` runs any other command the same way (``["run"]`` with the
``NOTIFIER_*`` settings in ``env``) for pages the production service serves.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from notifier.devtools.devdefaults import SECRETS_FILE
from tests.support import free_port, wait_until

#: a first start runs the migrations; a busy 2-core machine needs more than a few seconds
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 40


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``NOTIFIER_*`` (a test's settings are its
    own), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(extra or {})
    return env


def _start(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=out, stderr=out)


@asynccontextmanager
async def notifier_process(
    args: Sequence[str], *, port: int, cwd: Path, env: Mapping[str, str], log: Path
) -> AsyncIterator[str]:
    """Run ``python -m notifier ARGS`` and yield its base URL once ``/readyz`` is 200;
    on exit stop it (SIGTERM, then SIGKILL) and fail if it did not stop cleanly."""
    base = f"http://127.0.0.1:{port}"
    process = _start([sys.executable, "-m", "notifier", *args], cwd=cwd, env=env, log=log)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as client:

            async def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"notifier {args[0]} exited {process.returncode}:\n"
                                         f"{_tail(log)}")  # fmt: skip
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, timeout=READY_TIMEOUT_S, interval=0.2)
        yield base
        process.terminate()
        code = await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        assert code == 0, f"notifier {args[0]} exited {code} on SIGTERM:\n{_tail(log)}"
    finally:
        if process.poll() is None:
            process.kill()
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)


@dataclass(frozen=True)
class DevStack:
    """A running ``notifier dev``: its URL, its data directory and its NATS."""

    base_url: str
    data_dir: Path
    work_dir: Path
    env: Mapping[str, str]

    def url(self, path: str) -> str:
        """``path`` on this server."""
        return self.base_url + path

    @property
    def nats_url(self) -> str:
        """The NATS the dev server started (it writes the URL down while it runs)."""
        return (self.data_dir / "nats.url").read_text().strip()

    def secret(self, field: str) -> str:
        """A dev secret (``feed_secret``, ``track_secret``) as ``notifier dev`` keeps it, to
        mint a customer or tracking token with :func:`notifier.signing.mint` (unless the
        test gave its own in ``env``)."""
        kept: dict[str, str] = json.loads((self.data_dir / SECRETS_FILE).read_text())
        return kept[field]

    async def get_json(self, path: str) -> Any:
        """``GET path`` as JSON (``Accept: application/json``); fails on a non-200."""
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(self.url(path), headers={"Accept": "application/json"})
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text[:300]}"
        return answer.json()

    async def emit(self, *args: str) -> str:
        """Run ``notifier emit ARGS --nats-url <this NATS>``; its stdout."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "notifier", "emit", *args, "--nats-url", self.nats_url,
            cwd=self.work_dir, env=dict(self.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        assert process.returncode == 0, f"notifier emit failed: {err.decode()}"
        return out.decode()

    async def emit_demo(self, orders: int = 3) -> list[str]:
        """Publish the built-in demo; the ids of its lifecycle orders (``DEMO-1001-…``:
        the alert orders it also makes, ``DEMO-STUCK-…`` and the like, are left out)."""
        out = await self.emit("--demo", "--orders", str(orders))
        [line] = [line for line in out.splitlines() if line.startswith("demo orders:")]
        made = line.removeprefix("demo orders:").split("(")[0].replace(",", " ").split()
        return [o for o in made if o.split("-")[1].isdigit()]

    async def emit_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Publish ``events`` (contract-v1 dicts) as ``notifier emit`` would from a file."""
        path = self.work_dir / f"events-{time.monotonic_ns()}.jsonl"
        path.write_text("".join(json.dumps(event) + "\n" for event in events))
        await self.emit(str(path))

    async def wait_for_emails(
        self,
        done: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30,  # noqa: ASYNC109 - the error then names what we waited for
    ) -> list[dict[str, Any]]:
        """Poll ``/dev/outbox`` (JSON) until ``done(emails)``; the emails then."""
        emails: list[dict[str, Any]] = []

        async def arrived() -> bool:
            nonlocal emails
            emails = await self.get_json("/dev/outbox?format=json")
            return done(emails)

        await wait_until(arrived, timeout=timeout, interval=0.2)
        return emails


@asynccontextmanager
async def dev_stack(
    work_dir: Path, *, env: Mapping[str, str] | None = None
) -> AsyncIterator[DevStack]:
    """``notifier dev`` on a free port, its data under ``work_dir/dev``; ``env`` adds
    ``NOTIFIER_*`` settings (the test process's own are left out)."""
    port = free_port()
    data_dir = work_dir / "dev"
    environment = clean_environment(env)
    args = ["dev", "--port", str(port), "--data-dir", str(data_dir)]
    log = work_dir / "notifier-dev.log"
    async with notifier_process(args, port=port, cwd=work_dir, env=environment, log=log) as base:
        yield DevStack(base_url=base, data_dir=data_dir, work_dir=work_dir, env=environment)
