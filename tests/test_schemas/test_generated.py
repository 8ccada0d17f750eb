"""The committed schema modules are exactly what the generator makes from the catalog facts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "tests" / "fixtures" / "gen_schemas.py"


def load_generator() -> ModuleType:
    """Import tests/fixtures/gen_schemas.py by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_schemas", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_schemas", module)
    spec.loader.exec_module(module)
    return module


def test_generated_modules_match_the_catalog_facts() -> None:
    """Regenerating in memory gives the committed files byte for byte (run gen_schemas.py after a catalog change)."""
    generated: dict[Path, str] = load_generator().generate()
    drift = sorted(str(p.relative_to(ROOT)) for p, text in generated.items() if not p.exists() or p.read_text() != text)
    assert drift == []


def test_generator_writes_every_module_of_schemas_events() -> None:
    """No stale module lingers in schemas/events: every file there is one the generator writes."""
    generated = set(load_generator().generate())
    on_disk = set((ROOT / "schemas" / "events").glob("*.py")) | {ROOT / "schemas" / "_catalog.py"}
    assert on_disk == generated
