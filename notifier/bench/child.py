"""A bench helper process: ``python -m notifier.bench.<module>``, talking on stdout.

The fakes, the publisher and the client ceiling each run in a process of their own, so
that none takes CPU from the process being measured. Each writes one JSON object per
line on its stdout: the first line says it is ready (and where it listens), later ones
report progress or its result. Its stderr goes to a log file in the run's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: how long a helper has to say it is ready
READY_TIMEOUT_S = 60.0


class ChildError(RuntimeError):
    """A helper process failed; the message ends with its log's tail."""


class Child:
    """One running helper process; ``place`` pins it as soon as it exists."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self._process = process
        self.log_path = log_path

    @classmethod
    async def start(
        cls,
        module: str,
        args: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        place: Callable[[int], None] | None = None,
    ) -> Child:
        """Start ``python -m module args``; ``place(pid)`` is called right after."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=dict(env) if env is not None else None,
                start_new_session=True,
                limit=2**24,
            )
        if place is not None:
            place(process.pid)
        return cls(process, log_path)

    @property
    def pid(self) -> int:
        """The helper's PID."""
        return self._process.pid

    async def message(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The next JSON line it writes; ChildError when it ends first."""
        assert self._process.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                line = await self._process.stdout.readline()
        except TimeoutError:
            raise ChildError(f"no word from the helper in {timeout_s:.0f}s{self._tail()}") from None
        if not line:
            code = await self._process.wait()
            raise ChildError(f"the helper exited ({code}){self._tail()}")
        found: dict[str, Any] = json.loads(line)
        return found

    async def ready(self) -> dict[str, Any]:
        """Its first line, which says it is ready."""
        return await self.message(READY_TIMEOUT_S)

    async def wait(self) -> int:
        """Wait for it to exit; ChildError unless it exits 0."""
        code = await self._process.wait()
        if code != 0:
            raise ChildError(f"the helper exited ({code}){self._tail()}")
        return code

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not gone in time; nothing if it has gone."""
        if self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.terminate()
        try:
            async with asyncio.timeout(timeout_s):
                await self._process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()

    def _tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
            return ":\n" + "\n".join(tail) if tail else ""
        return ""


def say(**fields: Any) -> None:
    """In a helper: write one JSON line to the parent."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without its ``NOTIFIER_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return env | dict(extra or {})
