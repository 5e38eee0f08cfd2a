"""Fixtures shared by every test package; plain helpers are in ``tests.support``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.devtools.natsserver import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream on a free port, its store in ``tmp_path``."""
    with NatsServer(store_dir=tmp_path / "nats") as server:
        yield server
