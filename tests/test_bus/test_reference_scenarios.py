"""The reference bus's own consume scenarios, replayed against our consumer."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import EventBus
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_for_stats, xadd_reference


def make_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> EventBus:
    """A bus on the test's backend with fast timings and keys under the test prefix."""
    return EventBus(fast_settings(prefix=prefix, **overrides), client=client)


async def test_stale_entry_is_claimed_handled_once_and_acked(backend: aioredis.Redis, test_prefix: str) -> None:
    """An entry idle longer than the claim timeout with 1 delivery is claimed, handled once and acked."""
    async with make_bus(backend, test_prefix) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        group = bus.settings.consumer_group
        await backend.xgroup_create(stream, group, id="0", mkstream=True)
        entry_id, _ = await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
        await backend.xreadgroup(group, "consumer-4242", {stream: ">"})
        await backend.xclaim(stream, group, "consumer-4242", 0, [entry_id], idle=31_000, justid=True)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(5):
                stats = await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert recorder.calls == 1 and recorder.deliveries[0].delivery_count == 2
    assert (stats.reclaimed, stats.dead_lettered) == (1, 0)
    assert (await backend.xpending(stream, group))["pending"] == 0


async def test_entry_with_11_deliveries_is_dead_lettered_without_calling_the_handler(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """With max deliveries 10, a pending entry delivered 11 times is dead-lettered and acked; no handler runs."""
    async with make_bus(backend, test_prefix, max_deliveries=10) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        group = bus.settings.consumer_group
        await backend.xgroup_create(stream, group, id="0", mkstream=True)
        entry_id, _ = await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
        await backend.xreadgroup(group, "consumer-4242", {stream: ">"})
        await backend.xclaim(stream, group, "consumer-4242", 0, [entry_id], idle=31_000, retrycount=11, justid=True)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.dead_lettered == 1)
            tg.cancel_scope.cancel()
        [letter] = await bus.dead_letters("TICKET_CREATED")
    assert recorder.calls == 0
    assert (letter.source_message_id, letter.deliveries, letter.reason) == (entry_id, 11, "max-deliveries")
    assert (await backend.xpending(stream, group))["pending"] == 0


@pytest.mark.parametrize("failing_first", [pytest.param(True, id="failing-first"), pytest.param(False, id="ok-first")])
async def test_of_two_handlers_where_one_fails_once_the_other_runs_exactly_once(
    backend: aioredis.Redis, test_prefix: str, failing_first: bool
) -> None:
    """Of two handlers where one fails on the first delivery, the other runs exactly once in total."""
    async with make_bus(backend, test_prefix, handler_retries=0) as bus:
        flaky, steady = Recorder(fail={1: RuntimeError("first delivery fails")}), Recorder()
        order = [("flaky", flaky), ("steady", steady)]
        for name, recorder in order if failing_first else reversed(order):
            bus.subscribe("TICKET_CREATED", recorder, subscriber_id=name)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                stats = await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert (flaky.calls, steady.calls) == (2, 1)
    assert [d.delivery_count for d in flaky.deliveries] == [2]
    assert stats.failed == 1
