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
