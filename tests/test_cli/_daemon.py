"""``python -m bus run ...`` as a subprocess, for the daemon tests of ``tests/test_cli``.

:class:`Daemon` starts it and collects its stderr (the logs) line by line; :func:`until` waits on
a condition, failing with the daemon's logs; :func:`daemon_env` is the environment it gets. The
``daemons`` fixture (``conftest.py``) stops what a test left running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REAL_REDIS_URL

ROOT = Path(__file__).resolve().parents[2]

#: How often :func:`until` checks its condition.
POLL_S = 0.05


class Daemon:
    """``python -m bus run ARGS`` from the repository root; stdout discarded, stderr lines in ``lines``."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bus", "run", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def logs(self) -> str:
        """Everything logged so far."""
        return "".join(self.lines)

    def count(self, text: str) -> int:
        """Log lines containing ``text``."""
        return sum(text in line for line in list(self.lines))

    def wait_for(self, text: str, n: int = 1, timeout: float = 60.0) -> str:
        """The first log line containing ``text``, once ``n`` lines do (fails if the daemon exits first)."""
        until(lambda: self.count(text) >= n, timeout, f"{n} log line(s) with {text!r}", self)
        return next(line for line in list(self.lines) if text in line)

    def port(self, text: str = "serving /metrics", timeout: float = 60.0) -> int:
        """The probe server's port, from the first log line with ``text`` (a group's: ``serving the group's``)."""
        line = self.wait_for(text, timeout=timeout)
        found = re.search(r"/readyz on [0-9.]+:(\d+)", line)
        assert found is not None, line
        return int(found.group(1))

    def stop(self, grace_s: float = 0.0) -> None:
        """If still running: SIGTERM and up to ``grace_s`` to exit (when ``grace_s`` > 0), then SIGKILL."""
        if self.proc.poll() is not None:
            return
        if grace_s > 0:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
                return
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        self.proc.wait(5)


def until(condition: Callable[[], bool], timeout: float, what: str, daemon: Daemon | None = None) -> float:
    """Poll ``condition`` until true; the seconds it took. Fails with ``what`` (and the daemon's logs)
    after ``timeout``, or as soon as ``daemon`` has exited."""
    started = time.monotonic()
    while not condition():
        exited = daemon is not None and daemon.proc.poll() is not None
        if exited or time.monotonic() - started > timeout:
            logs = f"; exit {daemon.proc.poll()}; stderr:\n{daemon.logs}" if daemon is not None else ""
            raise AssertionError(f"{what}: not within {timeout:g} s{logs}")
        time.sleep(POLL_S)
    return time.monotonic() - started


def daemon_env(prefix: str | None = None, *, redis_url: str = REAL_REDIS_URL, **values: str) -> dict[str, str]:
    """This environment without REDIS_*, BUS_* and SMTP_* variables, then ``redis_url``, the key prefix, JSON
    logs and ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BUS_", "SMTP_"))}
    env.update(REDIS_URL=redis_url, BUS_LOG_FORMAT="json", **values)
    if prefix is not None:
        env["REDIS_PREFIX"] = prefix
    return env
