"""Import direction: schemas <- bus <- publishers <- subscribers."""

from __future__ import annotations

import ast
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
