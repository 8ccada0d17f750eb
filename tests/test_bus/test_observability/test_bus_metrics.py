"""BusMetrics fed by a running bus: trimmed entries, reclaims and connection attempts, by their labels."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import BackendError, BusSettings, EventBus
from bus.observability import BusMetrics
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_for_stats, xadd_reference


async def test_trimmed_unread_and_trimmed_pending_are_counted(backend: aioredis.Redis, test_prefix: str) -> None:
    """Entries trimmed before the group read them (trimmed_unread) and pending ones deleted or trimmed
    before they were processed (trimmed_pending), by event type, channel and group."""
    metrics = BusMetrics()
    async with EventBus(fast_settings(prefix=test_prefix), client=backend, metrics=metrics) as bus:
        bus.subscribe("TICKET_CREATED", Recorder())
        stream = bus.keys.stream("global", "TICKET_CREATED")
        group = bus.settings.consumer_group
        await backend.xgroup_create(stream, group, id="0", mkstream=True)
        for _ in range(3):
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
        read: Any = await backend.xreadgroup(group, "gone", {stream: ">"})  # pending on a consumer that is gone
        await backend.xdel(stream, *(entry_id for entry_id, _ in read[0][1][:2]))  # two deleted while pending
        for _ in range(8):  # the third pending one and 4 never read: trimmed away
            await xadd_reference(
                backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys, max_len=4, approximate=False
            )
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(10):
                stats = await wait_for_stats(bus, lambda s: s.trimmed_pending == 3 and s.handled == 4)
            tg.cancel_scope.cancel()
    labels = ("TICKET_CREATED", "global", group)
    assert stats.trimmed_unread == 4
    assert metrics.value("trimmed_unread", labels) == 4
    assert metrics.value("trimmed_pending", labels) == 3
    assert metrics.value("handled", labels) == 4


async def test_reclaimed_is_counted_by_type_and_channel(backend: aioredis.Redis, test_prefix: str) -> None:
    """An entry claimed from a consumer that is gone counts in reclaimed with its type and channel."""
    metrics = BusMetrics()
    async with EventBus(fast_settings(prefix=test_prefix), client=backend, metrics=metrics) as bus:
        bus.subscribe("TICKET_CREATED", Recorder())
        stream = bus.keys.stream("global", "TICKET_CREATED")
        group = bus.settings.consumer_group
        await backend.xgroup_create(stream, group, id="0", mkstream=True)
        await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
        await backend.xreadgroup(group, "gone", {stream: ">"})
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(10):
                stats = await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert stats.reclaimed == 1
    assert metrics.value("reclaimed", ("TICKET_CREATED", "global", group)) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.integration
async def test_connection_attempts_are_counted_per_role(real_client: aioredis.Redis, test_prefix: str) -> None:
    """The bus's pool and the blocking read connection count their connects; a refused connect counts too."""
    metrics = BusMetrics()
    url = real_client.connection_pool.connection_kwargs
    settings = fast_settings(prefix=test_prefix, host=url.get("host", "127.0.0.1"), port=url.get("port", 6379))
    async with EventBus(settings, metrics=metrics) as bus:
        bus.subscribe("TICKET_CREATED", Recorder())
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await bus.publish("TICKET_CREATED", ticket_created_payload())
            with anyio.fail_after(10):
                await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert metrics.value("connection_attempts", ("pool",)) >= 1
    assert metrics.value("connection_attempts", ("read",)) == 1
    refused = BusMetrics()
    nowhere: Any = BusSettings(port=_closed_port(), connect_timeout_s=1.0)
    with pytest.raises(BackendError):
        async with EventBus(nowhere, metrics=refused):
            pass
    assert refused.value("connection_attempts", ("pool",)) >= 1
