"""bus run --http-port: /metrics parses, /healthz stays up, /readyz follows Redis and the drain."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REAL_REDIS_URL
from tests.test_cli._daemon import Daemon, daemon_env, until

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


@pytest.fixture
def app_module(tmp_path: Path) -> str:
    name = f"probeapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    return name


@pytest.mark.integration
def test_probes_follow_redis_and_the_drain(
    redis_process: Callable[..., Any], app_module: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """/readyz: 200 up, 503 while Redis is stopped, 200 again once back, 503 while draining; /healthz 200 throughout."""
    server = redis_process(appendonly=False)
    env = daemon_env(redis_url=server.url, PYTHONPATH=str(tmp_path))
    daemon = Daemon([f"{app_module}:slow", "--http-port", "0", "--http-host", "127.0.0.1"], env)
    daemons.append(daemon)
    http = httpx.Client(base_url=f"http://127.0.0.1:{daemon.port()}", timeout=10)

    def ready() -> bool:
        return http.get("/readyz").status_code == 200

    until(ready, 30, "ready at start")
    assert http.get("/healthz").status_code == 200
    samples = {s.name: s.value for f in text_string_to_metric_families(http.get("/metrics").text) for s in f.samples}
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


def _samples(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = text_string_to_metric_families(http.get("/metrics").text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


@pytest.mark.integration
def test_metrics_move_by_exactly_the_events_published(test_prefix: str, tmp_path: Path, daemons: list[Daemon]) -> None:
    """bus run email notifications --http-port: handled and handler-duration count move by exactly the events."""
    import anyio

    from bus import BusSettings, EventBus
    from publishers import Actor, PublishContext, publish_workflow_event
    from subscribers.demo import DIRECTORY_FILE

    args = ["email", "notifications", "--directory", str(DIRECTORY_FILE), "--outbox", str(tmp_path / "outbox")]
    daemon = Daemon([*args, "--http-port", "0", "--http-host", "127.0.0.1"], daemon_env(test_prefix))
    daemons.append(daemon)
    n = 7
    http = httpx.Client(base_url=f"http://127.0.0.1:{daemon.port()}", timeout=10)
    until(lambda: http.get("/readyz").status_code == 200, 30, "ready")
    before = _samples(http)

    async def publish() -> None:
        settings = BusSettings.from_url(REAL_REDIS_URL, prefix=test_prefix)
        async with EventBus(settings) as bus:
            ctx = PublishContext(tenant_id=str(uuid.uuid4()), actor=Actor.user("d1d1d1d1-0000-4000-8000-000000000001"))
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
