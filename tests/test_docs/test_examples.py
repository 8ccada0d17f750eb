"""Every Python snippet of the README and the docs is a file in examples/, and every example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$')

#: Each example and a line of what it prints when it worked.
RUNS = {
    "schemas_decode.py": "invalid $.payload.occurredAt",
    "publishing.py": "True",
    "consuming.py": "TicketCreatedLegacy(",
    "subscribers_services.py": "triage TICKET_CREATED",
    "effects_sql.py": "12500",
    "effects_redis.py": "counted now: True",
    "security_acl.py": "refused: Redis denied the command",
    "rotate_credentials.py": "publishing on the new password",
}


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.py"))


def test_readme_snippets_are_example_files() -> None:
    """Each Python block of the README is, byte for byte, a file of examples/."""
    sources = {p.read_text() for p in example_files()}
    blocks = PYTHON_BLOCK.findall((ROOT / "README.md").read_text())
    assert blocks, "the README has no Python example"
    assert [b for b in blocks if b not in sources] == []


def test_docs_snippets_are_included_from_examples() -> None:
    """Each Python block of the docs is only an include of an existing examples/ file (no inline Python)."""
    for page in PAGES:
        for block in PYTHON_BLOCK.findall(page.read_text()):
            lines = block.strip().splitlines()
            included = [INCLUDE.match(line) for line in lines]
            assert all(included), f"{page.name}: inline Python instead of an --8<-- include: {block[:80]!r}"
            for match in included:
                assert match is not None and match[1].startswith("examples/"), page.name
                assert (ROOT / match[1]).is_file(), f"{page.name}: {match[1]} does not exist"


def test_every_example_is_shown_and_run() -> None:
    """Every file of examples/ appears in the README or the docs, and this module runs each."""
    shown = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in PAGES)
    for path in example_files():
        assert f"examples/{path.name}" in shown, path.name
    assert set(RUNS) | {"billing.py", "test_billing.py"} == {p.name for p in example_files()}


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(RUNS))
def test_example_runs(name: str, redis_process: Any, tmp_path: Path) -> None:
    """The example runs as written (``python examples/NAME``) on a private redis-server and prints its result."""
    server = redis_process(appendonly=False)  # its own: examples create ACL users and workflow groups
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "BUS_EMAIL_OUTBOX": str(tmp_path / "outbox"),
        "PYTHONPATH": str(ROOT),
    }
    done = _run([sys.executable, str(EXAMPLES / name)], env, ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert RUNS[name] in done.stdout, done.stdout[-3000:]


def test_billing_example_tests_pass() -> None:
    """The quickstart's test of the billing app (``python -m pytest examples/test_billing.py``) passes."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/test_billing.py"]
    done = _run(argv, dict(os.environ), ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
