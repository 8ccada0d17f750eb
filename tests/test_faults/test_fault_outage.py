"""Redis refuses writes for longer than claim idle x max deliveries (out of memory, read-only replica),
under publish and consume load: consumers pause and resume by themselves, nothing is dead-lettered or lost.

The consumer runs in the test process (so the test reads its health and counts its log lines);
its handler writes its side effect to Redis with :func:`bus.redis_effect` (keyed by
``effect_key``), exactly the write that an outage refuses.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from faultlib import FaultRedis
from faultlib.cluster import EVENT_TYPE, ticket_created

from bus import BackendRefusedError, BusError, BusSettings, Delivery, EventBus, Keys, redis_effect
from bus.consume import ConsumerStats

pytestmark = pytest.mark.fault

PREFIX = "outage:"
STREAM = Keys(prefix=PREFIX).stream("global", EVENT_TYPE)
CLAIM_IDLE_MS = 1000
MAX_DELIVERIES = 3
#: The outage lasts twice what would dead-letter an entry if each refused delivery counted.
OUTAGE_S = 2 * CLAIM_IDLE_MS / 1000 * MAX_DELIVERIES
#: Everything published must be handled and nothing pending this long after Redis writes again.
DRAIN_BOUND_S = 15.0
#: Warning (and worse) lines the whole outage may cost, drain included ("a few dozen").
MAX_WARNINGS = 24


def _settings(url: str) -> BusSettings:
    return BusSettings.from_url(
        url,
        prefix=PREFIX,
        claim_idle_ms=CLAIM_IDLE_MS,
        max_deliveries=MAX_DELIVERIES,
        reclaim_interval_s=0.2,
        block_ms=500,
        read_timeout_s=2.0,
        socket_timeout_s=2.0,
        handler_retries=1,
        concurrency=8,
        outage_probe_max_s=0.5,
        outage_log_interval_s=2.0,
        max_len=100_000,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Load:
    """A careful publisher (same event id again after a refusal) and a consumer with a guarded effect."""

    def __init__(self, url: str) -> None:
        self.publisher = EventBus(_settings(url))
        self.consumer = EventBus(_settings(url))
        self.published: list[str] = []  # ids whose publish returned
        self.refused: Counter[str] = Counter()  # refusal kinds the publisher met
        self.applied: Counter[str] = Counter()  # effects committed, per event id
        self.deliveries: Counter[int] = Counter()
        self.publishing = True
        self._changed = anyio.Event()

    def _tick(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds (re-checked whenever an event is published or applied)."""
        while not predicate():
            await self._changed.wait()

    async def handle(self, delivery: Delivery) -> None:
        self.deliveries[delivery.delivery_count] += 1
        await anyio.sleep(0.04)  # some work, so that entries are in flight when Redis refuses
        async with redis_effect(self.consumer, delivery) as tx:
            tx.pipe.incr(f"{PREFIX}effect-count:{delivery.event_id}")
        if tx.applied:
            self.applied[delivery.event_id] += 1
            self._tick()

    async def publish(self) -> None:
        """About 100 events a second until told to stop; a refused publish is repeated with its id."""
        while self.publishing:
            event_id = str(uuid.uuid4())
            while True:
                try:
                    await self.publisher.publish(EVENT_TYPE, ticket_created(), event_id=event_id)
                    break
                except BackendRefusedError as exc:
                    self.refused[type(exc).__name__] += 1
                except BusError:
                    self.refused["other"] += 1
                await anyio.sleep(0.05)
            self.published.append(event_id)
            self._tick()
            await anyio.sleep(0.01)


async def _ride_out(
    server: FaultRedis,
    caplog: pytest.LogCaptureFixture,
    begin: Callable[[aioredis.Redis], Awaitable[Any]],
    end: Callable[[aioredis.Redis], Awaitable[Any]],
    refusal: str,
) -> str:
    """Load, ``begin`` the outage, hold it for OUTAGE_S after the consumer paused, ``end`` it, drain; checks."""
    admin = aioredis.Redis(port=server.port, socket_timeout=5)
    load = Load(server.url)
    async with load.publisher, load.consumer:
        load.consumer.subscribe(EVENT_TYPE, load.handle, subscriber_id="effect")
        async with anyio.create_task_group() as tg:
            await tg.start(load.consumer.run)
            consumer = load.consumer.consumer
            assert consumer is not None
            tg.start_soon(load.publish)
            with anyio.fail_after(10):
                await load.until(lambda: len(load.applied) >= 100)  # steady flow before the outage
            caplog.clear()
            await begin(admin)
            with anyio.fail_after(15):  # the consumer notices (a handler's effect or a read is refused)
                await consumer.wait_until(lambda s: s.outages >= 1)
            assert consumer.health.paused
            await anyio.sleep(OUTAGE_S)  # the outage itself: its length is the fault under test
            assert consumer.health.paused, "resumed while Redis still refused"
            assert consumer.health.status() is not None
            await end(admin)
            freed_at = anyio.current_time()
            before = len(load.published)
            with anyio.fail_after(10):
                await load.until(lambda: len(load.published) >= before + 50)  # publishing goes on after it
            load.publishing = False
            with anyio.fail_after(DRAIN_BOUND_S):
                while True:
                    pending = int((await admin.xpending(STREAM, "event-processors"))["pending"])
                    if pending == 0 and set(load.published) <= set(load.applied):
                        break
                    await anyio.sleep(0.05)
            drained_s = anyio.current_time() - freed_at
            assert not consumer.health.paused
            stats: ConsumerStats = load.consumer.stats
            tg.cancel_scope.cancel()
        dead = int(await admin.xlen(Keys.dead_letter(STREAM)))
        values: list[Any] = await admin.mget([f"{PREFIX}effect-count:{e}" for e in load.published])
        counts = [int(v) for v in values]
    await admin.aclose()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert dead == 0 and stats.dead_lettered == 0, f"{dead} good events dead-lettered"
    assert set(load.published) <= set(load.applied), "lost events"
    assert max(load.applied.values()) == 1 and counts == [1] * len(counts), "duplicate side effects"
    assert load.refused[refusal] > 0, load.refused  # the publisher got the typed error
    assert stats.outage_failures > 0, stats  # handlers did fail because of the outage, and were not counted
    assert max(load.deliveries) < MAX_DELIVERIES, load.deliveries
    assert len(warnings) <= MAX_WARNINGS, "\n".join(r.getMessage() for r in warnings)
    assert any("accepts writes again" in r.getMessage() for r in warnings)
    return (
        f"{len(load.published)} published, refused {dict(load.refused)}; {stats.outage_failures} handler failures "
        f"not counted, deliveries {dict(load.deliveries)}; drained {drained_s:.2f} s after the end; "
        f"{len(warnings)} warning lines:\n" + "\n".join(r.getMessage()[:160] for r in warnings)
    )


async def test_out_of_memory_longer_than_max_deliveries_dead_letters_nothing(
    make_fault_redis: Callable[..., FaultRedis], caplog: pytest.LogCaptureFixture
) -> None:
    """maxmemory + noeviction full for 2 x claim idle x max deliveries, then freed: 0 dead letters, 0 lost, 0 dups."""
    server = make_fault_redis(appendonly=False, extra=("--maxmemory-policy", "noeviction"))

    async def fill(admin: aioredis.Redis) -> None:
        for i in range(100):  # small writes: a big one would count its query buffer too, until freed
            await admin.set(f"{PREFIX}filler:{i}", b"x" * 80_000)
        used = int((await admin.info("memory"))["used_memory"])
        await admin.config_set("maxmemory", str(used - 4_000_000))  # full; deleting the filler frees 8 MB

    async def free(admin: aioredis.Redis) -> None:
        await admin.delete(*(f"{PREFIX}filler:{i}" for i in range(100)))

    with anyio.fail_after(60):
        summary = await _ride_out(server, caplog, fill, free, "BackendOutOfMemoryError")
    print(summary)


async def test_read_only_replica_longer_than_max_deliveries_dead_letters_nothing(
    make_fault_redis: Callable[..., FaultRedis], caplog: pytest.LogCaptureFixture
) -> None:
    """REPLICAOF a down master for 2 x claim idle x max deliveries, then NO ONE: pause, resume, 0 dead letters."""
    server = make_fault_redis(appendonly=False)

    async def demote(admin: aioredis.Redis) -> None:
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(_free_port()))  # type: ignore[no-untyped-call]

    async def promote(admin: aioredis.Redis) -> None:
        await admin.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]

    with anyio.fail_after(60):
        summary = await _ride_out(server, caplog, demote, promote, "BackendReadOnlyError")
    print(summary)


async def test_a_consumer_started_while_redis_is_full_waits_then_starts(
    make_fault_redis: Callable[..., FaultRedis], caplog: pytest.LogCaptureFixture
) -> None:
    """Started on a Redis out of memory (XGROUP CREATE refused), a consumer waits paused, then starts by itself."""
    server = make_fault_redis(appendonly=False, extra=("--maxmemory-policy", "noeviction", "--maxmemory", "1"))
    admin = aioredis.Redis(port=server.port, socket_timeout=5)
    load = Load(server.url)
    try:
        async with load.consumer, anyio.create_task_group() as tg:
            load.consumer.subscribe(EVENT_TYPE, load.handle, subscriber_id="effect")
            started = anyio.Event()

            async def run() -> None:
                await tg.start(load.consumer.run)
                started.set()

            tg.start_soon(run)
            with anyio.fail_after(15):
                while load.consumer.consumer is None:  # noqa: ASYNC110 (the loop object appears at once)
                    await anyio.sleep(0.01)
                consumer = load.consumer.consumer
                await consumer.wait_until(lambda s: s.outages == 1)
            assert consumer.health.paused and not started.is_set()
            await admin.config_set("maxmemory", "0")
            with anyio.fail_after(15):
                await started.wait()
            assert not consumer.health.paused
            assert [g["name"] for g in await admin.xinfo_groups(STREAM)] == [b"event-processors"]
            tg.cancel_scope.cancel()
    finally:
        await admin.aclose()
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 2  # began, ended
