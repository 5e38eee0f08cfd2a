"""The data flows one way: pure stages import no framework and no I/O layer, and every
module of the package sits in one layer of the import-linter contract in pyproject.toml."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "notifier"
PURE = ["core", "rendering", "contracts/events.py", "contracts/channels.py"]
FORBIDDEN_IN_PURE = (
    "sqlalchemy",
    "nats",
    "faststream",
    "fastapi",
    "aiosmtplib",
    "notifier.store",
    "notifier.ingest",
    "notifier.delivery",
    "notifier.api",
    "notifier.channels",
    "notifier.app",
    "notifier.service",
)


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


@pytest.mark.parametrize(
    "path", [p for part in PURE for p in _files(part)], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_pure_stage_does_no_io(path: Path) -> None:
    bad = {m for m in _imports(path) for f in FORBIDDEN_IN_PURE if m == f or m.startswith(f + ".")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "store").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_store_does_not_reach_up(path: Path) -> None:
    above = ("notifier.ingest", "notifier.delivery", "notifier.api", "notifier.app")
    up = {m for m in _imports(path) if m.startswith((*above, "notifier.service"))}
    assert not up, f"{path.name} imports {sorted(up)}"


ROOT = PACKAGE.parent


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = config["tool"]["importlinter"]["contracts"][0]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def _top_level_modules() -> set[str]:
    found = {f"notifier.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    found |= {f"notifier.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    return found


def test_every_module_has_a_layer() -> None:
    """A module missing from the layers would escape the direction check entirely."""
    assert _top_level_modules() - set(_layers()) == set()
    assert set(_layers()) - _top_level_modules() == set()


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(no_cache=True, no_logo=True))",
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "bad_import"),
    [
        ("store/queries.py", "import notifier.delivery.ledger"),
        ("delivery/outbox.py", "import notifier.ingest.processor"),
        ("app/channels.py", "import notifier.devtools.mailcatcher"),
    ],
)
def test_the_contracts_catch_an_import_pointing_back_up(
    tmp_path: Path, module: str, bad_import: str
) -> None:
    shutil.copytree(PACKAGE, tmp_path / "notifier", ignore=shutil.ignore_patterns("templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "notifier" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
