"""Dispatch worker processes: ``notifier run --workers N`` starts and watches them.

The process that owns them runs ingest, the outbox and the HTTP API; each worker is
``notifier run --role dispatch`` on the same interpreter, with the owner's settings
passed as ``NOTIFIER_*`` variables, so its sends use a core (and a GIL) of their own.
Nothing is handed between the processes: the per-channel JetStream work queues carry
the dispatch messages, and the ledger's conditional claims decide who sends what, as
between replicas.

A worker that exits unasked is started again after a backoff that doubles from
``RESTART_BASE_S`` to ``RESTART_MAX_S`` (reset once one has run for ``STABLE_S``), with
a log line each time. Stopping sends every worker SIGTERM, so each finishes and records
its sends in flight, and waits for them; one still running after ``STOP_GRACE_S`` is
killed (what it held is retried after its lease).

Each worker holds one end of a socket pair whose other end is its owner's: it says
``ready`` on it once it consumes (until then the owner's ``/readyz`` says it is
starting), and it reads end-of-file there when its owner is gone, however it went
(SIGKILL included), and then stops as on SIGTERM rather than send on unsupervised.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from notifier.config import Role, Settings
from notifier.metrics import Metrics

log = logging.getLogger("notifier")

RESTART_BASE_S = 0.5
RESTART_MAX_S = 30.0
#: a worker that ran this long before it died starts again after the shortest backoff
STABLE_S = 60.0
#: longer than a worker's own graceful stop (its sends in flight, bounded by the providers'
#: timeouts, and 30 s at most for its channel consumers)
STOP_GRACE_S = 45.0
#: how long start-up waits for every worker to consume before it serves regardless
READY_WAIT_S = 60.0
#: what a worker says on its link once it consumes
READY = b"ready\n"


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``NOTIFIER_*`` variables that rebuild them in another process
    (secrets included: a worker needs the providers' credentials); unset ones are left out."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, enum.Enum):
            value = value.value
        env[f"NOTIFIER_{name.upper()}"] = str(value)
    return env


@dataclass
class _Slot:
    """One worker's place: the process in it now, and how often in a row it died."""

    number: int
    http_port: int
    process: asyncio.subprocess.Process | None = None
    #: it said ``ready`` on its link
    ready: bool = False
    started_at: float = 0.0
    last_exit: int | None = None
    failures: int = 0


class WorkerPool:
    """``size`` dispatch processes, each restarted when it dies, stopped on ``stop``."""

    def __init__(
        self, settings: Settings, metrics: Metrics, *, command: Sequence[str] | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.size = settings.dispatch_workers
        #: what starts one worker (the tests' own interpreter too)
        self.command = list(command or [sys.executable, "-m", "notifier", "run"])
        base = settings.http_port
        #: worker i serves /healthz, /readyz and /metrics on the owner's port + i
        self.slots = [_Slot(i, base + i if base else 0) for i in range(1, self.size + 1)]
        self._stopping = asyncio.Event()
        self._all_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start every worker and keep each one running."""
        for slot in self.slots:
            await self._spawn(slot)
        self._tasks = [
            asyncio.create_task(self._keep(slot), name=f"dispatch-worker-{slot.number}")
            for slot in self.slots
        ]

    async def ready(self, timeout_s: float = READY_WAIT_S) -> None:
        """Wait until every worker consumes; after ``timeout_s``, say which do not and
        go on (they are restarted meanwhile, and ``/readyz`` names them)."""
        try:
            await asyncio.wait_for(self._all_ready.wait(), timeout_s)
        except TimeoutError:
            log.warning("after %.0f s, %s", timeout_s, self.health().removeprefix("degraded: "))

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every worker and wait for each to finish its sends; kill the late."""
        self._stopping.set()
        running = self._running()
        if running:
            log.info("stopping %d dispatch worker(s)", len(running))
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace_s)
        for process in self._running():
            log.warning(
                "dispatch worker pid %d still running after %.0fs: killed", process.pid, grace_s
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, *self._listeners, return_exceptions=True)
        self._count()

    def health(self) -> str:
        """``ok`` while every worker consumes, else ``degraded: …`` naming the others."""
        down = [f"{s.number} (exit {s.last_exit})" for s in self.slots if not self._alive(s)]
        starting = [str(s.number) for s in self.slots if self._alive(s) and not s.ready]
        if not down and not starting:
            return "ok"
        said = [f"{', '.join(down)} down, restarting"] if down else []
        said += [f"{', '.join(starting)} starting"] if starting else []
        return f"degraded: dispatch worker(s) {'; '.join(said)}"

    async def _spawn(self, slot: _Slot) -> asyncio.subprocess.Process:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env |= settings_env(self.settings)
        env |= {
            "NOTIFIER_ROLE": Role.DISPATCH.value,
            "NOTIFIER_DISPATCH_WORKERS": "0",
            "NOTIFIER_HTTP_PORT": str(slot.http_port),
        }
        ours, theirs = socket.socketpair()
        try:
            slot.process = process = await asyncio.create_subprocess_exec(
                *self.command,
                "--role",
                Role.DISPATCH.value,
                "--supervisor-fd",
                str(theirs.fileno()),
                env=env,
                pass_fds=(theirs.fileno(),),
                # its own process group: a Ctrl-C at a terminal reaches the owner, which
                # stops the workers in order
                process_group=0,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        slot.ready = False
        slot.started_at = time.monotonic()
        listener = asyncio.create_task(self._listen(slot, process, ours))
        self._listeners.add(listener)
        listener.add_done_callback(self._listeners.discard)
        self._count()
        log.info(
            "dispatch worker %d started (pid %d, /metrics on port %s)",
            slot.number,
            process.pid,
            slot.http_port or "(any)",
        )
        return process

    async def _listen(
        self, slot: _Slot, process: asyncio.subprocess.Process, link: socket.socket
    ) -> None:
        # Holding ``link`` open is what tells the worker its owner lives: it is closed
        # only once the worker has exited.
        reader, writer = await asyncio.open_unix_connection(sock=link)
        try:
            if await reader.readline() == READY and slot.process is process:
                slot.ready = True
                self._count()
                if all(s.ready for s in self.slots):
                    self._all_ready.set()
            await process.wait()
        finally:
            writer.close()

    async def _keep(self, slot: _Slot) -> None:
        while True:
            process = slot.process
            if process is not None:
                slot.last_exit = await process.wait()
                self._count()
                if self._stopping.is_set():
                    return
                if time.monotonic() - slot.started_at >= STABLE_S:
                    slot.failures = 0
            delay = min(RESTART_BASE_S * 2**slot.failures, RESTART_MAX_S)
            slot.failures += 1
            if process is not None:
                log.warning(
                    "dispatch worker %d (pid %d) exited with %s; starting it again in %.1f s",
                    slot.number,
                    process.pid,
                    slot.last_exit,
                    delay,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            self.metrics.dispatch_worker_restarts.inc()
            try:
                started = await self._spawn(slot)
            except OSError as exc:
                log.error("cannot start dispatch worker %d (%s); trying again", slot.number, exc)
                slot.process = None
                continue
            if self._stopping.is_set():  # stop() came while it was starting
                with contextlib.suppress(ProcessLookupError):
                    started.send_signal(signal.SIGTERM)

    def _running(self) -> list[asyncio.subprocess.Process]:
        return [s.process for s in self.slots if s.process and s.process.returncode is None]

    @staticmethod
    def _alive(slot: _Slot) -> bool:
        return slot.process is not None and slot.process.returncode is None

    def _count(self) -> None:
        self.metrics.dispatch_workers.set(sum(1 for s in self.slots if self._alive(s) and s.ready))


class OwnerLink:
    """A dispatch worker's end of the link to the process that started it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Take over the inherited descriptor."""
        sock = socket.socket(fileno=self._fd)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=sock)

    async def ready(self) -> None:
        """Tell the owner this worker consumes."""
        if self._writer is None:
            raise RuntimeError("open the link first")
        with contextlib.suppress(ConnectionError):  # gone already: gone() says so next
            self._writer.write(READY)
            await self._writer.drain()

    async def gone(self) -> None:
        """Return once the owner is gone (its end closed, however it ended)."""
        if self._reader is None:
            raise RuntimeError("open the link first")
        # a write to an owner already gone (``ready``) fails the link instead: gone too
        with contextlib.suppress(OSError):
            while await self._reader.read(1024):
                pass

    def close(self) -> None:
        """Let go of the descriptor."""
        if self._writer is not None:
            self._writer.close()
