"""Exactly-once side effects: Delivery.effect_key, the Redis effect guard, progress markers, lost groups."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import msgspec
import pytest
import redis.asyncio as aioredis

from bus import (
    BackendError,
    ConfigurationError,
    Delivery,
    EventBus,
    RetryLater,
    apply_once,
    effect_marker_key,
    redis_effect,
)
from bus.consume._markers import Markers
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_for_stats, xadd_reference


def make_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> EventBus:
    """A bus on the test's backend with fast timings and keys under the test prefix."""
    return EventBus(fast_settings(prefix=prefix, **overrides), client=client)


async def first_delivery(client: aioredis.Redis, prefix: str, **overrides: Any) -> Delivery:
    """The delivery the consume loop hands a handler for one reference entry."""
    async with make_bus(client, prefix, **overrides) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder, subscriber_id="effects")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(client, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    return recorder.deliveries[0]


async def until(predicate: Callable[[], bool | Awaitable[bool]], interval_s: float = 0.01) -> None:
    """Poll ``predicate`` (sync or async) until it holds; put it under ``anyio.fail_after``."""
    while True:
        result = predicate()
        if result if isinstance(result, bool) else await result:
            return
        await anyio.sleep(interval_s)


async def run_until(bus: EventBus, predicate: Callable[[Any], bool], publish: Callable[[], Awaitable[Any]]) -> None:
    """Run the bus's consume loop, call ``publish``, wait for ``predicate(stats)``, stop."""
    async with anyio.create_task_group() as tg:
        await tg.start(bus.run)
        await publish()
        with anyio.fail_after(10):
            await wait_for_stats(bus, predicate)
        tg.cancel_scope.cancel()


async def test_effect_key_is_stable_across_redeliveries_and_consumers(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """A delivery reclaimed by another consumer has the same effect_key, equal to the handler marker's member."""
    keys: list[tuple[str, int]] = []

    async def first_refuses(delivery: Delivery) -> None:
        keys.append((delivery.effect_key, delivery.delivery_count))
        raise RetryLater("not now")

    async def second_accepts(delivery: Delivery) -> None:
        keys.append((delivery.effect_key, delivery.delivery_count))

    one = make_bus(backend, test_prefix, consumer_name="one", handler_retries=0)
    two = make_bus(backend, test_prefix, consumer_name="two")
    async with one, two:
        one.subscribe("TICKET_CREATED", first_refuses, subscriber_id="effects")
        two.subscribe("TICKET_CREATED", second_accepts, subscriber_id="effects")
        _, event_id = await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=one.keys)
        async with anyio.create_task_group() as tg:
            await tg.start(one.run)
            with anyio.fail_after(5):
                await wait_for_stats(one, lambda s: s.failed >= 1)
            one.stop()
        await run_until(two, lambda s: s.handled == 1, anyio.lowlevel.checkpoint)
    assert [n for _, n in keys] == [1, 2]
    expected = Markers(one.keys, "event-processors", 60).handler_member("global", event_id, "effects")
    assert {k for k, _ in keys} == {expected} == {f"event-processors|global|{event_id}:effects"}


async def test_effect_key_differs_per_handler_channel_and_group(backend: aioredis.Redis, test_prefix: str) -> None:
    """Two handlers of one entry, the same event id on two channels and a second group each get their own effect_key."""
    seen: dict[str, str] = {}

    def record(name: str) -> Callable[[Delivery], Awaitable[None]]:
        async def handle(delivery: Delivery) -> None:
            seen[f"{name}/{delivery.group}/{delivery.channel}"] = delivery.effect_key

        return handle

    event_id = str(uuid.uuid4())
    payload = ticket_created_payload()
    for group in ("group-a", "group-b"):
        async with make_bus(backend, test_prefix, consumer_group=group) as bus:
            for channel in ("global", "internal-notifications"):
                bus.subscribe("TICKET_CREATED", record("first"), channel=channel, subscriber_id="first")
                bus.subscribe("TICKET_CREATED", record("second"), channel=channel, subscriber_id="second")

            async def publish(bus: EventBus = bus, group: str = group) -> None:
                if group == "group-b":
                    return  # its group is created at 0: it reads the two entries group-a read
                for channel in ("global", "internal-notifications"):
                    await xadd_reference(
                        backend, "TICKET_CREATED", payload, keys=bus.keys, channel=channel, event_id=event_id
                    )

            await run_until(bus, lambda s: s.handled == 2, publish)
    assert len(seen) == 8 and len(set(seen.values())) == 8, seen
    assert seen["second/group-b/internal-notifications"] == f"group-b|internal-notifications|{event_id}:second"


async def test_redis_effect_applies_once_and_skips_a_redelivery(backend: aioredis.Redis, test_prefix: str) -> None:
    """The queued commands and the marker commit together; the next delivery finds the marker and skips them."""
    delivery = await first_delivery(backend, test_prefix, marker_ttl_s=600)
    counter = f"{test_prefix}counter"
    async with make_bus(backend, test_prefix, marker_ttl_s=600) as bus:
        async with redis_effect(bus, delivery) as tx:
            assert not tx.already_applied
            tx.pipe.incr(counter)
            tx.pipe.rpush(f"{test_prefix}audit", delivery.event_id)
        assert tx.applied
        redelivered = msgspec.structs.replace(delivery, delivery_count=2, entry_id="0-1")
        async with redis_effect(bus, redelivered) as again:
            assert again.already_applied
            again.pipe.incr(counter)  # queued while already applied: discarded
        assert not again.applied
        key = effect_marker_key(delivery, test_prefix)
        assert key == f"{test_prefix}effect:{delivery.effect_key}"
        assert 590 <= await backend.ttl(key) <= 600
    assert await backend.get(counter) == b"1"
    assert await backend.lrange(f"{test_prefix}audit", 0, -1) == [delivery.event_id.encode()]


async def test_concurrent_deliveries_commit_one_effect(backend: aioredis.Redis, test_prefix: str) -> None:
    """Two deliveries queue one effect at once (frozen consumer and peer): one applies, the other loses the WATCH."""
    delivery = await first_delivery(backend, test_prefix)
    counter = f"{test_prefix}counter"
    async with AsyncExitStack() as stack:
        frozen = await stack.enter_async_context(redis_effect(backend, delivery, prefix=test_prefix))
        frozen.pipe.incr(counter)
        async with redis_effect(backend, delivery, prefix=test_prefix) as peer:
            assert not peer.already_applied and not frozen.already_applied
            peer.pipe.incr(counter)
    assert peer.applied and not frozen.applied and frozen.already_applied
    assert await backend.get(counter) == b"1"


async def test_apply_once_calls_the_effect_only_when_not_applied(backend: aioredis.Redis, test_prefix: str) -> None:
    """apply_once returns True and runs the effect once, then False without calling it."""
    delivery = await first_delivery(backend, test_prefix)
    calls: list[str] = []

    def effect(pipe: Any) -> None:
        calls.append(delivery.effect_key)
        pipe.sadd(f"{test_prefix}effects", delivery.event_id)

    assert await apply_once(backend, delivery, effect, prefix=test_prefix, ttl_s=30) is True
    assert await apply_once(backend, delivery, effect, prefix=test_prefix, ttl_s=30) is False
    assert calls == [delivery.effect_key]
    assert await backend.smembers(f"{test_prefix}effects") == {delivery.event_id.encode()}


@pytest.mark.integration
async def test_a_command_failing_at_run_time_unmarks_the_effect(real_client: aioredis.Redis, test_prefix: str) -> None:
    """WRONGTYPE inside EXEC: BackendError, the marker is removed, and a retry after the fix applies the effect."""
    delivery = await first_delivery(real_client, test_prefix)
    wrong, counter = f"{test_prefix}wrong", f"{test_prefix}counter"
    await real_client.set(wrong, "not a list")
    with pytest.raises(BackendError, match="1 of 2 commands failed"):
        async with redis_effect(real_client, delivery, prefix=test_prefix) as tx:
            tx.pipe.incr(counter)
            tx.pipe.rpush(wrong, "x")
    assert not await real_client.exists(effect_marker_key(delivery, test_prefix))
    await real_client.delete(wrong)
    async with redis_effect(real_client, delivery, prefix=test_prefix) as tx:
        tx.pipe.incr(counter)
        tx.pipe.rpush(wrong, "x")
    assert tx.applied and await real_client.get(counter) == b"2"  # the first INCR ran: no rollback in Redis


async def test_an_error_in_the_block_discards_the_effect(backend: aioredis.Redis, test_prefix: str) -> None:
    """An exception inside the block propagates; nothing queued runs and no marker is written."""
    delivery = await first_delivery(backend, test_prefix)
    with pytest.raises(ValueError, match="boom"):
        async with redis_effect(backend, delivery, prefix=test_prefix) as tx:
            tx.pipe.incr(f"{test_prefix}counter")
            raise ValueError("boom")
    assert not await backend.exists(f"{test_prefix}counter", effect_marker_key(delivery, test_prefix))


def test_a_delivery_without_an_effect_key_is_refused() -> None:
    """A Delivery built by hand (no group, no handler key) cannot name an effect marker."""
    delivery = Delivery(
        event_id="e",
        event_type="TICKET_CREATED",
        timestamp="t",
        tenant_id="t",
        channel="global",
        stream="s",
        entry_id="1-0",
        delivery_count=1,
        forced=False,
        payload=None,  # type: ignore[arg-type]
        payload_json=b"{}",
    )
    with pytest.raises(ConfigurationError, match="effect key"):
        effect_marker_key(delivery)


async def test_handler_committing_with_effect_key_runs_its_effect_once(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """A handler failing after its effect runs twice; its Redis effect and its SQL effect keyed by effect_key once."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE effects (effect_key TEXT PRIMARY KEY, total INTEGER)")
    calls: list[int] = []
    counter = f"{test_prefix}counter"

    async with make_bus(backend, test_prefix) as bus:

        @bus.subscriber("TICKET_CREATED", subscriber_id="billing")
        async def bill(delivery: Delivery) -> None:
            calls.append(delivery.delivery_count)
            with db:  # one transaction: the effect and its key
                db.execute(
                    "INSERT INTO effects (effect_key, total) VALUES (?, 10) ON CONFLICT DO NOTHING",
                    (delivery.effect_key,),
                )
            async with redis_effect(bus, delivery) as tx:
                tx.pipe.incrby(counter, 10)
            if len(calls) == 1:
                raise RetryLater("crashed after the effect, before the ack")

        async def publish() -> None:
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)

        await run_until(bus, lambda s: s.handled == 1, publish)
    assert calls == [1, 2]
    assert db.execute("SELECT COUNT(*), SUM(total) FROM effects").fetchone() == (1, 10)
    assert await backend.get(counter) == b"10"


async def test_earlier_handlers_are_marked_before_the_entry_is_acked(backend: aioredis.Redis, test_prefix: str) -> None:
    """With two handlers, the first one's success marker is written while the second still runs."""
    release, marked = anyio.Event(), anyio.Event()

    async with make_bus(backend, test_prefix) as bus:

        @bus.subscriber("TICKET_CREATED", subscriber_id="first")
        async def first(delivery: Delivery) -> None:
            return None

        @bus.subscriber("TICKET_CREATED", subscriber_id="second")
        async def second(delivery: Delivery) -> None:
            key = bus.keys.marker_handlers(delivery.tenant_id)
            member = delivery.effect_key.rsplit(":", 1)[0] + ":first"
            with anyio.fail_after(5):
                await until(lambda: backend.sismember(key, member))  # type: ignore[arg-type,return-value]
            marked.set()
            await release.wait()

        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                await marked.wait()
                assert bus.stats.handled == 0  # not acked yet: the marker came first
                release.set()
                await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert marked.is_set()


@pytest.mark.integration
async def test_a_lost_group_is_reported_once_per_stream(
    real_client: aioredis.Redis, test_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two consumers meet NOGROUP after the streams vanished: groups recreated, each loss reported once in all."""
    # Real Redis only: fakeredis answers XREADGROUP on a missing key with another error than NOGROUP.
    one = make_bus(real_client, test_prefix, consumer_name="one")
    two = make_bus(real_client, test_prefix, consumer_name="two")
    streams = [one.keys.stream(c, "TICKET_CREATED") for c in ("global", "internal-notifications")]
    async with one, two:
        for bus in (one, two):
            for channel in ("global", "internal-notifications"):
                bus.subscribe("TICKET_CREATED", Recorder(), channel=channel)
        with caplog.at_level(logging.WARNING, logger="bus.consume"):
            async with anyio.create_task_group() as tg:
                await tg.start(one.run)
                await tg.start(two.run)
                await real_client.delete(*streams)  # the state a restart without persistence leaves
                with anyio.fail_after(10):
                    await until(lambda: one.stats.lost_groups + two.stats.lost_groups >= 2)
                    # Until each has handled an entry of the recreated group: any NOGROUP of theirs is behind them.
                    published = 0
                    while not (one.stats.handled and two.stats.handled):
                        await xadd_reference(real_client, "TICKET_CREATED", ticket_created_payload(), keys=one.keys)
                        published += 1
                        await until(lambda n=published: one.stats.handled + two.stats.handled >= n)
                tg.cancel_scope.cancel()
    assert one.stats.lost_groups + two.stats.lost_groups == 2
    lost = [r.getMessage() for r in caplog.records if "was lost" in r.getMessage()]
    assert sorted(next(s for s in streams if s in m) for m in lost) == sorted(streams), lost
    for stream in streams:
        assert await real_client.xinfo_groups(stream)
