"""RESP packing, reply reading and the wire codec of the publish fast path."""

from __future__ import annotations

import itertools
import os
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rex
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio.connection import Connection

from bus._codec import (
    Route,
    XaddPacker,
    encode_envelope,
    new_event_id,
    now_iso,
    payload_view,
    workflow_entry,
    workflow_pairs,
)
from bus.wire import EXEC, MULTI, bulk, header, pack, pack_command, pack_many, read_replies, redirect_of, split_commands
from schemas import WORKFLOW_FIELDS, WorkflowEvent, encode_bus_event
from schemas.events.tickets import TicketCreated

from ._support import parse_commands

UUID = "5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f"
TS = "2026-01-23T10:11:12.345Z"


def redis_py_pack(*args: Any) -> bytes:
    """What redis-py itself sends for a command."""
    return b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((b"PING",), id="one"),
        pytest.param((b"XADD", b"s", b"MAXLEN", b"~", b"1000", b"*", b"event", b"{}"), id="xadd"),
        pytest.param(("SET", "k\u00e9y", 42), id="str-int"),
        pytest.param((b"SET", b"k", b"v" * 70_000), id="long-bulk"),
        pytest.param(tuple(b"a%d" % i for i in range(100)), id="many-args"),
    ],
)
def test_pack_matches_redis_py(args: tuple[Any, ...]) -> None:
    """pack() produces byte-for-byte what redis-py's pack_command produces."""
    assert pack(*args) == redis_py_pack(*args)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([b"1-%d" % i for i in range(1, 1200)], id="ids-of-growing-length"),
        pytest.param([b"k" * (i % 7) for i in range(50)], id="lengths-interleaved"),
        pytest.param([b"%032x" % i for i in range(30)], id="one-length"),
        pytest.param([b"x"], id="one-arg"),
    ],
)
def test_pack_command_unordered_carries_the_same_arguments(args: list[bytes]) -> None:
    """pack_command(ordered=False) is one valid command with the same head and the same multiset of arguments."""
    head = (b"XACK", "stream", b"group")
    [ordered] = parse_commands(pack_command(head, args))
    [unordered] = parse_commands(pack_command(head, args, ordered=False))
    assert ordered == [b"XACK", b"stream", b"group", *args]
    assert unordered[:3] == ordered[:3] and sorted(unordered[3:]) == sorted(args)


def test_constants_and_helpers() -> None:
    """MULTI/EXEC constants, header and bulk agree with the generic packer."""
    assert pack(b"MULTI") == MULTI and pack(b"EXEC") == EXEC
    assert header(3) == b"*3\r\n" and header(300) == b"*300\r\n"
    assert bulk(b"") == b"$0\r\n\r\n" and bulk(b"x" * 300) == b"$300\r\n" + b"x" * 300 + b"\r\n"
    assert pack_many([(b"MULTI",), (b"EXEC",)]) == MULTI + EXEC


@pytest.mark.parametrize(
    ("policy", "trim"),
    [
        pytest.param("approx", (b"MAXLEN", b"~", b"7"), id="approx"),
        pytest.param("none", (), id="none"),
        pytest.param("safe", (), id="safe"),
    ],
)
@pytest.mark.parametrize("force", [False, True], ids=["normal", "force"])
def test_per_type_xadd_matches_generic_pack(policy: Any, trim: tuple[bytes, ...], force: bool) -> None:
    """The cached per-type XADD equals the plain packing of its arguments (trim policy, force flag)."""
    packer = XaddPacker(7, policy)
    env = b'{"id":"x"}'
    expected = pack(
        b"XADD", b"p:s", *trim, b"*", b"event", env, b"channel", b"global", *((b"force", b"1") if force else ())
    )
    assert packer.per_type("p:s", "global", env, force) == expected
    assert packer.per_type("p:s", "global", env, force) == expected  # cached parts reused


WORKFLOW_CASES: list[Any] = [
    pytest.param({"tenantId": "t1", "actorUserId": UUID}, {}, id="domain"),
    pytest.param({"tenant": "t2", "userId": UUID, "eventName": "Named"}, {}, id="legacy-names"),
    pytest.param({}, {}, id="empty"),
    pytest.param({"tenantId": 7, "eventName": 3}, {}, id="non-string-values"),
    pytest.param(
        {"tenantId": "t", "eventName": "ignored"},
        {
            "execution_id": UUID,
            "correlation_key": "ticket:1",
            "event_name": "Hooked",
            "from_state": "a",
            "to_state": "b",
        },
        id="hooks",
    ),
    pytest.param({"actorUserId": "bob"}, {}, id="bad-user"),
    pytest.param({"userId": 42}, {}, id="non-string-user"),
    pytest.param({}, {"execution_id": "run-1"}, id="bad-execution-id"),
]


@pytest.mark.parametrize(("payload", "hooks"), WORKFLOW_CASES)
def test_workflow_entry_follows_the_schema_rules(payload: dict[str, Any], hooks: dict[str, Any]) -> None:
    """workflow_entry gives exactly WorkflowEvent.from_bus_event(...).to_fields(), and fails where it fails."""
    args = (UUID, "TICKET_CREATED", TS, payload, b'{"x":1}')
    try:
        expected: Any = list(WorkflowEvent.from_bus_event(*args, **hooks).to_fields().values())
    except Exception as exc:
        expected = (type(exc), str(exc))
    try:
        got: Any = list(workflow_entry(*args, **hooks))
    except Exception as exc:
        got = (type(exc), str(exc))
    assert got == expected


def test_workflow_xadd_has_the_reference_fields_in_order() -> None:
    """The workflow XADD carries the eleven flat fields in wire order, absent values as ""."""
    wf = WorkflowEvent(
        event_id=UUID, event_type="TICKET_CREATED", event_name="TICKET_CREATED", tenant="t1", timestamp=TS
    )
    values = workflow_entry(UUID, "TICKET_CREATED", TS, {"tenantId": "t1"}, b"{}")
    pairs = workflow_pairs(values)
    assert pairs[0::2] == [f.encode() for f in WORKFLOW_FIELDS]
    assert dict(zip(pairs[0::2], pairs[1::2], strict=True)) == {k.encode(): v for k, v in wf.to_fields().items()}
    packer = XaddPacker(1000)
    assert packer.workflow("workflow:events:global", values) == pack(
        b"XADD", b"workflow:events:global", b"MAXLEN", b"~", b"1000", b"*", *pairs
    )
    long = workflow_entry(UUID, "TICKET_CREATED", TS, {}, b'{"k":"' + b"x" * 5000 + b'"}')
    assert parse_one(packer.workflow("w", long))[-1] == long[-1]


ROUTE_PAYLOADS: list[Any] = [
    *[c for c in WORKFLOW_CASES if not c.values[1]],
    pytest.param({"tenantId": "t\u00e9n\u00e2nt", "note": "\u00e9" * 40}, {}, id="non-ascii"),
    pytest.param({"tenantId": "t", "blob": "x" * 5000, "actorUserId": UUID}, {}, id="long"),
    pytest.param({"tenantId": "", "tenant": "t3", "actorUserId": "", "userId": UUID}, {}, id="fallbacks"),
]


@pytest.mark.parametrize(("payload", "hooks"), ROUTE_PAYLOADS)
@pytest.mark.parametrize(
    "chans",
    [("global",), ("global", "internal-notifications", "emailservice::v7"), ("bench",)],
    ids=["global", "fan-out", "other"],
)
@pytest.mark.parametrize("force", [False, True], ids=["normal", "force"])
def test_route_packs_what_the_generic_packers_pack(
    payload: dict[str, Any], hooks: dict[str, Any], chans: tuple[str, ...], force: bool
) -> None:
    """Route.pack (one join of cached parts) equals workflow_entry + XaddPacker, and fails where they fail."""
    assert not hooks
    packer = XaddPacker(1000)
    streams = tuple(f"p:event-stream:{ch}:TICKET_CREATED" for ch in chans)
    workflow = "global" in chans
    route = Route(packer, "TICKET_CREATED", chans, streams, force=force, workflow=workflow)
    data = msgspec.json.encode(payload)
    env = encode_envelope(UUID, "TICKET_CREATED", TS, data)
    try:
        parts = [packer.per_type(st, ch, env, force) for ch, st in zip(chans, streams, strict=True)]
        if workflow:
            values = workflow_entry(UUID, "TICKET_CREATED", TS, payload, data)
            parts.insert(0, packer.workflow("workflow:events:global", values))
        expected: Any = b"".join(parts)
    except Exception as exc:
        expected = (type(exc), str(exc))
    try:
        got: Any = route.pack(UUID.encode(), TS.encode(), data, len(env), payload)
    except Exception as exc:
        got = (type(exc), str(exc))
    assert got == expected
    assert route.streams == (("workflow:events:global",) if workflow else ()) + streams
    assert route.n_commands == len(route.streams)
    assert route.env_size + 36 + len(TS) + len(data) == len(env)


def parse_one(data: bytes) -> list[bytes]:
    """The arguments of one packed command."""
    (command,) = parse_commands(data)
    return command


def test_envelope_is_byte_equal_to_the_schema_encoder() -> None:
    """The spliced envelope equals schemas.encode_bus_event, for safe and unusual event types."""
    payload = b'{"tenantId":"t","note":"quote \\" and \\u00e9"}'
    for event_type in ("TICKET_CREATED", 'WEIRD"TYPE'):
        assert encode_envelope(UUID, event_type, TS, payload) == encode_bus_event(UUID, event_type, TS, payload)


def test_now_iso_is_javascript_iso_format() -> None:
    """now_iso() looks like toISOString(): millisecond precision, Z suffix, close to the clock."""
    value = now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value)
    parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 2


def test_new_event_id_is_a_random_uuid4() -> None:
    """Event ids are version-4 RFC 4122 uuids and do not repeat."""
    ids = {new_event_id() for _ in range(2000)}
    assert len(ids) == 2000
    for value in list(ids)[:50]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == value


def test_pooled_event_ids_use_every_random_digit() -> None:
    """Pooled ids: version digit 4, variant digit 8/9/a/b (all four seen), every other digit varies."""
    ids = [new_event_id() for _ in range(3000)]
    assert len(set(ids)) == 3000
    assert {i[14] for i in ids} == {"4"} and {i[19] for i in ids} == set("89ab")
    for pos in range(36):
        if pos not in (8, 13, 14, 18, 19, 23):
            assert len({i[pos] for i in ids}) == 16, pos
    assert all(str(uuid.UUID(i)) == i for i in ids)


def test_a_forked_child_does_not_replay_its_parents_ids() -> None:
    """The id pool is emptied in a forked child: its ids are not the ones the parent takes next."""
    new_event_id()  # the pool holds ids now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, "".join(new_event_id() for _ in range(10)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    parent = [new_event_id() for _ in range(10)]
    child_ids = [child[i : i + 36] for i in range(0, 360, 36)]
    assert len(child_ids) == 10 and not set(child_ids) & set(parent)


def test_now_iso_is_one_string_per_millisecond() -> None:
    """Within one millisecond now_iso() returns the same string object; later ones never go back."""
    values = [now_iso() for _ in range(2000)]
    assert values == sorted(values)
    same = [(a, b) for a, b in itertools.pairwise(values) if a == b]
    assert same and all(a is b for a, b in same)


def test_payload_view_of_a_struct_uses_wire_names() -> None:
    """A Struct payload exposes tenantId/actorUserId by wire name, leaving UNSET keys out."""
    p = TicketCreated(tenant_id="t1", occurred_at=TS, ticket_id=UUID, actor_user_id=UUID)
    assert payload_view(p) == {"tenantId": "t1", "actorUserId": UUID}
    mapping = {"tenantId": "t2"}
    assert payload_view(mapping) is mapping


@pytest.mark.parametrize("fast", [True, False], ids=["parser", "read_response"])
async def test_read_replies_returns_errors_as_values(backend: aioredis.Redis, test_prefix: str, fast: bool) -> None:
    """Replies come back in order; an error reply is a ResponseError value, not raised."""
    key = f"{test_prefix}k"
    pool = backend.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(
            pack(b"SET", key, b"v") + pack(b"XADD", key, b"*", b"a", b"b") + MULTI + pack(b"GET", key) + EXEC,
            check_health=False,
        )
        with anyio.fail_after(5):
            replies = await read_replies(conn, 5, 5.0, fast=fast)
    finally:
        await pool.release(conn)
    assert replies[0] in (b"OK", "OK", True)
    assert isinstance(replies[1], rex.ResponseError) and "WRONGTYPE" in str(replies[1])
    assert replies[2] in (b"OK", "OK", True) and replies[3] in (b"QUEUED", "QUEUED")
    assert replies[4] == [b"v"]


async def test_read_replies_times_out_as_a_whole(real_client: aioredis.Redis) -> None:
    """Waiting for a reply that never comes raises TimeoutError after the one budget."""
    pool = real_client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(pack(b"PING"), check_health=False)
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            await read_replies(conn, 2, 0.2)
    finally:
        await conn.disconnect()
        await pool.release(conn)


async def test_fast_reader_is_used_on_real_sockets_only(
    real_client: aioredis.Redis, fake_client: aioredis.Redis
) -> None:
    """Real redis-py connections (RESP2 or RESP3) are read through their parser; fakeredis keeps its own reader."""
    from bus import BusSettings, create_client
    from bus.wire._hiredis import fast_reader

    bus_client = create_client(BusSettings(host="127.0.0.1"))  # the bus's own factory (RESP3 on redis-py 8)
    for client in (real_client, bus_client):
        conn = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            assert fast_reader(conn) is conn._parser
        finally:
            await client.connection_pool.release(conn)
    await bus_client.aclose()
    conn = await fake_client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        assert fast_reader(conn) is None
    finally:
        await fake_client.connection_pool.release(conn)


class _StubHiredisParser:
    """Just what the hiredis fast path of read_replies uses, fed from a list of byte chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        import hiredis

        self._reader = hiredis.Reader(notEnoughData=NOT_ENOUGH_DATA, replyError=rex.ResponseError)
        self._chunks = chunks
        self._hiredis_PushNotificationType = hiredis.PushNotification
        self.pushes: list[Any] = []
        self.reads = 0

    async def read_from_socket(self) -> bool:
        self.reads += 1
        self._reader.feed(self._chunks.pop(0))
        return True

    async def handle_push_response(self, response: Any) -> Any:
        self.pushes.append(response)
        return response


async def test_hiredis_fast_path_reads_split_replies_and_skips_pushes() -> None:
    """Replies split across socket reads come back whole and in order; errors are values; a RESP3 push is
    handed to the parser's push handler and not counted as a reply."""
    from bus.wire._hiredis import _drain_hiredis

    data = b"+OK\r\n+QUEUED\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n-ERR bad\r\n*2\r\n$3\r\n1-1\r\n:7\r\n"
    parser = _StubHiredisParser([data[i : i + 7] for i in range(0, len(data), 7)])
    out: list[Any] = []
    await _drain_hiredis(parser, 4, out.append)
    assert out[:2] == [b"OK", b"QUEUED"] and out[3] == [b"1-1", 7]
    assert isinstance(out[2], rex.ResponseError) and str(out[2]) == "ERR bad"
    assert parser.pushes == [[b"invalidate", [b"k"]]] and parser._chunks == []


async def test_send_packed_writes_to_the_stream_of_a_stock_connection(
    real_client: aioredis.Redis, fake_client: aioredis.Redis
) -> None:
    """A stock redis-py connection is written directly (no wait_for task per send); an instance with its
    own send_packed_command, and fakeredis, go through send_packed_command."""
    from bus.wire import send_packed

    ping = pack(b"PING")
    conn = await real_client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    writes: list[bytes] = []
    seen: list[bytes] = []
    try:
        writer = conn._writer
        stream_write = writer.write

        def spy_write(data: bytes) -> None:
            writes.append(data)
            stream_write(data)

        writer.write = spy_write
        await send_packed(conn, ping, 5.0)
        assert await read_replies(conn, 1, 5.0) == [b"PONG"]
        assert writes == [ping]

        original = conn.send_packed_command

        async def spied(command: Any, check_health: bool = True) -> None:
            seen.append(command)
            await original(command, check_health)

        conn.send_packed_command = spied
        await send_packed(conn, ping, 5.0)
        assert await read_replies(conn, 1, 5.0) == [b"PONG"]
        assert seen == [ping] and writes == [ping]  # redis-py's own sender writes with writelines
        del conn.send_packed_command
        del writer.write
    finally:
        await real_client.connection_pool.release(conn)
    conn = await fake_client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await send_packed(conn, ping, 5.0)
        assert await read_replies(conn, 1, 5.0) == [b"PONG"]
    finally:
        await fake_client.connection_pool.release(conn)


def test_split_commands_returns_each_packed_command() -> None:
    """split_commands cuts packed commands apart exactly where pack put them (long and binary values too)."""
    commands = [pack("XADD", "s", "*", "event", b"\r\n" * 200), pack("PING"), pack("SET", "k", "x" * 70000)]
    assert split_commands(b"".join(commands), 3) == commands
    assert split_commands(b"".join(commands), 1) == commands[:1]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        pytest.param(rex.ResponseError("MOVED 3999 127.0.0.1:7001"), ("MOVED", "127.0.0.1:7001"), id="moved"),
        pytest.param(rex.ResponseError("ASK 3999 127.0.0.1:7002"), ("ASK", "127.0.0.1:7002"), id="ask"),
        pytest.param(rex.ResponseError("TRYAGAIN Multiple keys request"), ("TRYAGAIN", None), id="tryagain"),
        pytest.param(rex.ResponseError("CLUSTERDOWN The cluster is down"), ("CLUSTERDOWN", None), id="down"),
        pytest.param(rex.ResponseError("WRONGTYPE Operation"), ("", None), id="other"),
        pytest.param(b"1-0", ("", None), id="not-an-error"),
    ],
)
def test_redirect_of_reads_cluster_redirects(reply: Any, expected: tuple[str, str | None]) -> None:
    """MOVED/ASK (with the node), TRYAGAIN and CLUSTERDOWN are recognised from the raw error reply; nothing else is."""
    assert redirect_of(reply) == expected
