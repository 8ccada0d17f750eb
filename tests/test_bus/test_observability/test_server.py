"""The probe server over real HTTP: /metrics parses, /healthz answers, /readyz follows its checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from bus.observability import BusMetrics, Health, probe_app, serve_http


async def test_metrics_healthz_and_readyz_follow_the_state() -> None:
    """Checks passing: 200; one failing: 503 naming it; draining: 503; /healthz stays 200; /metrics parses."""
    metrics = BusMetrics()
    health = Health(metrics)
    state = {"redis": None}

    async def redis_check() -> str | None:
        return state["redis"]

    health.add_check("redis", redis_check)
    metrics.inc("handled", ("TICKET_CREATED", "global", "g"), 2)
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, probe_app(health, metrics), "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            with anyio.fail_after(10):
                ready = await http.get("/readyz")
                assert (ready.status_code, ready.json()) == (200, {"ready": True, "checks": {"redis": "ok"}})
                state["redis"] = "Redis is unreachable"
                not_ready = await http.get("/readyz")
                assert not_ready.status_code == 503
                assert not_ready.json()["checks"] == {"redis": "Redis is unreachable"}
                assert (await http.get("/healthz")).status_code == 200
                state["redis"] = None
                health.set_draining()
                draining = await http.get("/readyz")
                assert draining.status_code == 503 and draining.json()["checks"]["draining"] == "shutting down"
                text = (await http.get("/metrics")).text
        tg.cancel_scope.cancel()
    values = {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name in ("bus_handled_total", "bus_ready", "bus_draining")
    }
    assert values == {"bus_handled_total": 2, "bus_ready": 0, "bus_draining": 1}


async def test_a_hung_check_reads_as_not_ready_in_time() -> None:
    """A check that never answers is reported after check_timeout_s instead of hanging the probe."""
    health = Health(check_timeout_s=0.2)

    async def hung() -> str | None:
        await anyio.sleep_forever()
        return None

    health.add_check("redis", hung)
    with anyio.fail_after(5):
        checks = await health.readiness()
    assert checks == {"redis": "no answer within 0.2 s"}


@pytest.mark.integration
async def test_readyz_follows_a_private_redis_stopped_and_back(redis_process: Callable[..., Any]) -> None:
    """/readyz is 503 while a private redis-server is stopped and 200 once it is back; /healthz stays 200."""
    server = redis_process(appendonly=False)
    client = aioredis.Redis(port=server.port, socket_connect_timeout=0.5, socket_timeout=0.5)
    health = Health(check_timeout_s=1.0)

    async def ping() -> str | None:
        try:
            await client.ping()
        except Exception as exc:
            return f"Redis is unreachable: {type(exc).__name__}"
        return None

    health.add_check("redis", ping)
    try:
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_http, probe_app(health, BusMetrics()), "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                with anyio.fail_after(30):
                    assert (await http.get("/readyz")).status_code == 200
                    server.stop()
                    assert (await http.get("/readyz")).status_code == 503
                    assert (await http.get("/healthz")).status_code == 200
                    server.start()
                    while (await http.get("/readyz")).status_code != 200:  # noqa: ASYNC110 (polls over HTTP)
                        await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()
