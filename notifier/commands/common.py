"""What every ``notifier`` command shares: failing with one line, settings, logging, and
finding the NATS server and database of a running ``notifier dev``.

Here rather than in ``notifier.cli`` so that command modules (``notifier.commands.*``)
can use it without importing the app that registers them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import typer

from notifier.config import Settings, load_settings
from notifier.errors import NotifierError

DEV_DIR = Path(".notifier-dev")
DEV_NATS_URL_FILE = DEV_DIR / "nats.url"
DEV_DATABASE_URL_FILE = DEV_DIR / "database.url"


def fail(message: str) -> typer.Exit:
    """Say ``message`` on stderr and return the exit (code 2) for the caller to raise:
    a wrong setting or an unreachable server is one line, not a traceback."""
    typer.echo(f"notifier: {message}", err=True)
    return typer.Exit(code=2)


def settings_or_exit(**overrides: object) -> Settings:
    """The settings from the environment, or exit naming what is wrong with them."""
    try:
        return load_settings(**overrides)
    except NotifierError as exc:
        raise fail(str(exc)) from None


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``, with nothing that names a customer."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # aiosmtpd (the dev mail catcher) logs every recipient address at INFO: personal data.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def nats_target(given: str | None = None, *, option: bool = False) -> tuple[str, str]:
    """The NATS URL to use and where it came from: ``--nats-url``, else
    ``NOTIFIER_NATS_URL``, else the URL a running ``notifier dev`` in this directory wrote
    down (it removes it when it stops). Never a default: a guessed server is someone
    else's, and events published there vanish without a word."""
    if given:
        return given, "--nats-url"
    if url := os.environ.get("NOTIFIER_NATS_URL"):
        return url, "NOTIFIER_NATS_URL"
    if DEV_NATS_URL_FILE.is_file() and (url := DEV_NATS_URL_FILE.read_text().strip()):
        return url, f"the running `notifier dev`, {DEV_NATS_URL_FILE}"
    how = "pass --nats-url URL or set NOTIFIER_NATS_URL" if option else "set NOTIFIER_NATS_URL"
    raise fail(f"which NATS? no `notifier dev` is running in this directory: {how}")


def nats_url() -> str:
    """The NATS URL, as :func:`nats_target` finds it."""
    return nats_target()[0]


def dev_database_url() -> str | None:
    """The database of a running ``notifier dev``, unless the environment names one."""
    if "NOTIFIER_DATABASE_URL" not in os.environ and DEV_DATABASE_URL_FILE.is_file():
        return DEV_DATABASE_URL_FILE.read_text().strip()
    return None


def run_db_command(work: Coroutine[Any, Any, None]) -> None:
    """Run a database command; a bad URL or an unreachable server is one line."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        asyncio.run(work)
    except NotifierError as exc:
        raise fail(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"database: {type(exc).__name__}: {exc}") from None
