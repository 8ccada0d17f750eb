"""No silent trimming loss: entries trimmed before a group read them are counted and logged."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import fakeredis
import pytest
import redis.asyncio as aioredis

from bus import Delivery, EventBus
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_for_stats, xadd_reference


def make_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> EventBus:
    """A bus on the test's backend with fast timings and keys under the test prefix."""
    return EventBus(fast_settings(prefix=prefix, **overrides), client=client)


async def test_entries_trimmed_while_no_consumer_ran_are_counted(
    backend: aioredis.Redis, test_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries trimmed while no consumer ran show in status, are counted and logged at start."""
    async with make_bus(backend, test_prefix) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        group = bus.settings.consumer_group
        await backend.xgroup_create(stream, group, id="0", mkstream=True)
        for _ in range(2):
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
        read: Any = await backend.xreadgroup(group, "old", {stream: ">"})
        for entry_id, _ in read[0][1]:
            await backend.xack(stream, group, entry_id)
        for _ in range(20):
            await xadd_reference(
                backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys, max_len=5, approximate=False
            )
        before = await bus.status()
        assert [g.trimmed_unread for s in before.streams for g in s.groups] == [15]
        assert before.streams[0].groups[0].lag == 5
        with caplog.at_level(logging.ERROR, logger="bus.consume"):
            async with anyio.create_task_group() as tg:
                await tg.start(bus.run)
                with anyio.fail_after(5):
                    stats = await wait_for_stats(bus, lambda s: s.handled == 5)
                tg.cancel_scope.cancel()
        assert (stats.trimmed_unread, bus.trimmed_unread) == (15, 15)
        assert any("15 entries of" in r.message and "trimmed before group" in r.message for r in caplog.records)
        after = await bus.status()
        # Redis keeps counting (entries-read only counts real deliveries); fakeredis re-bases it on the next read.
        expected = 0 if isinstance(backend, fakeredis.FakeAsyncRedis) else 15
        assert [g.trimmed_unread for s in after.streams for g in s.groups] == [expected]


async def test_entries_trimmed_while_the_consumer_lags_are_counted(backend: aioredis.Redis, test_prefix: str) -> None:
    """With the consumer stuck and producers trimming, every event is handled or counted as trimmed-unread."""
    release = anyio.Event()
    handled: list[str] = []

    async def slow(delivery: Delivery) -> None:
        await release.wait()
        handled.append(delivery.event_id)

    async with make_bus(backend, test_prefix, concurrency=1, batch_size=1) as bus:
        bus.subscribe("TICKET_CREATED", slow)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            for n in range(30):
                await xadd_reference(
                    backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys, max_len=5, approximate=False
                )
                if n == 2:  # one entry in the handler, one buffered, one waiting: the reader is stuck
                    with anyio.fail_after(5):
                        await wait_for_stats(bus, lambda s: s.read == 3)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.trimmed_unread > 0)
                release.set()
                stats = await wait_for_stats(bus, lambda s: s.handled + s.trimmed_unread == 30)
            tg.cancel_scope.cancel()
    assert len(handled) == stats.handled >= 5
    assert stats.trimmed_unread == 30 - len(handled)


async def test_safe_policy_trims_only_what_every_group_has_read(backend: aioredis.Redis, test_prefix: str) -> None:
    """trim_policy='safe' trims back to max_len but never an entry another group has not read and acked."""
    async with make_bus(backend, test_prefix, trim_policy="safe", max_len=5) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        await backend.xgroup_create(stream, "laggard", id="0", mkstream=True)
        ids = [
            (await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys, max_len=None))[0]
        ]
        for _ in range(19):
            entry_id, _ = await xadd_reference(
                backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys, max_len=None
            )
            ids.append(entry_id)
        read: Any = await backend.xreadgroup("laggard", "slow", {stream: ">"}, count=3)
        await backend.xack(stream, "laggard", ids[0], ids[1])  # ids[2] stays pending
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 20 and s.safely_trimmed == 2)
                remaining: Any = await backend.xrange(stream)
                assert [e.decode() for e, _ in remaining] == ids[2:]  # the laggard's pending entry is kept
                await backend.xack(stream, "laggard", ids[2])
                await backend.xreadgroup("laggard", "slow", {stream: ">"})
                await backend.xack(stream, "laggard", *ids[3:])
                await wait_for_stats(bus, lambda s: s.safely_trimmed == 15)
            tg.cancel_scope.cancel()
        assert len(read[0][1]) == 3
        assert await backend.xlen(stream) == 5
