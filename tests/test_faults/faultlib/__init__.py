"""Fault-injection harness of issue #7: private redis-servers, a TCP fault proxy, child
processes with SIGKILL/SIGSTOP, and a SQLite ledger with a checker.

Importable as ``faultlib`` because ``tests/test_faults/conftest.py`` puts ``tests/test_faults``
on ``sys.path`` (and child processes get it on ``PYTHONPATH`` from :class:`Procs`).
"""

from __future__ import annotations

from .ledger import Handling, Ledger, Publish, Verdict, check
from .procs import Child, Procs, process_state
from .proxy import FaultProxy, ProxyEvent, ProxyStats
from .server import FaultRedis

__all__ = [
    "Child",
    "FaultProxy",
    "FaultRedis",
    "Handling",
    "Ledger",
    "Procs",
    "ProxyEvent",
    "ProxyStats",
    "Publish",
    "Verdict",
    "check",
    "process_state",
]
