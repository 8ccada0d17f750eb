"""Pending entries: claimed from a vanished consumer, drained first after a restart, kept while in flight."""

from __future__ import annotations

from typing import Any

import anyio
import redis.asyncio as aioredis

from bus import Delivery, EventBus
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_for_stats, xadd_reference


def make_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> EventBus:
    """A bus on the test's backend with fast timings and keys under the test prefix."""
    return EventBus(fast_settings(prefix=prefix, **overrides), client=client)


async def test_entry_of_a_vanished_consumer_is_claimed_by_a_live_one(backend: aioredis.Redis, test_prefix: str) -> None:
    """A vanished consumer's unacked entry is handled by a live one once idle for claim_idle_ms, not before.

    The upper bound (claim_idle_ms + one loop) is generous for a loaded machine.
    """
    async with make_bus(backend, test_prefix, claim_idle_ms=200, reclaim_interval_s=0.05) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        await backend.xgroup_create(stream, bus.settings.consumer_group, id="0", mkstream=True)
        entry_id, event_id = await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
        await backend.xreadgroup(bus.settings.consumer_group, "ghost", {stream: ">"}, count=10)
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(10):
                stats = await wait_for_stats(bus, lambda s: s.handled == 1)
            elapsed = anyio.current_time() - started
            tg.cancel_scope.cancel()
    [delivery] = recorder.deliveries
    assert (delivery.event_id, delivery.entry_id, delivery.delivery_count) == (event_id, entry_id, 2)
    assert stats.reclaimed == 1 and elapsed >= 0.15
    assert await backend.xpending(stream, bus.settings.consumer_group) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_restarted_consumer_drains_its_own_pending_entries_first(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """A consumer restarted under its old name handles the entries it read before the crash first, then new ones."""
    async with make_bus(backend, test_prefix, consumer_name="worker-1", claim_idle_ms=60_000, concurrency=1) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        await backend.xgroup_create(stream, bus.settings.consumer_group, id="0", mkstream=True)
        old = [(await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys))[1]]
        old.append((await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys))[1])
        old.append((await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys))[1])
        await backend.xreadgroup(bus.settings.consumer_group, "worker-1", {stream: ">"}, count=3)  # then "crashed"
        new = [(await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys))[1]]
        new.append((await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys))[1])
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(5):
                stats = await wait_for_stats(bus, lambda s: s.handled == 5)
            tg.cancel_scope.cancel()
    assert recorder.event_ids == old + new
    assert [d.delivery_count for d in recorder.deliveries] == [2, 2, 2, 1, 1]
    assert stats.reclaimed == 0


async def test_a_slow_handler_keeps_its_entry_from_being_claimed(backend: aioredis.Redis, test_prefix: str) -> None:
    """An entry whose handler runs longer than claim_idle_ms is kept alive, so another consumer never claims it.

    What is measured is that nothing happens for four claim timeouts; claim_idle_ms is long enough
    that a loaded machine's scheduling delays do not hold up the keep-alive past it.
    """
    calls: list[str] = []
    release = anyio.Event()

    async def slow(delivery: Delivery) -> None:
        calls.append(delivery.entry_id)
        with anyio.fail_after(30):
            await release.wait()

    async with (
        make_bus(backend, test_prefix, claim_idle_ms=500, reclaim_interval_s=0.02, handler_timeout_s=30) as a,
        make_bus(backend, test_prefix, claim_idle_ms=500, reclaim_interval_s=0.02, handler_timeout_s=30) as b,
    ):
        a.subscribe("TICKET_CREATED", slow)
        b.subscribe("TICKET_CREATED", slow)
        async with anyio.create_task_group() as tg:
            await tg.start(a.run)
            await tg.start(b.run)
            await xadd_reference(a.client, "TICKET_CREATED", ticket_created_payload(), keys=a.keys)
            await anyio.sleep(4 * 0.5)  # four claim timeouts: what is being measured is that nothing happens
            release.set()
            owner = a if a.stats.read else b
            with anyio.fail_after(5):
                await wait_for_stats(owner, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert len(calls) == 1
    assert a.stats.reclaimed + b.stats.reclaimed == 0


async def test_a_dead_consumers_whole_backlog_is_taken_over_in_one_reclaim_pass(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """100 entries left pending by a dead consumer are all claimed in one pass, not one batch (10) per interval.

    One batch per pass would need 10 passes (15 s); the deadline leaves room for about 6, which is
    generous for a loaded machine.
    """
    async with make_bus(backend, test_prefix, batch_size=10, claim_idle_ms=200, reclaim_interval_s=1.5) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        await backend.xgroup_create(stream, bus.settings.consumer_group, id="0", mkstream=True)
        for _ in range(100):
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
        await backend.xreadgroup(bus.settings.consumer_group, "ghost", {stream: ">"}, count=100)
        with anyio.fail_after(10):  # the ghost's entries become idle for longer than claim_idle_ms
            await _until_idle(backend, stream, bus.settings.consumer_group, 200)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(9):
                stats = await wait_for_stats(bus, lambda s: s.handled == 100)
            tg.cancel_scope.cancel()
    assert stats.reclaimed == 100
    assert len(set(recorder.event_ids)) == 100


async def _until_idle(client: aioredis.Redis, stream: str, group: str, idle_ms: int) -> None:
    """Wait until every pending entry of the group has been idle for longer than ``idle_ms``."""
    while True:
        rows: Any = await client.xpending_range(stream, group, "-", "+", 1000)
        if min(int(row["time_since_delivered"]) for row in rows) > idle_ms:
            return
        await anyio.sleep(0.02)
