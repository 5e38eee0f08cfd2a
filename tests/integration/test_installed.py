"""notifier as a user gets it: the production path loads no dev fake and no benchmark,
and a wheel installed in a fresh venv runs ``notifier run`` from an empty directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from notifier.config import PACKAGE_DIR
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from tests.integration.helpers import event, publish
from tests.support import free_port, wait_until

REPO = PACKAGE_DIR.parent
#: what `notifier run` must never import: the development fakes and the benchmark
DEV_ONLY = ("notifier.devtools", "notifier.bench")
#: the first start of a fresh install compiles nothing (pip did), but runs the migrations
READY_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 600


def _service_env(nats: NatsServer, mail: MailCatcher, http_port: int) -> dict[str, str]:
    """Only what an operator would set; ``-X importtime`` logs every module loaded."""
    drop = ("NOTIFIER_", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        NOTIFIER_NATS_URL=nats.url,
        NOTIFIER_SMTP_HOST="127.0.0.1",
        NOTIFIER_SMTP_PORT=str(mail.port),
        NOTIFIER_HTTP_PORT=str(http_port),
        PYTHONPROFILEIMPORTTIME="1",
    )
    return env


def _imported(log: str) -> set[str]:
    """Module names from ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def _tail(log: Path) -> str:
    """The end of the service's own output, without the import-time lines."""
    lines = [line for line in log.read_text().splitlines() if not line.startswith("import time:")]
    return "\n".join(lines[-30:])


def _start(
    command: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)


@asynccontextmanager
async def _serving(
    command: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path
) -> AsyncIterator[str]:
    """Start ``notifier run`` (or ``dev``), yield its base URL once ``/readyz`` is 200,
    stop it by PID."""
    base = f"http://127.0.0.1:{env['NOTIFIER_HTTP_PORT']}"
    process = _start(command, cwd=cwd, env=env, log=log)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as client:

            async def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"notifier run exited {process.returncode}: {_tail(log)}")
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, timeout=READY_TIMEOUT_S, interval=0.2)
        yield base
        process.terminate()
        code = await asyncio.to_thread(process.wait, 40)
        assert code == 0, _tail(log)
    finally:
        if process.poll() is None:
            process.kill()
            await asyncio.to_thread(process.wait, 40)


async def _one_confirmation(nats: NatsServer, mail: MailCatcher, order_id: str) -> None:
    """An event in, its email out: the shipped rules and templates rendered it."""
    await publish(nats.url, event(order_id, "placed", 0))
    [sent] = await mail.wait_for(1, timeout=30)
    assert sent.subject == f"Your order {order_id} is confirmed"


async def test_notifier_run_imports_no_dev_fake_and_no_benchmark(
    nats: NatsServer, mail: MailCatcher, tmp_path: Path
) -> None:
    env = _service_env(nats, mail, free_port())
    log = tmp_path / "service.log"
    command = [sys.executable, "-m", "notifier", "run"]
    async with _serving(command, cwd=tmp_path, env=env, log=log):
        await _one_confirmation(nats, mail, "R-1")

    imported = _imported(log.read_text())
    # The registry loads channel modules with importlib, which -X importtime does not
    # time; the email channel shows through email_mime, which only it imports.
    assert {"notifier.serve", "notifier.app", "notifier.channels.email_mime"} <= imported
    assert sorted(m for m in imported if m.startswith(DEV_ONLY)) == []


async def test_notifier_dev_still_serves_with_its_fakes(tmp_path: Path) -> None:
    """The dev server moved beside the fakes; ``notifier dev`` starts them and serves."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["NOTIFIER_HTTP_PORT"] = str(port)
    command = [
        sys.executable,
        "-m",
        "notifier",
        "dev",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "dev"),
    ]
    async with _serving(command, cwd=tmp_path, env=env, log=tmp_path / "dev.log") as base:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            for path in ("/dev/outbox", "/dev/outbox/sms", "/dev/outbox/push"):
                assert (await client.get(path)).status_code == 200, path
        assert (tmp_path / "dev" / "nats.url").is_file()
    assert not (tmp_path / "dev" / "nats.url").exists(), "the dev NATS was not stopped"


def _run(*args: str | Path, cwd: Path, timeout: float = INSTALL_TIMEOUT_S) -> str:
    """Run a command that must succeed; its stdout and stderr together."""
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _build_and_install(tmp_path: Path) -> Path:
    """The wheel of this checkout, installed with its dependencies in a fresh venv.

    Built from a copy holding only what the build reads, so the checkout gets no
    ``build/`` folder; pip's cache makes a second run much faster.
    """
    source = tmp_path / "source"
    shutil.copytree(
        REPO / "notifier", source / "notifier", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-w",
        tmp_path / "dist",
        source,
        cwd=tmp_path,
    )
    # pip >= 25 passes on the build backend's warnings; setuptools warned three times
    # about a `project.license` table (an SPDX string is the form it wants)
    assert "project.license" not in built, built[-3000:]
    [wheel] = (tmp_path / "dist").glob("notifier-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    _run(env_dir / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    return env_dir


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT_S + 300)
async def test_a_wheel_in_a_fresh_venv_runs_from_an_empty_directory(
    nats: NatsServer, mail: MailCatcher, tmp_path: Path
) -> None:
    env_dir = await asyncio.to_thread(_build_and_install, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(
        env_dir / "bin" / "python",
        "-c",
        "import notifier.config as c; print(c.default_templates_dir())",
        cwd=elsewhere,
    )
    assert Path(where.strip()).is_relative_to(env_dir), "the checkout was imported, not the wheel"
    assert "run" in _run(env_dir / "bin" / "notifier", "--help", cwd=elsewhere)

    env = _service_env(nats, mail, free_port())
    log = tmp_path / "service.log"
    async with _serving(
        [str(env_dir / "bin" / "notifier"), "run"], cwd=elsewhere, env=env, log=log
    ):
        await _one_confirmation(nats, mail, "W-1")

    imported = _imported(log.read_text())
    assert "notifier.serve" in imported
    assert sorted(m for m in imported if m.startswith(DEV_ONLY)) == []
    assert (elsewhere / "notifier.db").is_file(), "the default database is in the working dir"
