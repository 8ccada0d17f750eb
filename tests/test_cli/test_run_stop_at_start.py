"""A stop during ``bus run``'s start-up, one process and ``--processes 2`` (real Redis, the test's prefix).

The signal is held until the daemon watches for it, then drains as any stop: exit 0, no process left.
The service's factory logs ``building the services`` and waits for a ``go`` file that the test writes
only after sending the signal, so the signal lands in the start-up every time.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path

import pytest

from tests.test_cli._daemon import Daemon, daemon_env

APP = """
import logging, os, pathlib, time
import anyio

GO = pathlib.Path(os.environ["TEST_GO"])

class Idle:
    name = "idle"
    async def run(self, bus, *, task_status=anyio.TASK_STATUS_IGNORED):
        bus.subscribe("TICKET_CREATED", self.handle)
        await bus.run(task_status=task_status)
    async def handle(self, delivery):
        pass

def gated():
    logging.getLogger("gated").warning("building the services")
    while not GO.exists():
        time.sleep(0.01)
    return Idle()
"""

BUILDING = "building the services"


@pytest.fixture
def gated(tmp_path: Path, test_prefix: str) -> tuple[str, dict[str, str], Path]:
    """The gated service's import string, the daemon's environment and the ``go`` file."""
    name = f"startapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    go = tmp_path / "go"
    env = daemon_env(test_prefix, PYTHONPATH=str(tmp_path), TEST_GO=str(go), BUS_SHUTDOWN_GRACE_S="5")
    return f"{name}:gated", env, go


def child_pids(daemon: Daemon) -> list[int]:
    """The pids of the children the supervisor logged as started."""
    return [int(m.group(1)) for line in daemon.lines if (m := re.search(r"started process-\d+ \(pid (\d+)\)", line))]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.integration
def test_sigterm_while_one_process_builds_its_services_exits_0(
    gated: tuple[str, dict[str, str], Path], daemons: list[Daemon]
) -> None:
    """SIGTERM while ``bus run`` is still loading its services: it starts, drains at once and exits 0."""
    target, env, go = gated
    daemon = Daemon([target], env)
    daemons.append(daemon)
    daemon.wait_for(BUILDING)
    daemon.proc.send_signal(signal.SIGTERM)
    go.touch()
    assert daemon.proc.wait(60) == 0, daemon.logs
    assert daemon.count("SIGTERM received") == 1 and daemon.count("stopped cleanly") == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    ("condition", "n"),
    [
        pytest.param("started process-1 (pid", 1, id="as-the-first-child-is-spawned"),
        pytest.param(BUILDING, 2, id="while-both-children-build-their-services"),
    ],
)
def test_sigterm_while_the_children_start_exits_0(
    gated: tuple[str, dict[str, str], Path], daemons: list[Daemon], condition: str, n: int
) -> None:
    """SIGTERM to ``--processes 2`` while its children start: each child started drains and exits 0, the
    group exits 0 and no child is left running."""
    target, env, go = gated
    group = Daemon([target, "--processes", "2"], env)
    daemons.append(group)
    group.wait_for(condition, n=n)
    group.proc.send_signal(signal.SIGTERM)
    go.touch()
    assert group.proc.wait(60) == 0, group.logs
    pids = child_pids(group)
    assert pids and all(gone(pid) for pid in pids), group.logs
    assert group.count("stopped cleanly") == len(pids), group.logs
