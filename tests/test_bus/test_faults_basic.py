"""Faults on a private redis-server: restart without persistence, killed connections, a hung server, bad auth."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import AuthenticationError, EventBus
from bus.testing import Recorder, fast_settings, ticket_created_payload, xadd_reference

pytestmark = pytest.mark.fault


@asynccontextmanager
async def direct(url: str) -> AsyncIterator[aioredis.Redis]:
    """A fresh client of its own (the bus's connections are the ones under test)."""
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def publish(url: str, bus: EventBus) -> str:
    """XADD one reference-format TICKET_CREATED on a fresh connection; returns the event id."""
    async with direct(url) as client:
        return (await xadd_reference(client, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys))[1]


async def test_consumer_resumes_after_a_restart_that_lost_the_group(
    redis_process: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """After a restart that lost stream and group (NOGROUP) the consumer recreates its group and carries on."""
    server = redis_process(appendonly=False)
    settings = fast_settings(server.url, socket_timeout_s=1.0, connect_timeout_s=1.0)
    async with EventBus(settings) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        with caplog.at_level(logging.WARNING, logger="bus.consume"), anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(bus.run)
                first = await publish(server.url, bus)
                await recorder.wait(1)
                await anyio.to_thread.run_sync(server.restart)
                second = await publish(server.url, bus)
                await recorder.wait(2)
                tg.cancel_scope.cancel()
    assert recorder.event_ids == [first, second]
    assert bus.stats.group_recreations >= 1
    nogroup_logs = [r for r in caplog.records if "missing" in r.message and "recreating" in r.message]
    assert 1 <= len(nogroup_logs) <= 3


async def test_consumer_survives_killed_connections(redis_process: Callable[..., Any]) -> None:
    """CLIENT KILL of every connection mid-run: the reader and the acker reconnect and nothing is lost."""
    server = redis_process()
    async with EventBus(fast_settings(server.url, socket_timeout_s=1.0)) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                await tg.start(bus.run)
                ids = [await publish(server.url, bus)]
                await recorder.wait(1)
                async with direct(server.url) as admin:
                    assert await admin.client_kill_filter(_type="normal", skipme=True) >= 1
                ids.append(await publish(server.url, bus))
                await recorder.wait(2)
                tg.cancel_scope.cancel()
        assert recorder.event_ids == ids
        status = await bus.status()
        assert status.pending == 0
        assert bus.stats.reconnects >= 1


async def test_hung_server_trips_the_read_timeout_and_the_consumer_recovers(redis_process: Callable[..., Any]) -> None:
    """A server that stops answering trips the hard read timeout (connection reset); consuming resumes."""
    server = redis_process(extra=("--enable-debug-command", "yes"))
    settings = fast_settings(server.url, read_timeout_s=0.4, block_ms=100, socket_timeout_s=0.5)
    async with EventBus(settings) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                await tg.start(bus.run)
                # Once the reader is connected (its handshake is bounded by the connect timeout, not
                # by the read timeout), the hang below meets a blocking read.
                first = await publish(server.url, bus)
                await recorder.wait(1)
                async with direct(server.url) as admin:
                    await admin.execute_command("DEBUG", "SLEEP", "1.5")  # type: ignore[no-untyped-call]  # returns after the server woke up
                event_id = await publish(server.url, bus)
                await recorder.wait(2)
                tg.cancel_scope.cancel()
    assert recorder.event_ids == [first, event_id]
    assert bus.stats.reconnects >= 1


@pytest.mark.parametrize(
    "credentials", [pytest.param(":wrong@", id="wrong-password"), pytest.param("", id="no-password")]
)
async def test_bad_credentials_fail_fast_with_a_clear_error(
    redis_process: Callable[..., Any], credentials: str
) -> None:
    """A wrong or missing password stops connect() and run() at once with AuthenticationError naming the fix."""
    server = redis_process()
    async with direct(server.url) as admin:  # (starting with --requirepass makes the fixture's ping retry for 4 s)
        await admin.config_set("requirepass", "secret")
    settings = fast_settings(f"redis://{credentials}127.0.0.1:{server.port}/0")
    bus = EventBus(settings)
    bus.subscribe("TICKET_CREATED", Recorder())
    try:
        with anyio.fail_after(3):
            with pytest.raises(AuthenticationError, match="check REDIS_USERNAME/REDIS_PASSWORD or the URL"):
                await bus.connect()
            with pytest.raises(AuthenticationError, match="check REDIS_USERNAME/REDIS_PASSWORD or the URL"):
                await bus.run()
    finally:
        await bus.aclose()
    assert "secret" not in repr(settings.redacted()) and "wrong" not in str(settings.redacted()["redis_url"])
