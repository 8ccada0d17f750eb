"""Import direction: schemas <- bus <- publishers <- subscribers.

A quick static check here; the full contracts are import-linter's (pyproject, run by .ci/run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "schemas": set(),
    "bus": {"schemas"},
    "publishers": {"schemas", "bus"},
    "subscribers": {"schemas", "bus", "publishers"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    """A package imports only the packages below it in schemas <- bus <- publishers <- subscribers."""
    wrong = {
        str(p.relative_to(ROOT)): sorted(_imports(p) - ALLOWED[package] - {package})
        for p in (ROOT / package).rglob("*.py")
    }
    wrong = {k: v for k, v in wrong.items() if v}
    assert wrong == {}


def test_checker_sees_a_wrong_way_import(tmp_path: Path) -> None:
    """The import checker finds a from-import of a higher package."""
    bad = tmp_path / "m.py"
    bad.write_text("from publishers import x\nimport subscribers.email\n")
    assert _imports(bad) == {"publishers", "subscribers"}


def test_layers_contract_matches_this_check() -> None:
    """Pyproject's import-linter layers contract lists the packages in this check's order."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "layers")["layers"]
    below = {layer: set(layers[i + 1 :]) for i, layer in enumerate(layers)}
    assert below == ALLOWED


def test_import_contracts_are_kept() -> None:
    """``lint-imports`` keeps every contract in pyproject."""
    script = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([script, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
