"""scripts/ingest_floor.py, the measurement docs/performance.md quotes, still runs."""

from __future__ import annotations

import asyncio
import runpy
from pathlib import Path

import pytest

from notifier.bench.settings import service_settings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ingest_floor.py"


def test_the_floor_measures_every_stage(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the script sets the service's settings in the environment: undo it afterwards
    for name in [*service_settings("nats://x", "sqlite://"), "NOTIFIER_NULL_CHANNELS"]:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    script = runpy.run_path(str(SCRIPT), run_name="floor")
    asyncio.run(script["main"](300, 100))
    out = capsys.readouterr().out
    stages = {
        line.split()[0]: float(line.split()[1])
        for line in out.splitlines()
        if line.startswith("  ")
    }
    assert set(stages) == {"raw", "decode", "store", "service"}
    assert all(us > 0 for us in stages.values())
    # the service does at least what the least consumer does
    assert stages["service"] > stages["raw"]
