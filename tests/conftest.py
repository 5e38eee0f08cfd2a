"""Fixtures shared by every test package; plain helpers are in ``tests.support``."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.config import DEFAULT_RULES_FILE
from notifier.devtools.natsserver import NatsServer

#: the only hosts a test may resolve: every server a test talks to runs on this machine
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "", None})
_real_getaddrinfo = socket.getaddrinfo
#: quiet hours (on by default) would hold the tests' SMS and push at night; services
#: the tests start as processes inherit this, and a test about quiet hours sets its own
os.environ.setdefault("NOTIFIER_QUIET_HOURS", "")


def _transition_rules() -> Path:
    """The shipped rules less the time rules. Test events are dated days ago (a fixed
    ``T0``), so every time rule would be due the moment they arrive and add alerts to
    tests about something else; the time rules have tests of their own (``test_timers``,
    ``test_predicted_late``), which name their rules file."""
    shipped = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    shipped["rules"] = [r for r in shipped["rules"] if "state" in r["when"]]
    folder = tempfile.mkdtemp(prefix="notifier-test-rules-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "rules.yaml"
    path.write_text(yaml.safe_dump(shipped, sort_keys=False), encoding="utf-8")
    return path


os.environ.setdefault("NOTIFIER_RULES_FILE", str(_transition_rules()))


class ExternalHostError(OSError):
    """A test (or a library under test) tried to reach a host outside this machine."""


def _local_only_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name not in LOCAL_HOSTS:
        raise ExternalHostError(f"tests may not contact {name!r}: only 127.0.0.1")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _no_external_hosts() -> Iterator[None]:
    """Every name resolution in the test process must be local (the twilio, firebase and
    google-auth clients included): an attempt fails loudly instead of reaching out."""
    socket.getaddrinfo = _local_only_getaddrinfo
    yield
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream on a free port, its store in ``tmp_path``."""
    with NatsServer(store_dir=tmp_path / "nats") as server:
        yield server


def _cancel_all_tasks_bounded(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio's own, but it stops waiting after 10 s and prints what would not finish.

    Once in about ten full runs a test's event loop hung forever while closing, waiting
    for a leftover task that had been cancelled (seen at teardown of tests that had
    passed; the task is not identified yet). A hang would stall CI for its whole time
    limit; this prints the task and its stack and lets the run go on.
    """
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    if os.environ.get("NOTIFIER_TEST_SHOW_LEFTOVERS"):
        for task in to_cancel:
            print(f"\nleftover task at loop close: {task!r}", file=sys.stderr)
    for task in to_cancel:
        task.cancel()
    done, pending = loop.run_until_complete(asyncio.wait(to_cancel, timeout=10))
    for task in pending:
        print(f"\nleftover task would not finish after cancel: {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during loop shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


asyncio.runners._cancel_all_tasks = _cancel_all_tasks_bounded  # type: ignore[attr-defined]
