"""A daemon whose Redis refuses writes: /readyz answers 503 naming the paused consumer, and 200 once it resumed."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from anyio.abc import TaskStatus

from bus import BusSettings, Delivery, EventBus, Runner, ops
from bus.observability import BusMetrics, probe_app, runner_health, serve_http


class Consuming:
    """A service that subscribes one handler and consumes."""

    name = "consuming"

    async def run(self, bus: EventBus, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async def handle(delivery: Delivery) -> None:
            return None

        bus.subscribe("TICKET_CREATED", handle, subscriber_id="noop")
        await bus.run(task_status=task_status)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
async def test_readyz_and_status_report_a_read_only_redis(redis_process: Callable[..., Any], test_prefix: str) -> None:
    """REPLICAOF a down master: /readyz 503 naming the paused consumer, bus status says writes are refused; then 200."""
    server = redis_process(appendonly=False)
    settings = BusSettings.from_url(
        server.url, prefix=test_prefix, block_ms=500, read_timeout_s=2.0, outage_probe_max_s=0.2
    )
    admin = aioredis.Redis(port=server.port)
    metrics = BusMetrics()
    runner = Runner([Consuming()], settings, signals=(), bus_factory=lambda s: EventBus(s, metrics=metrics))
    health = runner_health(runner, metrics)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)
            port = await tg.start(serve_http, probe_app(health, metrics), "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http, EventBus(settings) as bus:
                with anyio.fail_after(20):
                    assert (await http.get("/readyz")).status_code == 200
                    assert (await ops.status(bus)).writes_refused == ""
                    await admin.execute_command("REPLICAOF", "127.0.0.1", str(_free_port()))  # type: ignore[no-untyped-call]
                    consumer = runner.buses[0].consumer
                    assert consumer is not None
                    await consumer.wait_until(lambda s: s.outages == 1)  # it notices at its next read
                    response = await http.get("/readyz")
                    checks = response.json()["checks"]
                    assert response.status_code == 503 and checks["redis"] == "ok"
                    assert "paused" in checks["consumers"] and "read-only replica" in checks["consumers"]
                    assert metrics.value("backend_paused") == 1.0
                    assert "read-only replica" in (await ops.status(bus)).writes_refused
                    await admin.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]
                    await consumer.wait_until(lambda s: not consumer.health.paused)  # it resumes by itself
                    assert (await http.get("/readyz")).status_code == 200
                    assert metrics.value("backend_paused") == 0.0
            tg.cancel_scope.cancel()
    finally:
        await admin.aclose()
