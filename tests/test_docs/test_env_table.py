"""Every environment variable the code reads is described once, and the README shows exactly that table."""

from __future__ import annotations

import re
from pathlib import Path

from bus import BusSettings
from subscribers.app import AppSettings

from .env_table import README, current, render, rows

ROOT = Path(__file__).resolve().parents[2]


def test_every_settings_variable_has_a_description() -> None:
    """ENV and DOCS name the same variables in BusSettings and AppSettings."""
    for cls in (BusSettings, AppSettings):
        assert set(cls.ENV) == set(cls.DOCS), cls.__name__


def test_the_cli_variables_are_read_by_the_cli() -> None:
    """Each CLI-only variable in the table appears in the CLI's code."""
    source = "".join(p.read_text() for p in (ROOT / "bus" / "cli").glob("*.py"))
    for var, group, _, _ in rows():
        if group == "cli":
            assert re.search(rf'"{var}"', source), var


def test_readme_table_is_generated_from_the_code() -> None:
    """README's table equals the generated one (rewrite it with: python tests/test_docs/env_table.py)."""
    assert current(README.read_text()) == render()
