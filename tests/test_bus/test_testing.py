"""bus.testing's helpers for code built on the bus."""

from __future__ import annotations

import anyio
import redis.asyncio as aioredis

from bus import EventBus
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_drained


async def test_wait_drained_returns_with_streams_nobody_wrote(backend: aioredis.Redis, test_prefix: str) -> None:
    """wait_drained returns once the written stream is handled, although the group on the never-written
    stream reports no lag (Redis cannot tell it for a group created on an empty stream)."""
    recorder = Recorder()
    async with EventBus(fast_settings(prefix=test_prefix), client=backend) as bus:
        bus.subscribe("TICKET_CREATED", recorder)
        bus.subscribe("TICKET_CLOSED", recorder)  # never written
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await bus.publish("TICKET_CREATED", ticket_created_payload())
            with anyio.fail_after(10):
                await wait_drained(bus)
            tg.cancel_scope.cancel()
    assert recorder.calls == 1
