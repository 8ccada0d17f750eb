"""Fixtures of the CLI tests: the ``bus run`` daemons a test starts (see ``_daemon.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_cli._daemon import Daemon

#: What a daemon left running at the end of its test gets to drain before it is killed.
STOP_GRACE_S = 30.0


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons the test appends here; stopped at the end if still running (SIGTERM, SIGKILL after the grace)."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop(STOP_GRACE_S)
