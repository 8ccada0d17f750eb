"""Redis-wide refusals (OOM, READONLY, LOADING, MISCONF) reach callers as typed BackendRefusedError kinds."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rex
from redis._parsers.base import BaseParser
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bus import (
    BackendError,
    BackendLoadingError,
    BackendOutOfMemoryError,
    BackendPersistenceError,
    BackendReadOnlyError,
    BackendRefusedError,
    BackendUnavailableError,
    EventBus,
    redis_errors,
)
from bus._redis import translate_error

from ._support import open_bus, ticket_created


def free_port() -> int:
    """A TCP port nobody listens on right now (a master that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The reply lines a Redis 7 server sends for each refusal, exactly as on the wire (without ``-``).
REPLIES = [
    pytest.param(
        "OOM command not allowed when used memory > 'maxmemory'.", BackendOutOfMemoryError, "maxmemory", id="oom"
    ),
    pytest.param(
        "READONLY You can't write against a read only replica.", BackendReadOnlyError, "REPLICAOF", id="readonly"
    ),
    pytest.param("LOADING Redis is loading the dataset in memory", BackendLoadingError, "loaded", id="loading"),
    pytest.param(
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
        BackendPersistenceError,
        "stop-writes-on-bgsave-error",
        id="misconf",
    ),
]


@pytest.mark.parametrize(("reply", "kind", "fix"), REPLIES)
def test_each_refusal_reply_gets_its_own_type(reply: str, kind: type[BackendRefusedError], fix: str) -> None:
    """A reply parsed by redis-py becomes its typed error, with Redis's text and a one-sentence fix."""
    error = translate_error(BaseParser.parse_error(reply), "publish")
    assert type(error) is kind and isinstance(error, BackendRefusedError)
    assert reply.split(" ", 1)[1] in error.redis_message
    assert "during publish" in str(error) and f"Fix: {kind.fix}." in str(error) and fix in kind.fix


@pytest.mark.parametrize(("reply", "kind", "fix"), REPLIES)
def test_a_refusal_inside_a_pipeline_keeps_its_type(reply: str, kind: type[BackendRefusedError], fix: str) -> None:
    """redis-py's "Command # n (...) of pipeline caused error: ..." wrapper does not hide the kind."""
    inner = BaseParser.parse_error(reply)
    inner.args = (f"Command # 1 (XADD s * a 1) of pipeline caused error: {inner.args[0]}",)
    assert type(translate_error(inner)) is kind


def test_loading_is_still_an_unavailable_backend() -> None:
    """LOADING stays retryable like any unavailable backend (connect retries treat it so)."""
    assert issubclass(BackendLoadingError, BackendUnavailableError)


def test_other_response_errors_are_not_refusals() -> None:
    """An error about the command itself (WRONGTYPE) is a plain BackendError, not a refusal."""
    error = translate_error(BaseParser.parse_error("WRONGTYPE Operation against a key holding the wrong kind of value"))
    assert type(error) is BackendError


def test_redis_errors_raises_the_typed_error_from_the_original() -> None:
    """``redis_errors`` raises the typed error with the redis-py exception as its cause."""
    original = rex.ReadOnlyError("You can't write against a read only replica.")
    with pytest.raises(BackendReadOnlyError) as info, redis_errors("XADD"):
        raise original
    assert info.value.__cause__ is original


async def _refused_publish(client: aioredis.Redis, test_prefix: str, kind: type[BackendRefusedError]) -> float:
    """Publish once, alone and batched; both must raise ``kind``; returns the slowest call's duration.

    Callers bound it at 5 s (a refusal is raised at once, not retried until a timeout): milliseconds
    normally, so the bound is already generous for a loaded machine.
    """
    async with open_bus(client, test_prefix) as bus:
        return await _refused_calls(bus, kind)


async def _refused_calls(bus: EventBus, kind: type[BackendRefusedError]) -> float:
    """publish, publish_many and idempotent publish on ``bus`` must raise ``kind``; the slowest call's duration."""
    slowest = 0.0
    for call in (
        lambda: bus.publish("TICKET_CREATED", ticket_created()),
        lambda: bus.publish_many([("TICKET_CREATED", ticket_created())] * 3),
        lambda: bus.publish("TICKET_CREATED", ticket_created(), idempotency_key="k-refused"),
    ):
        started = time.monotonic()
        with pytest.raises(kind):
            await call()
        slowest = max(slowest, time.monotonic() - started)
    return slowest


@pytest.mark.integration
async def test_publish_on_a_full_redis_raises_out_of_memory(
    redis_process: Callable[..., Any], test_prefix: str
) -> None:
    """maxmemory + noeviction: publish, publish_many and idempotent publish raise BackendOutOfMemoryError."""
    server = redis_process(appendonly=False, extra=("--maxmemory-policy", "noeviction"))
    client = aioredis.Redis(port=server.port)
    try:
        with anyio.fail_after(20):
            for i in range(4):
                await client.set(f"filler:{i}", b"x" * 1_000_000)
            await client.config_set("maxmemory", "2mb")  # well below what is used: every write is refused
            slowest = await _refused_publish(client, test_prefix, BackendOutOfMemoryError)
            assert await client.keys(f"{test_prefix}*") == []
    finally:
        with anyio.fail_after(5):
            await client.aclose()
    assert slowest < 5


@pytest.mark.integration
async def test_publish_on_a_replica_raises_read_only(redis_process: Callable[..., Any], test_prefix: str) -> None:
    """A server turned replica (of a master that is down) refuses publishes with BackendReadOnlyError."""
    server = redis_process(appendonly=False)
    client = aioredis.Redis(port=server.port)
    try:
        with anyio.fail_after(20):
            await client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # type: ignore[no-untyped-call]
            slowest = await _refused_publish(client, test_prefix, BackendReadOnlyError)
            await client.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]
            async with open_bus(client, test_prefix) as bus:
                result = await bus.publish("TICKET_CREATED", ticket_created())  # writable again
            assert result.entries
    finally:
        with anyio.fail_after(5):
            await client.aclose()
    assert slowest < 5


@pytest.mark.integration
async def test_publish_after_a_failed_save_raises_persistence_error(
    redis_process: Callable[..., Any], test_prefix: str
) -> None:
    """A failed BGSAVE with stop-writes-on-bgsave-error makes publishes raise BackendPersistenceError."""
    # /proc takes no files, not even from root: the background save must fail.
    server = redis_process(appendonly=False, extra=("--save", "3600 1", "--dir", "/proc"))
    client = aioredis.Redis(port=server.port)
    try:
        with anyio.fail_after(20):
            await client.bgsave()
            while (await client.info("persistence"))["rdb_bgsave_in_progress"]:  # noqa: ASYNC110 (polls Redis)
                await anyio.sleep(0.02)
            assert (await client.info("persistence"))["rdb_last_bgsave_status"] == "err"
            slowest = await _refused_publish(client, test_prefix, BackendPersistenceError)
    finally:
        with anyio.fail_after(5):
            await client.aclose()
    assert slowest < 5


@pytest.mark.integration
async def test_publish_while_redis_loads_raises_loading(redis_process: Callable[..., Any], test_prefix: str) -> None:
    """A Redis still loading its dataset (slowed by key-load-delay) refuses publishes with BackendLoadingError."""
    slow_load = ("--key-load-delay", "2000", "--loading-process-events-interval-bytes", "1024")
    server = redis_process(appendonly=False, extra=slow_load)
    client = aioredis.Redis(port=server.port, retry=Retry(NoBackoff(), 0))  # as the bus builds its clients
    try:
        async with open_bus(client, test_prefix) as bus, anyio.create_task_group() as tg:
            with anyio.fail_after(20):
                for start in range(0, 3000, 500):
                    await client.mset({f"{test_prefix}filler:{i}": b"x" * 100 for i in range(start, start + 500)})
                await client.save()
            server.kill()
            tg.start_soon(anyio.to_thread.run_sync, server.start)  # returns once loaded (3000 keys x 2 ms)
            with anyio.fail_after(20):
                while True:  # the server listens (and answers LOADING) while it loads
                    try:
                        await client.ping()
                    except rex.BusyLoadingError:
                        break
                    except rex.ConnectionError:
                        await anyio.sleep(0.01)
                        continue
                    pytest.fail("the dataset loaded before the test could see LOADING")
                # A bus connected before the restart (a new connection waits in the handshake until
                # the dataset is loaded: redis-py's, before any bus code runs).
                slowest = await _refused_calls(bus, BackendLoadingError)
    finally:
        with anyio.fail_after(5):
            await client.aclose()
    assert slowest < 5
