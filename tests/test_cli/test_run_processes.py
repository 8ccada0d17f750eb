"""``bus run --processes N``: a supervisor over N consumer processes (real Redis, the test's prefix).

The daemons are ``python -m bus run ... --processes 2`` subprocesses; the handlers write marker
files (``started-``/``done-``/``held-``) so the test sees which process did what, and waits on
those files and the logs, never on the clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from bus import BusSettings, EventBus
from bus.cli._supervise import Supervisor
from tests.conftest import REAL_REDIS_URL
from tests.test_bus._support import ticket_created
from tests.test_cli._daemon import ROOT, Daemon, daemon_env, until

#: Handlers that leave files in MARKS: ``slow`` takes 1.5 s per event; ``holding`` never finishes
#: an event's first delivery (as a process that dies mid-handler) and finishes a redelivery.
APP = """
import os, pathlib, anyio

MARKS = pathlib.Path(os.environ["TEST_MARKS"])

async def slow(delivery):
    (MARKS / f"started-{delivery.event_id}-{os.getpid()}").touch()
    await anyio.sleep(1.5)
    (MARKS / f"done-{delivery.event_id}-{os.getpid()}").touch()

async def holding(delivery):
    if delivery.delivery_count == 1:
        (MARKS / f"held-{delivery.event_id}-{os.getpid()}").touch()
        await anyio.sleep(3600)
    (MARKS / f"done-{delivery.event_id}-{os.getpid()}-{delivery.delivery_count}").touch()

class Service:
    def __init__(self, handler):
        self.name = handler.__name__
        self.handler = handler
    async def run(self, bus, *, task_status=anyio.TASK_STATUS_IGNORED):
        bus.subscribe("TICKET_CREATED", self.handler)
        await bus.run(task_status=task_status)

slow_service = Service(slow)
holding_service = Service(holding)
"""


@pytest.fixture
def app(tmp_path: Path) -> tuple[str, Path]:
    """A throwaway module with the services (its name) and the marks folder."""
    name = f"procapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    marks = tmp_path / "marks"
    marks.mkdir()
    return name, marks


@pytest.fixture
def clean_prefix(test_prefix: str) -> Iterator[None]:
    """Deletes the test's keys at the end (the daemons run in other processes)."""
    yield
    client = redis.Redis.from_url(REAL_REDIS_URL)
    try:
        for key in client.scan_iter(match=f"{test_prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


def pending_of(stream: str) -> int:
    """Entries pending in the stream's event-processors group."""
    client = redis.Redis.from_url(REAL_REDIS_URL)
    try:
        info: Any = client.xpending(stream, "event-processors")
        return int(info["pending"])
    finally:
        client.close()


def group_env(test_prefix: str, tmp_path: Path, marks: Path, **extra: str) -> dict[str, str]:
    return daemon_env(test_prefix, PYTHONPATH=str(tmp_path), TEST_MARKS=str(marks), **extra)


def publish(test_prefix: str, n: int) -> list[str]:
    """Publish ``n`` TICKET_CREATED events under the test's prefix; their event ids."""

    async def go() -> list[str]:
        async with EventBus(BusSettings.from_url(REAL_REDIS_URL, prefix=test_prefix)) as bus:
            return [(await bus.publish("TICKET_CREATED", ticket_created())).event_id for _ in range(n)]

    return anyio.run(go)


def marks_of(marks: Path, kind: str) -> list[tuple[str, int]]:
    """(event id, pid) of every ``kind-{event id}-{pid}[-...]`` file."""
    out = []
    for path in marks.glob(f"{kind}-*"):
        rest = path.name[len(kind) + 1 :]
        event_id, pid = rest[:36], rest[37:].split("-")[0]
        out.append((event_id, int(pid)))
    return out


@pytest.mark.integration
def test_sigterm_drains_both_children_within_the_grace(
    app: tuple[str, Path], test_prefix: str, tmp_path: Path, daemons: list[Daemon], clean_prefix: None
) -> None:
    """SIGTERM to the supervisor while both children run handlers: every started handler finishes, each child
    stops cleanly, the group exits 0 within the grace period."""
    name, marks = app
    grace = 30.0
    env = group_env(
        test_prefix,
        tmp_path,
        marks,
        BUS_SHUTDOWN_GRACE_S=str(grace),
        REDIS_STREAM_BATCH_SIZE="1",
        BUS_CONCURRENCY="2",
    )
    group = Daemon([f"{name}:slow_service", "--processes", "2"], env)
    daemons.append(group)
    group.wait_for("group ready: 2 process(es) running")
    publish(test_prefix, 12)
    until(lambda: len({pid for _, pid in marks_of(marks, "started")}) == 2, 60, "both children busy", group)

    started = time.monotonic()
    group.proc.send_signal(signal.SIGTERM)
    code = group.proc.wait(grace + 15)
    took = time.monotonic() - started
    assert code == 0, "".join(group.lines)
    assert took < grace
    assert group.count("stopped cleanly") == 2
    begun = marks_of(marks, "started")
    assert sorted(begun) == sorted(marks_of(marks, "done"))  # no handler was cut
    assert len({pid for _, pid in begun}) == 2
    assert all(json.loads(line) for line in group.lines)


def _samples(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


@pytest.mark.integration
def test_a_killed_child_is_restarted_and_its_pending_entry_reclaimed(
    app: tuple[str, Path], test_prefix: str, tmp_path: Path, daemons: list[Daemon], clean_prefix: None
) -> None:
    """A child SIGKILLed mid-handler is started again, its pending entry is reclaimed and handled once by
    another consumer, and the group's probes report two ready processes and one restart."""
    name, marks = app
    env = group_env(
        test_prefix,
        tmp_path,
        marks,
        REDIS_STREAM_CLAIM_TIMEOUT="1000",
        BUS_RECLAIM_INTERVAL_S="0.5",
    )
    group = Daemon([f"{name}:holding_service", "--processes", "2", "--http-port", "0", "--http-host", "127.0.0.1"], env)
    daemons.append(group)
    port = group.port("serving the group's")
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    group.wait_for("group ready: 2 process(es) running")
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"process-1": "ok", "process-2": "ok"}
    (event_id,) = publish(test_prefix, 1)
    until(lambda: len(marks_of(marks, "held")) == 1, 60, "the first delivery held", group)
    ((_, victim),) = marks_of(marks, "held")

    os.kill(victim, signal.SIGKILL)
    group.wait_for("died (signal SIGKILL)")
    until(lambda: len(marks_of(marks, "done")) == 1, 60, "the entry reclaimed and handled", group)
    ((done_id, by),) = marks_of(marks, "done")
    assert done_id == event_id and by != victim
    group.wait_for("group ready: 2 process(es) running", n=2)
    until(lambda: http.get("/readyz").status_code == 200, 30, "the group ready again", group)

    def settled() -> bool:
        samples = _samples(http.get("/metrics").text)
        return samples.get("bus_process_restarts_total") == 1 and samples.get("bus_processes") == 2

    until(settled, 30, "metrics of two processes and one restart", group)
    stream = f"{test_prefix}event-stream:global:TICKET_CREATED"
    until(lambda: pending_of(stream) == 0, 30, "the reclaimed entry acked", group)

    group.proc.send_signal(signal.SIGTERM)
    assert group.proc.wait(45) == 0, "".join(group.lines)


@pytest.mark.integration
def test_a_child_failing_at_start_stops_the_group_with_its_code(test_prefix: str, tmp_path: Path) -> None:
    """An unknown service: the children exit 2 before running and the group exits 2 (as one process would)."""
    env = group_env(test_prefix, tmp_path, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "bus", "run", "no_such_module_xyz:app", "--processes", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "before its services ran" in proc.stderr


def test_children_get_unique_consumer_names_and_no_public_probe_port() -> None:
    """A fixed BUS_CONSUMER_NAME becomes {name}-{slot} per child (kept across restarts); the children do
    not inherit the group's probe port or the process count."""
    supervisor = Supervisor(
        ["svc"], {"BUS_CONSUMER_NAME": "billing", "BUS_HTTP_PORT": "9102", "KEEP": "1"}, processes=2, grace_s=1.0
    )
    envs = [supervisor._child_env(child) for child in supervisor.children]
    assert [e["BUS_CONSUMER_NAME"] for e in envs] == ["billing-1", "billing-2"]
    assert all(e["BUS_PROCESSES"] == "1" and "BUS_HTTP_PORT" not in e and e["KEEP"] == "1" for e in envs)
    default = Supervisor(["svc"], {}, processes=2, grace_s=1.0)
    assert all("BUS_CONSUMER_NAME" not in default._child_env(c) for c in default.children)  # {host}-{pid}-{random}


async def test_no_child_is_started_once_the_group_is_stopping() -> None:
    """A slot whose start comes after the stop (its turn to spawn, or a restart) starts no process: the
    forwarded signal could not reach it."""
    supervisor = Supervisor(["svc"], {}, processes=1, grace_s=1.0)
    supervisor._stop_all(signal.SIGTERM)
    (child,) = supervisor.children
    with anyio.fail_after(30):
        assert await supervisor._run_once(child) is None
    assert child.process is None
