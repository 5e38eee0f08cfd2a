"""``notifier feed-token`` beside a running ``notifier dev``: signed with the dev
server's own feed secret, so the token opens its feeds; refused when no dev server runs
here and no secret is set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier import signing
from notifier.cli import app as cli_app

DEV_SECRET = "dev-feed-secret-0123456789"


def _dev_dir(root: Path, *, running: bool) -> None:
    dev = root / ".notifier-dev"
    dev.mkdir()
    (dev / "dev-secrets.json").write_text(json.dumps({"feed_secret": DEV_SECRET}))
    if running:
        (dev / "nats.url").write_text("nats://127.0.0.1:4")


def test_a_token_printed_beside_a_running_dev_server_opens_its_feeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFIER_FEED_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    _dev_dir(tmp_path, running=True)

    printed = CliRunner().invoke(cli_app, ["feed-token", "ada"])

    assert printed.exit_code == 0, printed.output
    token = printed.stdout.strip()
    assert signing.check(DEV_SECRET, "feed", "ada", token) is None
    assert "running `notifier dev`" in printed.stderr
    assert DEV_SECRET not in printed.output


def test_no_dev_server_running_here_is_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFIER_FEED_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    _dev_dir(tmp_path, running=False)

    refused = CliRunner().invoke(cli_app, ["feed-token", "ada"])

    assert refused.exit_code == 2
    assert "NOTIFIER_FEED_SECRET is not set" in refused.output


def test_a_configured_secret_wins_over_the_dev_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_FEED_SECRET", "configured-secret-0123456789")
    monkeypatch.chdir(tmp_path)
    _dev_dir(tmp_path, running=True)

    printed = CliRunner().invoke(cli_app, ["feed-token", "ada"])

    assert printed.exit_code == 0, printed.output
    token = printed.stdout.strip()
    assert signing.check("configured-secret-0123456789", "feed", "ada", token) is None
