"""``bus.ops.tail``: the backlog oldest first, new entries while following, no group, reconnects after a restart."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import BackendUnavailableError, EventBus, ops
from bus.testing import fast_settings

#: Short waits so a restart is noticed quickly in tests.
QUICK = ops.Reconnect(initial_s=0.05, max_wait_s=0.5, jitter_s=0.05, give_up_after_s=30)


async def test_backlog_missing_stream_and_follow(backend: aioredis.Redis, test_prefix: str) -> None:
    """The last ``count`` entries come oldest first; a missing stream raises unless following; following
    yields entries added later; no consumer group is created."""
    stream = f"{test_prefix}tail"
    async with EventBus(fast_settings(prefix=test_prefix), client=backend) as bus:
        with pytest.raises(ops.StreamNotFoundError, match=f"no stream {stream}"):
            async for _ in ops.tail(bus, stream):
                pass
        ids: list[Any] = [await backend.xadd(stream, {"n": str(i), "event": '{"a": 1}'}) for i in range(3)]
        backlog = [e async for e in ops.tail(bus, stream, count=2)]
        assert [e.id for e in backlog] == [i.decode() for i in ids[1:]]
        assert backlog[0].to_json() == {
            "stream": stream,
            "id": ids[1].decode(),
            "fields": {"n": "1", "event": {"a": 1}},
        }
        assert backlog[0].to_json(raw=True)["fields"]["event"] == '{"a": 1}'

        async with aclosing(ops.tail(bus, stream, count=1, follow=True, reconnect=QUICK)) as entries:
            with anyio.fail_after(10):
                last = await anext(entries)
                await backend.xadd(stream, {"n": "3"})
                new = await anext(entries)
        assert (last.fields[b"n"], new.fields) == (b"2", {b"n": b"3"})
        assert await backend.xinfo_groups(stream) == []


async def test_follow_waits_for_a_stream_that_does_not_exist_yet(fake_client: aioredis.Redis) -> None:
    """Following a missing stream calls on_missing, then yields the stream's first entry."""
    missing: list[str] = []
    got: list[ops.StreamEntry] = []
    async with EventBus(fast_settings(), client=fake_client) as bus:

        async def follow() -> None:
            async with aclosing(ops.tail(bus, "later", follow=True, on_missing=missing.append)) as entries:
                async for entry in entries:
                    got.append(entry)
                    return

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await wait_until(lambda: _true_when(bool(missing)))
                await fake_client.xadd("later", {"n": "1"})
    assert missing == ["later"]
    assert [e.fields for e in got] == [{b"n": b"1"}]


async def blocked_in_xread(url: str) -> bool:
    """True when some client of the server at ``url`` is blocked in XREAD."""
    client = aioredis.Redis.from_url(url)
    try:
        clients: Any = await client.client_list()
        return any(c.get("cmd") == "xread" for c in clients)
    finally:
        await client.aclose()


async def wait_until(predicate: Any) -> None:
    """Poll an async predicate until it holds (callers bound it with fail_after)."""
    while True:
        if await predicate():
            return
        await anyio.sleep(0.02)


@pytest.mark.fault
async def test_follow_reconnects_after_a_redis_restart(redis_process: Any) -> None:
    """Redis restarting under a following tail: it reconnects with backoff (reporting it) and yields what is
    written after the restart, without repeating the entry it had already yielded."""
    server = redis_process()
    notes: list[tuple[BaseException, float]] = []
    got: list[ops.StreamEntry] = []
    async with EventBus(fast_settings(server.url, socket_timeout_s=2.0)) as bus:
        await bus.client.xadd("s", {"n": "1"})

        async def follow() -> None:
            entries = ops.tail(
                bus, "s", count=1, follow=True, reconnect=QUICK, on_reconnect=lambda e, w: notes.append((e, w))
            )
            async with aclosing(entries):
                async for entry in entries:
                    got.append(entry)
                    if len(got) == 2:
                        return

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await wait_until(lambda: blocked_in_xread(server.url))
                await anyio.to_thread.run_sync(server.restart)
                writer = aioredis.Redis.from_url(server.url)
                await writer.xadd("s", {"n": "2"})
                await writer.aclose()
    assert [e.fields[b"n"] for e in got] == [b"1", b"2"]
    assert notes and all(isinstance(e, BackendUnavailableError) for e, _ in notes)
    assert all(0 <= w <= QUICK.max_wait_s for _, w in notes)


async def _true_when(value: bool) -> bool:
    return value
