"""Child processes of a fault test: spawn, SIGKILL, SIGSTOP/SIGCONT, restart, always reaped.

Every child writes stdout and stderr to its own log file (``tail()`` shows it in assertion
messages) and, where ``setpriv`` exists, gets ``PDEATHSIG=KILL`` so it dies with the test run
even when pytest itself is killed. :class:`Procs` kills whatever is left in ``kill_all()``
(its fixture calls that in a finalizer, so failures never leak processes).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["FAULTS_DIR", "REPO_ROOT", "Child", "Procs", "process_state"]

FAULTS_DIR = Path(__file__).resolve().parent.parent  # tests/test_faults: holds faultlib
REPO_ROOT = FAULTS_DIR.parent.parent


def process_state(pid: int) -> str:
    """The kernel's one-letter state of ``pid`` (R, S, T stopped, Z zombie), or "" if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


class Child:
    """One child process; ``spawn()`` (again) starts it with the same command and environment."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.spawns = 0

    def spawn(self) -> Child:
        """Start (or start again after it ended); output is appended to ``log``."""
        if self.alive:
            raise RuntimeError(f"{self.name} (pid {self.pid}) is still running")
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL"] if setpriv else []
        with self.log.open("ab") as out:
            out.write(f"--- spawn #{self.spawns + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                [*prefix, *self.argv], env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.spawns += 1
        return self

    @property
    def pid(self) -> int:
        """The pid of the current (or last) run."""
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never spawned")
        return self.popen.pid

    @property
    def alive(self) -> bool:
        """True while the process runs (stopped counts as running)."""
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last run (negative: killed by that signal), None while running."""
        return None if self.popen is None else self.popen.poll()

    @property
    def stopped(self) -> bool:
        """True while SIGSTOPped."""
        return self.alive and process_state(self.pid) in ("T", "t")

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the process still runs."""
        if self.alive:
            os.kill(self.pid, sig)

    def kill(self, timeout_s: float = 5.0) -> int | None:
        """SIGKILL and reap (works on stopped processes too); returns the exit status."""
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        return self.wait(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGSTOP, returning once the kernel shows the process stopped."""
        self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout_s
        while self.alive and not self.stopped:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not stop")
            time.sleep(0.005)

    def cont(self) -> None:
        """SIGCONT."""
        self.signal(signal.SIGCONT)

    def terminate(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM (after SIGCONT, so a stopped child can act on it) and wait for the exit."""
        self.cont()
        self.signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 10.0) -> int | None:
        """Wait for the exit; ``TimeoutError`` (with the log tail) if it does not come."""
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} did not exit within {timeout_s} s\n{self.tail()}") from None

    def restart(self) -> Child:
        """SIGKILL if running, then spawn again with the same command and environment."""
        self.kill()
        return self.spawn()

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log, labelled: for assertion messages."""
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = []
        return f"--- {self.name} log ({self.log}):\n" + "\n".join(text)


class Procs:
    """The children of one test; logs in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """Start ``argv`` as a child named ``name`` (environment: ours plus ``env``)."""
        full_env = {**os.environ, **(env or {})}
        child = Child(name, argv, full_env, self.dir / f"{name}.log")
        self.children.append(child)
        return child.spawn()

    def python(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Child:
        """Run ``python args...`` (e.g. ``"-m", "faultlib.subscriber"``) with ``faultlib`` importable."""
        path = os.pathsep.join(filter(None, [str(FAULTS_DIR), str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        extra = {"PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(env or {})}
        return self.spawn(name, [sys.executable, *args], extra)

    def kill_all(self) -> None:
        """SIGKILL and reap every child still running."""
        for child in self.children:
            try:
                child.kill()
            except (TimeoutError, OSError):
                continue

    def tails(self, lines: int = 30) -> str:
        """Log tails of every child."""
        return "\n".join(child.tail(lines) for child in self.children)
