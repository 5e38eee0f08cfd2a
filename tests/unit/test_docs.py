"""The README's configuration table and the settings stay the same list."""

from __future__ import annotations

import re
from pathlib import Path

from notifier.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
TEST_ONLY = {
    "NOTIFIER_TEST_POSTGRES_URL",
    "NOTIFIER_REQUIRE_POSTGRES",
    "NOTIFIER_TEST_SHOW_LEFTOVERS",
}


def _table_rows() -> set[str]:
    return set(re.findall(r"^\| `(NOTIFIER_[A-Z0-9_]+)` \|", README.read_text(), re.MULTILINE))


def test_every_setting_has_a_row_in_the_configuration_table() -> None:
    settings = {f"NOTIFIER_{name.upper()}" for name in Settings.model_fields}
    assert settings - _table_rows() == set()


def test_every_row_of_the_configuration_table_is_a_setting() -> None:
    settings = {f"NOTIFIER_{name.upper()}" for name in Settings.model_fields}
    assert _table_rows() - settings - TEST_ONLY == set()
