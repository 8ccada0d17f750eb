"""Subscribe and consume: round trips on every channel, typed deliveries, groups, markers."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import (
    CHANNEL_EMAIL,
    CHANNEL_GLOBAL,
    CHANNEL_NOTIFICATIONS,
    BusClosedError,
    BusSettings,
    ConfigurationError,
    Delivery,
    EventBus,
    Handler,
)
from bus.consume import StreamEntry, StreamSubscription
from bus.testing import (
    Recorder,
    fast_settings,
    ticket_created_payload,
    wait_for_stats,
    xadd_reference,
)
from schemas import UnknownEventTypeError
from schemas.events.tickets import TicketCreatedLegacy

CHANNELS = [
    pytest.param(CHANNEL_GLOBAL, id="global"),
    pytest.param(CHANNEL_NOTIFICATIONS, id="internal-notifications"),
    pytest.param(CHANNEL_EMAIL, id="emailservice-v7"),
]


def make_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> EventBus:
    """A bus on the test's backend with fast timings and keys under the test prefix."""
    return EventBus(fast_settings(prefix=prefix, **overrides), client=client)


@pytest.mark.parametrize("channel", CHANNELS)
async def test_reference_entries_are_consumed_on_every_channel(
    backend: aioredis.Redis, test_prefix: str, channel: str
) -> None:
    """An entry XADDed exactly as the reference writes it is handled once, typed, with its provenance, and acked."""
    async with make_bus(backend, test_prefix) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder, channel=channel)
        payload = ticket_created_payload(extraKey="kept on the wire")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            entry_id, event_id = await xadd_reference(
                backend, "TICKET_CREATED", payload, keys=bus.keys, channel=channel, timestamp="2026-01-23T10:11:12.3Z"
            )
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
        [delivery] = recorder.deliveries
        assert (delivery.event_id, delivery.entry_id, delivery.channel) == (event_id, entry_id, channel)
        assert delivery.stream == bus.keys.stream(channel, "TICKET_CREATED")
        assert (delivery.event_type, delivery.timestamp, delivery.delivery_count) == (
            "TICKET_CREATED",
            "2026-01-23T10:11:12.3Z",
            1,
        )
        assert delivery.variant == "legacy" and isinstance(delivery.value, TicketCreatedLegacy)
        assert delivery.tenant_id == payload["tenantId"] and not delivery.forced
        assert delivery.payload_dict() == payload  # unknown keys kept in the raw view
        status = await bus.status()
        [group] = status.streams[0].groups
        assert (group.pending, group.lag) == (0, 0)


async def test_published_events_round_trip_on_every_channel(backend: aioredis.Redis, test_prefix: str) -> None:
    """An event bus.publish writes to global, notifications and email reaches each channel's handler once."""
    async with make_bus(backend, test_prefix) as bus:
        recorders = {channel: Recorder() for channel in (CHANNEL_GLOBAL, CHANNEL_NOTIFICATIONS, CHANNEL_EMAIL)}
        for channel, recorder in recorders.items():
            bus.subscribe("TICKET_CREATED", recorder, channel=channel, subscriber_id=f"rec-{channel}")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await bus.publish("TICKET_CREATED", ticket_created_payload(), channel=list(recorders))
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 3)
            tg.cancel_scope.cancel()
        for channel, recorder in recorders.items():
            assert [d.channel for d in recorder.deliveries] == [channel]


async def test_two_consumers_in_one_group_split_the_work(backend: aioredis.Redis, test_prefix: str) -> None:
    """Two consumers of one group each take part of the stream and no event is handled twice."""
    seen: dict[str, list[str]] = {"a": [], "b": []}
    all_started = anyio.Event()

    def handler_for(name: str) -> Handler:
        async def handle(delivery: Delivery) -> None:
            seen[name].append(delivery.event_id)
            if len(seen["a"]) + len(seen["b"]) >= 30:
                all_started.set()
            await anyio.sleep(0.01)

        return handle

    async with (
        make_bus(backend, test_prefix, concurrency=1, batch_size=2) as a,
        make_bus(backend, test_prefix, concurrency=1, batch_size=2) as b,
    ):
        assert a.consumer_name != b.consumer_name
        a.subscribe("TICKET_CREATED", handler_for("a"))
        b.subscribe("TICKET_CREATED", handler_for("b"))
        async with anyio.create_task_group() as tg:
            await tg.start(a.run)
            await tg.start(b.run)
            ids = []
            for _ in range(30):
                ids.append((await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=a.keys))[1])
            with anyio.fail_after(10):
                await all_started.wait()
                await wait_for_stats(a, lambda s: s.handled == len(seen["a"]))
                await wait_for_stats(b, lambda s: s.handled == len(seen["b"]))
            tg.cancel_scope.cancel()
    assert sorted(seen["a"] + seen["b"]) == sorted(ids)  # every event once, none twice
    assert seen["a"] and seen["b"]


async def test_two_groups_each_get_every_event(backend: aioredis.Redis, test_prefix: str) -> None:
    """Two consumer groups on one stream each handle every event (markers are scoped by group)."""
    async with (
        make_bus(backend, test_prefix, consumer_group="group-a") as a,
        make_bus(backend, test_prefix, consumer_group="group-b") as b,
    ):
        rec_a, rec_b = Recorder(), Recorder()
        a.subscribe("TICKET_CREATED", rec_a)
        b.subscribe("TICKET_CREATED", rec_b)
        async with anyio.create_task_group() as tg:
            await tg.start(a.run)
            await tg.start(b.run)
            ids = [(await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=a.keys))[1]]
            for _ in range(9):
                ids.append((await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=a.keys))[1])
            with anyio.fail_after(5):
                await wait_for_stats(a, lambda s: s.handled == 10)
                await wait_for_stats(b, lambda s: s.handled == 10)
            tg.cancel_scope.cancel()
    assert sorted(rec_a.event_ids) == sorted(ids) == sorted(rec_b.event_ids)


async def test_markers_skip_a_duplicate_id_but_not_another_channel_or_a_forced_copy(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """A reused event id is acked unhandled; the same id on another channel or with force=1 is handled."""
    async with make_bus(backend, test_prefix) as bus:
        on_global, on_email = Recorder(), Recorder()
        bus.subscribe("TICKET_CREATED", on_global, subscriber_id="g")
        bus.subscribe("TICKET_CREATED", on_email, channel=CHANNEL_EMAIL, subscriber_id="e")
        event_id, payload = str(uuid.uuid4()), ticket_created_payload()
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", payload, keys=bus.keys, event_id=event_id)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 1)
            await xadd_reference(backend, "TICKET_CREATED", payload, keys=bus.keys, event_id=event_id)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.duplicates == 1)
            await xadd_reference(
                backend, "TICKET_CREATED", payload, keys=bus.keys, event_id=event_id, channel=CHANNEL_EMAIL
            )
            await xadd_reference(backend, "TICKET_CREATED", payload, keys=bus.keys, event_id=event_id, force=True)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 3)
            tg.cancel_scope.cancel()
    assert on_global.event_ids == [event_id, event_id]
    assert [d.forced for d in on_global.deliveries] == [False, True]
    assert on_email.event_ids == [event_id]
    assert bus.stats.acked == 4


async def test_copies_of_an_event_in_flight_are_acked_as_duplicates(backend: aioredis.Redis, test_prefix: str) -> None:
    """A copy of an event that another entry is handling right now (in its batch, or read while the
    handler runs) is acked as a duplicate; a forced copy still runs."""
    async with make_bus(backend, test_prefix) as bus:
        release = anyio.Event()
        calls: list[tuple[str, bool]] = []

        async def slow(delivery: Delivery) -> None:
            calls.append((delivery.event_id, delivery.forced))
            if not delivery.forced:
                await release.wait()

        bus.subscribe("TICKET_CREATED", slow, subscriber_id="slow")
        event_id, payload = str(uuid.uuid4()), ticket_created_payload()
        for _ in range(2):  # two copies in the first batch
            await xadd_reference(backend, "TICKET_CREATED", payload, keys=bus.keys, event_id=event_id)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.duplicates == 1)
            await xadd_reference(backend, "TICKET_CREATED", payload, keys=bus.keys, event_id=event_id)
            await xadd_reference(backend, "TICKET_CREATED", payload, keys=bus.keys, event_id=event_id, force=True)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.duplicates == 2 and s.handled == 1)
            assert calls == [(event_id, False), (event_id, True)]  # the first copy still runs
            release.set()
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 2)
            tg.cancel_scope.cancel()
    assert bus.stats.acked == 4 and bus.stats.duplicates == 2


async def test_entries_handled_at_once_are_acked_while_a_later_handler_waits(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """One worker: the entries whose handler finished without suspending are acked before the
    worker waits on a later entry's handler, not after it."""
    async with make_bus(backend, test_prefix, concurrency=1, batch_size=10) as bus:
        release = anyio.Event()
        slow_id = str(uuid.uuid4())

        async def handler(delivery: Delivery) -> None:
            if delivery.event_id == slow_id:
                await release.wait()

        bus.subscribe("TICKET_CREATED", handler, subscriber_id="mixed")
        for _ in range(3):
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
        await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys, event_id=slow_id)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 3)
            assert not release.is_set() and bus.stats.acked == 3
            release.set()
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 4)
            tg.cancel_scope.cancel()
    assert bus.stats.acked == 4


async def test_decorator_form_and_handler_order(backend: aioredis.Redis, test_prefix: str) -> None:
    """``@bus.subscriber`` and ``bus.subscribe(type)`` register handlers that run in registration order."""
    calls: list[str] = []
    async with make_bus(backend, test_prefix) as bus:

        @bus.subscriber("TICKET_CREATED")
        async def first(delivery: Delivery) -> None:
            await anyio.sleep(0.001)
            calls.append("first")

        @bus.subscribe("TICKET_CREATED")
        async def second(delivery: Delivery) -> None:
            calls.append("second")

        assert [s.handler_key for s in bus.subscriptions] == [
            f"{__name__}.test_decorator_form_and_handler_order.<locals>.first",
            f"{__name__}.test_decorator_form_and_handler_order.<locals>.second",
        ]
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert calls == ["first", "second"]


async def test_subscribe_and_run_reject_mistakes(fake_client: aioredis.Redis) -> None:
    """Unknown types, a reused subscriber id, subscribing while running and running with nothing subscribed fail."""
    async with EventBus(fast_settings(), client=fake_client) as bus:
        with pytest.raises(ConfigurationError, match="nothing is subscribed"):
            await bus.run()
        with pytest.raises(UnknownEventTypeError, match="TICKET_CREATED"):
            bus.subscribe("TICKET_CREATD", Recorder())
        bus.subscribe("TICKET_CREATED", Recorder(), subscriber_id="x")
        with pytest.raises(ConfigurationError, match="already handles TICKET_CREATED"):
            bus.subscribe("TICKET_CREATED", Recorder(), subscriber_id="x")
        bus.subscribe("TICKET_CREATED", Recorder(), subscriber_id="x", channel=CHANNEL_EMAIL)  # another stream: fine
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with pytest.raises(ConfigurationError, match="subscribe before"):
                bus.subscribe("TICKET_UPDATED", Recorder())
            with pytest.raises(ConfigurationError, match="already running"):
                await bus.run()
            tg.cancel_scope.cancel()


async def test_stop_returns_from_run(fake_client: aioredis.Redis) -> None:
    """``bus.stop()`` ends ``run()`` normally (no exception), and the bus can run again afterwards."""
    async with EventBus(fast_settings(), client=fake_client) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        for handled in (1, 2):
            async with anyio.create_task_group() as tg:
                await tg.start(bus.run)
                await xadd_reference(fake_client, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
                with anyio.fail_after(5):
                    await wait_for_stats(bus, lambda s: s.handled == handled)  # noqa: B023 (awaited right here)
                bus.stop()
            assert bus.consumer is None
    assert len(recorder.deliveries) == 2


async def test_consume_loop_runs_a_stream_subscription_on_the_bus(fake_client: aioredis.Redis) -> None:
    """``bus.consume_loop`` gives a loop on the bus's client and settings that counts on its own and handles
    the subscription's entries; a closed bus refuses to make one."""
    seen: list[str] = []

    async def handle(entry: StreamEntry) -> None:
        seen.append(entry.entry_id)

    async with EventBus(fast_settings(), client=fake_client) as bus:
        stream = bus.keys.stream(CHANNEL_GLOBAL, "TICKET_CREATED")
        spec = StreamSubscription.from_settings(bus.settings, streams=(stream,), entry_handler=handle)
        loop = bus.consume_loop(spec)
        assert (loop.client, loop.settings, loop.subscription) == (fake_client, bus.settings, spec)
        async with anyio.create_task_group() as tg:
            await tg.start(loop.run)
            entry_id, _ = await xadd_reference(fake_client, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                await loop.wait_until(lambda s: s.acked == 1)
            loop.stop()
        assert seen == [entry_id]
        assert bus.stats.acked == 0  # the bus's own counters are the typed loop's (bus.run)
    with pytest.raises(BusClosedError):
        bus.consume_loop(spec)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        pytest.param({"streams": ()}, "subscriptions", id="no-streams"),
        pytest.param({"entry_handler": None}, "handlers", id="no-handler"),
    ],
)
def test_stream_subscription_refuses_inconsistent_settings(values: dict[str, Any], field: str) -> None:
    """A subscription needs streams and exactly one kind of handler."""
    from bus import ConfigurationError
    from bus.consume import StreamSubscription

    async def handle(entry: StreamEntry) -> None:
        return None

    base: dict[str, Any] = {"streams": ("s",), "group": "g", "consumer": "c", "entry_handler": handle}
    with pytest.raises(ConfigurationError, match=field):
        StreamSubscription(**{**base, **values})


@pytest.mark.parametrize(
    ("streams", "batch_size", "expected"),
    [
        pytest.param(1, None, 1000, id="one-stream-reads-the-budget"),
        pytest.param(19, None, 52, id="email-service-shares-it"),
        pytest.param(282, None, 10, id="converter-keeps-the-reference-count"),
        pytest.param(1, 10, 10, id="reference-count-when-set"),
    ],
)
def test_read_count_is_derived_from_the_budget(streams: int, batch_size: int | None, expected: int) -> None:
    """Unset REDIS_STREAM_BATCH_SIZE: COUNT = max(10, BUS_READ_BUDGET // streams); a set one is used as is."""
    settings = BusSettings(batch_size=batch_size)
    spec = StreamSubscription.from_settings(
        settings, streams=tuple(f"s{i}" for i in range(streams)), entry_handler=_noop_entry
    )
    assert spec.count == expected


async def _noop_entry(entry: object) -> None:
    return None


def test_read_count_adapts_to_the_entries_size() -> None:
    """The count starts at 10, doubles while replies stay under half of read_bytes (up to COUNT), and
    shrinks to what read_bytes holds when entries are large (at least 1)."""
    import fakeredis

    from bus.consume._reading import Reader

    spec = StreamSubscription.from_settings(BusSettings(), streams=("s",), entry_handler=_noop_entry)
    reader = Reader(fakeredis.FakeAsyncRedis(), spec, None, None, None, None, connect_timeout_s=1.0)  # type: ignore[arg-type]
    counts = [reader._command.count]
    for _ in range(8):
        reader._adapt(counts[-1], counts[-1] * 300)  # 300-byte entries
        counts.append(reader._command.count)
    assert counts == [10, 20, 40, 80, 160, 320, 640, 1000, 1000]
    reader._adapt(1000, 1000 * 2_000_000)  # a reply of 2 MB entries
    assert reader._command.count == 2  # 4 MiB holds two of them
    reader._adapt(2, 2 * 50_000_000)  # entries larger than the whole budget: one at a time
    assert reader._command.count == 1
    assert b"COUNT\r\n$1\r\n1\r\n" in reader._command.command


def test_reply_size_is_exact_for_small_replies_and_estimated_from_a_spread_sample() -> None:
    """Up to 32 entries the field bytes are summed exactly; a larger reply is estimated from a
    sample spread over it (exact for uniform entries, close for mixed ones); deleted entries count 0."""
    from bus.consume._reading import _fields_size

    def entry(size: int) -> list[object]:
        return [b"1-1", [b"event", b"x" * size, b"channel", b"global"]]

    small: list[object] = [entry(100), [b"1-2", None], entry(7)]
    assert _fields_size(small) == (5 + 100 + 7 + 6) + (5 + 7 + 7 + 6)  # type: ignore[arg-type]
    uniform = [entry(500) for _ in range(1000)]
    assert _fields_size(uniform) == 1000 * (5 + 500 + 7 + 6)  # type: ignore[arg-type]
    mixed = [entry(200 if i % 3 else 2_000) for i in range(999)]
    exact = sum(5 + len(e[1][1]) + 7 + 6 for e in mixed)  # type: ignore[index]
    assert abs(_fields_size(mixed) - exact) <= exact // 5  # type: ignore[arg-type]
    assert _fields_size([]) == 0
