"""Every environment variable the code reads is described once, and docs/environment.md shows exactly that table."""

from __future__ import annotations

import re
from pathlib import Path

from bus import BusSettings
from subscribers.app import AppSettings

from .env_table import PAGE, current, render, rows

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


def test_docs_table_is_generated_from_the_code() -> None:
    """docs/environment.md's table equals the generated one (rewrite it with: python tests/test_docs/env_table.py)."""
    assert current(PAGE.read_text()) == render()


def test_every_variable_the_code_names_is_in_the_table() -> None:
    """Each BUS_/REDIS_/SMTP_ name quoted in the settings, the CLI and the built-in apps has a row."""
    sources = [*(ROOT / "bus").glob("*.py"), *(ROOT / "bus" / "cli").glob("*.py"), ROOT / "subscribers" / "app.py"]
    named = {m for p in sources for m in re.findall(r'"((?:BUS|REDIS|SMTP)_[A-Z_]+)"', p.read_text())}
    assert named - {var for var, _, _, _ in rows()} == set()
