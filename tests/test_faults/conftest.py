"""Fixtures of the fault suite (issue #7): a private redis-server, a fault proxy in front of it,
a ledger file and child processes, all torn down even when the test fails."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # works with every --import-mode; the folder itself has no __init__.py
    sys.path.insert(0, _HERE)

from faultlib import FaultProxy, FaultRedis, Ledger, Procs  # noqa: E402


@pytest.fixture
def make_fault_redis(redis_process: Callable[..., Any]) -> Callable[..., FaultRedis]:
    """Factory of private redis-servers (AOF everysec by default; ``appendfsync="always"`` etc.)."""

    def make(*, appendonly: bool = True, appendfsync: str = "everysec", extra: tuple[str, ...] = ()) -> FaultRedis:
        return FaultRedis(redis_process(appendonly=appendonly, extra=("--appendfsync", appendfsync, *extra)))

    return make


@pytest.fixture
def fault_redis(make_fault_redis: Callable[..., FaultRedis]) -> FaultRedis:
    """One private redis-server on a free port with its own directory, AOF everysec."""
    return make_fault_redis()


@pytest.fixture
def proxy(fault_redis: FaultRedis) -> Iterator[FaultProxy]:
    """A fault proxy in front of ``fault_redis`` (pass-through until told otherwise)."""
    with FaultProxy(fault_redis.port) as p:
        yield p


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    """Where the test's ledger lives (give it to child processes)."""
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[Ledger]:
    """The test's ledger (created empty)."""
    with Ledger(ledger_path) as led:
        yield led


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Child processes of the test: every one still running is SIGKILLed at teardown."""
    group = Procs(tmp_path / "procs")
    try:
        yield group
    finally:
        group.kill_all()
        if group.children:
            print(group.tails())  # shown by pytest when the test failed
