"""The data flows one way: pure stages import no framework and no I/O layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "notifier"
PURE = ["core", "rendering", "contracts/events.py", "contracts/channels.py"]
FORBIDDEN_IN_PURE = ("sqlalchemy", "nats", "faststream", "fastapi", "aiosmtplib", "notifier.store",
                     "notifier.ingest", "notifier.delivery", "notifier.api", "notifier.channels",
                     "notifier.app")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _files(part: str) -> list[Path]:
    target = PACKAGE / part
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


@pytest.mark.parametrize("path", [p for part in PURE for p in _files(part)],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_stage_does_no_io(path: Path) -> None:
    bad = {m for m in _imports(path) for f in FORBIDDEN_IN_PURE if m == f or m.startswith(f + ".")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "store").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_store_does_not_reach_up(path: Path) -> None:
    up = {m for m in _imports(path) if m.startswith(("notifier.ingest", "notifier.delivery",
                                                      "notifier.api", "notifier.app"))}
    assert not up, f"{path.name} imports {sorted(up)}"
