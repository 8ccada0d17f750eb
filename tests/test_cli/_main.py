"""``bus.cli.main`` in-process, for the CLI tests: its exit code, and what it printed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bus.cli import main


def exit_code(argv: Sequence[str]) -> int:
    """``main(argv)``'s exit code; an argparse exit (``--help``, a usage error) becomes its code."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``bus ARGV`` in-process: (exit code, stdout, stderr)."""
    code = exit_code(argv)
    out, err = capsys.readouterr()
    return code, out, err
