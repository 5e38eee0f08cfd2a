"""Running ``notifier run --workers N`` as a child process, and looking at its workers."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port


def free_ports(count: int) -> int:
    """A port such that it and the ``count - 1`` after it are free (the owner's, then one
    per worker)."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports")


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``notifier run ARGS`` with ``env``, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "notifier", "run", *args], env=env, stdout=out, stderr=out
        )


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from ``/proc``)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


async def sample_sum(port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples on ``port``'s ``/metrics`` that carry ``labels``."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def readiness(port: int) -> dict[str, Any] | None:
    """``/readyz`` on ``port``, or None while nothing answers there."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            answer: dict[str, Any] = (await client.get(f"http://127.0.0.1:{port}/readyz")).json()
    except httpx.HTTPError:
        return None
    return answer


def stop(process: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """SIGTERM and wait (call it off the event loop: the fakes in the loop must keep
    answering); SIGKILL if it does not stop in time."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
