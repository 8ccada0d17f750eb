"""bus run --http-port: /metrics parses, /healthz stays up, /readyz follows Redis and the drain."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

APP = """
import anyio

class Slow:
    '''Ready at once; on stop, finishes its work for 1.5 s (shielded), like a handler in flight.'''
    name = "slow"
    async def run(self, bus, *, task_status=anyio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1.5)

slow = Slow()
"""


class Daemon:
    """``python -m bus run`` with its stderr lines collected."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bus", "run", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def port(self, timeout: float = 30.0) -> int:
        """The probe server's port, from its log line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(r"/readyz on [0-9.]+:(\d+)", line)
                if found:
                    return int(found.group(1))
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError("no probe server line:\n" + "".join(self.lines))


@pytest.fixture
def app_module(tmp_path: Path) -> str:
    name = f"probeapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    return name


def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; returns the seconds it took (fails after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.integration
def test_probes_follow_redis_and_the_drain(redis_process: Callable[..., Any], app_module: str, tmp_path: Path) -> None:
    """/readyz: 200 up, 503 while Redis is stopped, 200 again once back, 503 while draining; /healthz 200 throughout."""
    server = redis_process(appendonly=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BUS_"))}
    env |= {"REDIS_URL": server.url, "PYTHONPATH": str(tmp_path), "BUS_LOG_FORMAT": "json"}
    daemon = Daemon([f"{app_module}:slow", "--http-port", "0", "--http-host", "127.0.0.1"], env)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{daemon.port()}", timeout=10)

        def ready() -> bool:
            return http.get("/readyz").status_code == 200

        until(ready, 30, "ready at start")
        assert http.get("/healthz").status_code == 200
        samples = {
            s.name: s.value for f in text_string_to_metric_families(http.get("/metrics").text) for s in f.samples
        }
        assert samples["bus_ready"] == 1 and samples["bus_draining"] == 0
        server.stop()
        until(lambda: http.get("/readyz").status_code == 503, 15, "503 with Redis stopped")
        body = http.get("/readyz").json()
        assert body["ready"] is False and body["checks"]["redis"] != "ok" and body["checks"]["services"] == "ok"
        assert http.get("/healthz").status_code == 200
        server.start()
        # Back within 5 s of Redis (the readiness check itself is bounded at 2 s; slack for a loaded machine).
        assert until(ready, 15, "ready again after the restart") < 15
        daemon.proc.send_signal(signal.SIGTERM)
        until(lambda: http.get("/readyz").status_code == 503, 10, "503 while draining")
        assert json.loads(http.get("/readyz").text)["checks"]["draining"] == "shutting down"
        assert daemon.proc.wait(30) == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(5)


def _samples(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = text_string_to_metric_families(http.get("/metrics").text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


@pytest.mark.integration
def test_metrics_move_by_exactly_the_events_published(test_prefix: str, tmp_path: Path) -> None:
    """bus run email notifications --http-port: handled and handler-duration count move by exactly the events."""
    import anyio

    from bus import BusSettings, EventBus
    from publishers import Actor, PublishContext, publish_workflow_event
    from subscribers.demo import DIRECTORY_FILE

    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BUS_", "SMTP_"))}
    env |= {"REDIS_URL": redis_url, "REDIS_PREFIX": test_prefix, "BUS_LOG_FORMAT": "json"}
    args = ["email", "notifications", "--directory", str(DIRECTORY_FILE), "--outbox", str(tmp_path / "outbox")]
    daemon = Daemon([*args, "--http-port", "0", "--http-host", "127.0.0.1"], env)
    n = 7
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{daemon.port()}", timeout=10)
        until(lambda: http.get("/readyz").status_code == 200, 30, "ready")
        before = _samples(http)

        async def publish() -> None:
            settings = BusSettings.from_url(redis_url, prefix=test_prefix)
            async with EventBus(settings) as bus:
                ctx = PublishContext(
                    tenant_id=str(uuid.uuid4()), actor=Actor.user("d1d1d1d1-0000-4000-8000-000000000001")
                )
                for _ in range(n):
                    payload = {"ticketId": "71717171-0000-4000-8000-000000000008"}
                    await publish_workflow_event(bus, "TICKET_CREATED", payload, ctx)

        anyio.run(publish)
        wanted = {"emailservice::v7": n, "internal-notifications": n}

        def handled() -> dict[str, float]:
            now = _samples(http)
            return {
                ch: _value(now, "bus_handled_total", event_type="TICKET_CREATED", channel=ch)
                - _value(before, "bus_handled_total", event_type="TICKET_CREATED", channel=ch)
                for ch in wanted
            }

        until(lambda: handled() == wanted, 30, f"{n} handled per channel")
        after = _samples(http)
        for channel in wanted:
            moved = _value(after, "bus_handler_duration_seconds_count", event_type="TICKET_CREATED", channel=channel)
            moved -= _value(before, "bus_handler_duration_seconds_count", event_type="TICKET_CREATED", channel=channel)
            assert moved == n, channel
            assert _value(after, "bus_end_to_end_latency_seconds_count", channel=channel) >= n
        assert handled() == wanted  # nothing more arrived
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                daemon.proc.wait(20)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
                daemon.proc.wait(5)
