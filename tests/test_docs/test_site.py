"""The docs site builds strictly, and the strict build fails on a broken link or anchor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` as .ci/run runs it (no --quiet: it would hide the warnings strict counts)."""
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "--site-dir", str(site)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """mkdocs.yml builds every page, the API reference and the included examples without a warning."""
    done = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "bus" / "index.html").is_file()
    assert "on_ticket" in (tmp_path / "site" / "consuming" / "index.html").read_text()  # examples/consuming.py


@pytest.mark.parametrize(
    ("page", "builds"),
    [
        pytest.param('[fine](#page)\n\n```python\n--8<-- "examples/billing.py"\n```', True, id="sound"),
        pytest.param("[gone](nowhere.md)", False, id="missing-page"),
        pytest.param("# Top\n\n[gone](#no-such-heading)", False, id="missing-anchor"),
        pytest.param('```python\n--8<-- "examples/no_such_example.py"\n```', False, id="missing-snippet"),
    ],
)
def test_a_broken_reference_fails_the_build(tmp_path: Path, page: str, builds: bool) -> None:
    """With the project's settings (inherited), a sound page builds and a broken link, anchor or example
    include fails the build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(f"# Page\n\n{page}\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(f"INHERIT: {ROOT / 'mkdocs.yml'}\ndocs_dir: {docs}\nnav:\n  - index.md\n")
    done = build(config, tmp_path / "site")
    assert (done.returncode == 0) is builds, done.stderr[-3000:]
