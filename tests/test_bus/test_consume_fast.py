"""The consume fast path: the envelope split, the raw XREADGROUP reader and its field helpers."""

from __future__ import annotations

import uuid
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aioredis

from bus import CHANNEL_EMAIL, CHANNEL_GLOBAL, EventBus
from bus._errors import GroupMissingError
from bus._redis import redis_errors
from bus.testing import (
    Recorder,
    fast_settings,
    reference_fields,
    ticket_created_payload,
    wait_for_stats,
    xadd_reference,
)
from bus.wire import Fields, GroupReader, event_of, fields_dict
from schemas import EventValidationError, decode_bus_event
from schemas._envelope import split_bus_event

HEAD = (
    b'{"id":"5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f","eventType":"TICKET_CREATED","timestamp":"2026-01-23T10:11:12.345Z"'
)


@pytest.mark.parametrize("payload", [b'{"a":1}', b" \n\t{}", b"{}"])
def test_split_bus_event_returns_the_payload_bytes(payload: bytes) -> None:
    """The payload comes back as its exact bytes (no leading blanks), the envelope as decode_bus_event gives it."""
    data = HEAD + b',"payload":' + payload + b"}"
    event, raw = split_bus_event(data)
    assert raw == payload.strip()
    assert event == decode_bus_event(data)


def test_split_bus_event_without_payload_is_an_empty_object() -> None:
    """A missing payload is ``{}``, as for decode_bus_event."""
    assert split_bus_event(HEAD + b"}")[1] == b"{}"


@pytest.mark.parametrize("payload", [b"[1]", b' "x"', b"1", b"null", b"true"])
def test_a_payload_that_is_not_an_object_is_rejected(payload: bytes) -> None:
    """Both decoders reject a non-object payload at ``$.payload``, blanks before it or not."""
    data = HEAD + b',"payload":' + payload + b"}"
    for decode in (decode_bus_event, split_bus_event):
        with pytest.raises(EventValidationError, match=r"\$\.payload: Expected `object`"):
            decode(data)


# -- the raw XREADGROUP reader ---------------------------------------------------------------


def _own_client(client: aioredis.Redis) -> aioredis.Redis:
    """A single-connection client like the consumer's reader (same pool class and options)."""
    pool = client.connection_pool
    own = type(pool)(connection_class=pool.connection_class, **pool.connection_kwargs)
    return aioredis.Redis(connection_pool=own, single_connection_client=True)


async def test_group_reader_returns_raw_entries(backend: aioredis.Redis, test_prefix: str) -> None:
    """Entries of every stream come back as [id, flat fields], in stream order; then nothing is left."""
    a, b = f"{test_prefix}a", f"{test_prefix}b"
    for stream in (a, b):
        await backend.xgroup_create(stream, "g", id="0", mkstream=True)
    ids_a = [await backend.xadd(a, {"event": f"e{i}", "channel": "c"}) for i in range(3)]
    id_b = await backend.xadd(b, {"event": "x", "channel": "c", "force": "1"})
    reader = GroupReader("g", "c1", (a, b), count=10, block_ms=50)
    client = _own_client(backend)
    try:
        got = dict(await reader.read(await reader.connection(client)))
        assert [e[0] for e in got[a.encode()]] == ids_a
        assert [list(e[1]) for e in got[a.encode()]] == [[b"event", b"e%d" % i, b"channel", b"c"] for i in range(3)]
        assert [(e[0], list(e[1])) for e in got[b.encode()]] == [
            (id_b, [b"event", b"x", b"channel", b"c", b"force", b"1"])
        ]
        assert await reader.read(await reader.connection(client)) == []
        pending: Any = await backend.xpending(a, "g")
        assert pending["pending"] == 3  # read through the group: delivered and pending
    finally:
        await client.aclose(close_connection_pool=True)


async def test_group_reader_raises_nogroup(backend: aioredis.Redis, test_prefix: str) -> None:
    """An error reply is raised as redis-py raises it, and the bus translates it (NOGROUP)."""
    stream = f"{test_prefix}s"
    await backend.xadd(stream, {"event": "x"})
    client = _own_client(backend)
    try:
        with pytest.raises(GroupMissingError), redis_errors("XREADGROUP"):
            reader = GroupReader("missing", "c1", (stream,), count=10, block_ms=10)
            await reader.read(await reader.connection(client))
    finally:
        await client.aclose(close_connection_pool=True)


@pytest.mark.integration
async def test_group_reader_cancelled_mid_read_disconnects(real_client: aioredis.Redis, test_prefix: str) -> None:
    """A read cancelled while blocked drops the connection (it may hold the unread reply); the next read reconnects."""
    stream = f"{test_prefix}s"
    await real_client.xgroup_create(stream, "g", id="0", mkstream=True)
    reader = GroupReader("g", "c1", (stream,), count=10, block_ms=2000)
    client = _own_client(real_client)
    try:
        with anyio.move_on_after(0.1):
            await reader.read(await reader.connection(client))
        assert client.connection is not None and not client.connection.is_connected
        entry_id = await real_client.xadd(stream, {"event": "x", "channel": "c"})
        got = await reader.read(await reader.connection(client))
        assert [e[0] for e in got[0][1]] == [entry_id]
    finally:
        await client.aclose(close_connection_pool=True)


@pytest.mark.parametrize(
    ("fields", "event", "forced"),
    [
        ([b"event", b"E", b"channel", b"c"], b"E", False),
        ([b"event", b"E", b"channel", b"c", b"force", b"1"], b"E", True),
        ([b"channel", b"c", b"event", b"E"], b"E", False),
        ([b"event", b"A", b"event", b"B"], b"B", False),  # a repeated field: the last value wins
        ([b"channel", b"c"], None, False),
        ([b"force", b"0", b"event", b"E"], b"E", False),
        ({b"event": b"E", b"force": b"1"}, b"E", True),
    ],
)
def test_event_of_reads_fields_as_a_dict_would(fields: Fields, event: bytes | None, forced: bool) -> None:
    """Flat fields read as the dict built from their pairs (redis-py's pairs_to_dict) reads."""
    assert event_of(fields) == (event, forced)
    as_dict = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True))
    assert fields_dict(fields) == as_dict


# -- the consume loop on raw entries -----------------------------------------------------------


async def _xadd_pairs(client: aioredis.Redis, command: str, stream: str, entry_id: str, *pairs: Any) -> Any:
    """XADD with the fields in this order (repeats allowed), which redis-py's dict argument cannot express."""
    return await client.execute_command(command, stream, entry_id, *pairs)  # type: ignore[no-untyped-call]


async def test_one_read_of_two_streams_and_three_tenants(backend: aioredis.Redis, test_prefix: str) -> None:
    """Entries of two streams and three tenants read in one batch: each handler gets its own, each
    tenant's markers land in its own set, foreign field orders and a repeated field read as a dict
    would, and a poison entry keeps its fields byte for byte in the dead letter."""
    bus = EventBus(fast_settings(prefix=test_prefix, batch_size=100), client=backend)
    async with bus:
        on_global, on_email = Recorder(), Recorder()
        bus.subscribe("TICKET_CREATED", on_global, channel=CHANNEL_GLOBAL, subscriber_id="g")
        bus.subscribe("TICKET_CREATED", on_email, channel=CHANNEL_EMAIL, subscriber_id="e")
        streams = {ch: bus.keys.stream(ch, "TICKET_CREATED") for ch in (CHANNEL_GLOBAL, CHANNEL_EMAIL)}
        tenants = [str(uuid.uuid4()) for _ in range(3)]
        sent: dict[str, list[tuple[str, str]]] = {CHANNEL_GLOBAL: [], CHANNEL_EMAIL: []}
        for i in range(12):
            channel = (CHANNEL_GLOBAL, CHANNEL_EMAIL)[i % 2]
            tenant = tenants[i % 3]
            _, event_id = await xadd_reference(
                backend, "TICKET_CREATED", ticket_created_payload(tenantId=tenant), keys=bus.keys, channel=channel
            )
            sent[channel].append((event_id, tenant))
        # Written by someone else: channel first, then event; a forced copy; a repeated event field.
        odd_id = str(uuid.uuid4())
        fields = reference_fields("TICKET_CREATED", ticket_created_payload(tenantId=tenants[0]), event_id=odd_id)
        await _xadd_pairs(backend, "XADD", streams[CHANNEL_GLOBAL], "*", "channel", "global", "event", fields[b"event"])
        forced_id = str(uuid.uuid4())
        forced = reference_fields(
            "TICKET_CREATED", ticket_created_payload(tenantId=tenants[1]), event_id=forced_id, force=True
        )
        await backend.xadd(streams[CHANNEL_GLOBAL], cast("Any", forced))
        repeated_id = str(uuid.uuid4())
        good = reference_fields("TICKET_CREATED", ticket_created_payload(tenantId=tenants[2]), event_id=repeated_id)
        await _xadd_pairs(
            backend, "XADD", streams[CHANNEL_EMAIL], "*", "event", b"not json", "channel", "x", "event", good[b"event"]
        )
        poison = await _xadd_pairs(
            backend, "XADD", streams[CHANNEL_EMAIL], "*", "event", b'{"id":1}', "channel", "x", "extra", b"\x00\xff"
        )
        sent[CHANNEL_GLOBAL] += [(odd_id, tenants[0]), (forced_id, tenants[1])]
        sent[CHANNEL_EMAIL].append((repeated_id, tenants[2]))
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(10):
                await wait_for_stats(bus, lambda s: s.handled == 15 and s.dead_lettered == 1)
            tg.cancel_scope.cancel()
        for channel, recorder in ((CHANNEL_GLOBAL, on_global), (CHANNEL_EMAIL, on_email)):
            got = [(d.event_id, d.tenant_id) for d in recorder.deliveries]
            assert sorted(got) == sorted(sent[channel])
            assert {d.stream for d in recorder.deliveries} == {streams[channel]}
            assert {d.channel for d in recorder.deliveries} == {channel}
        assert [d.forced for d in on_global.deliveries if d.event_id == forced_id] == [True]
        assert not any(d.forced for d in on_global.deliveries if d.event_id != forced_id)
        group = bus.settings.consumer_group
        for channel, events in sent.items():
            for event_id, tenant in events:
                member = f"{group}|{channel}|{event_id}"
                assert await backend.sismember(bus.keys.marker_events(tenant), member), (channel, event_id)
        for stream in streams.values():
            pending: Any = await backend.xpending(stream, group)
            assert pending["pending"] == 0
        [letter] = await bus.dead_letters("TICKET_CREATED", channel=CHANNEL_EMAIL)
        assert letter.reason == "invalid"
        assert letter.source_message_id == (poison.decode() if isinstance(poison, bytes) else poison)
        assert (letter.fields[b"event"], letter.fields[b"channel"], letter.fields[b"extra"]) == (
            b'{"id":1}',
            b"x",
            b"\x00\xff",
        )
        for tenant in tenants:
            for key in (bus.keys.marker_events(tenant), bus.keys.marker_handlers(tenant)):
                await backend.delete(key)


@pytest.mark.integration
async def test_reader_open_early_connects_the_read_connection(real_client: aioredis.Redis, test_prefix: str) -> None:
    """Reader.open_early leaves the read connection connected without a read; the first read then uses it."""
    from bus.consume import StreamSubscription
    from bus.consume._engine import Consumer

    from ._support import open_bus

    async with open_bus(real_client, test_prefix, block_ms=50, read_timeout_s=5) as bus:
        bus.subscribe("TICKET_CREATED", Recorder(), subscriber_id="early")
        spec = StreamSubscription.for_events(bus.settings, bus.subscriptions, consumer=bus.consumer_name)
        consumer = Consumer(real_client, bus.settings, bus.keys, bus.registry, spec)
        await consumer.ensure_groups()
        reader = consumer.reader
        try:
            with anyio.fail_after(10):
                await reader.open_early()
            own = cast("Any", reader)._own
            assert own is not None and own.connection is not None and own.connection.is_connected
            conn = own.connection
            with anyio.fail_after(10):
                assert not await reader.read_once()  # BLOCK expires: nothing was published
            assert own.connection is conn and conn.is_connected
        finally:
            await reader.aclose()


@pytest.mark.parametrize(("handshake_s", "opened"), [(0.001, 0), (None, 0), (1.0, 2)])
async def test_pool_connections_open_early_only_on_a_slow_link(
    monkeypatch: pytest.MonkeyPatch, fake_client: aioredis.Redis, handshake_s: float | None, opened: int
) -> None:
    """Start-up opens the pool's two connections only while the read handshake still runs after
    SLOW_LINK_S (a slow link); after a fast or failed handshake it opens none."""
    import bus.consume._engine as engine
    from bus import BusSettings
    from bus.consume import StreamSubscription
    from bus.consume._engine import Consumer
    from bus.consume._reading import Reader

    async def handshake_time(self: Reader) -> float | None:
        if handshake_s is not None and handshake_s > engine.SLOW_LINK_S:
            await anyio.sleep(handshake_s)  # still shaking hands when start-up decides
        return handshake_s

    acquired: list[object] = []

    async def acquire(client: object) -> object:
        acquired.append(client)
        return object()

    async def release(client: object, conn: object) -> None:
        return None

    monkeypatch.setattr(Reader, "handshake_time", handshake_time)
    monkeypatch.setattr(engine, "acquire", acquire)
    monkeypatch.setattr(engine, "release", release)
    async with EventBus(BusSettings(), client=fake_client) as bus:
        bus.subscribe("TICKET_CREATED", Recorder(), subscriber_id="early-pool")
        spec = StreamSubscription.for_events(bus.settings, bus.subscriptions, consumer=bus.consumer_name)
        consumer = Consumer(fake_client, bus.settings, bus.keys, bus.registry, spec)
        with anyio.fail_after(10):
            await consumer._open_pool_early()
    assert len(acquired) == opened
