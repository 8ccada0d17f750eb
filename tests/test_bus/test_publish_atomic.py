"""One round trip, MULTI/EXEC atomicity and what a refused command does (publish, publish_many)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rex

import bus.publish._writer as publish_module
from bus import (
    WORKFLOW_STREAM,
    BackendError,
    BackendUnavailableError,
    PartialWriteError,
    PayloadTooLargeError,
    PayloadValidationError,
    PermissionDeniedError,
    PublishOutcomeUnknownError,
)
from bus._bus import STREAM_CHUNK
from bus.wire import EXEC, MULTI

from ._support import SendSpy, entries, open_bus, parse_commands, prefixed_keys, ticket_created, workflow_entries


async def test_global_publish_is_one_multi_exec(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workflow entry and the per-type entry go in ONE send: MULTI, XADD workflow, XADD per-type, EXEC."""
    async with open_bus(backend, test_prefix) as bus:
        spy = SendSpy(backend, monkeypatch)
        with anyio.fail_after(5):
            await bus.publish("TICKET_CREATED", ticket_created())
    assert len(spy.sends) == 1
    commands = spy.commands[0]
    assert [c[0] for c in commands] == [b"MULTI", b"XADD", b"XADD", b"EXEC"]
    assert commands[1][1] == WORKFLOW_STREAM.encode()
    assert commands[2][1] == f"{test_prefix}event-stream:global:TICKET_CREATED".encode()


async def test_single_xadd_goes_without_multi(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone XADD (non-global channel) is sent bare: a single command is atomic by itself."""
    async with open_bus(backend, test_prefix) as bus:
        spy = SendSpy(backend, monkeypatch)
        with anyio.fail_after(5):
            await bus.publish("TICKET_CREATED", ticket_created(), channel="internal-notifications")
    assert spy.names(0) == [b"XADD"]


async def test_publish_many_1000_in_one_round_trip(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 events (2,000 XADDs) are one transaction whose replies are read once; every result names its entries.

    The transaction is streamed: MULTI goes out with the first chunk, each chunk as soon as it is
    prepared, EXEC after the last; no send but the last carries EXEC.
    """
    reads: list[int] = []
    read = publish_module.read_replies  # type: ignore[attr-defined]

    async def counted(conn: Any, count: int, *args: Any, **kwargs: Any) -> list[Any]:
        reads.append(count)
        return await read(conn, count, *args, **kwargs)

    async with open_bus(backend, test_prefix) as bus:
        spy = SendSpy(backend, monkeypatch)
        monkeypatch.setattr(publish_module, "read_replies", counted)
        before = bus.publisher.round_trips
        with anyio.fail_after(20):
            results = await bus.publish_many([("TICKET_CREATED", ticket_created(n=i)) for i in range(1000)])
        assert bus.publisher.round_trips - before == 1
        assert reads == [2002]  # MULTI's OK, 2,000 QUEUED, EXEC's array: read once, at the end
        names = [c[0] for c in parse_commands(b"".join(spy.sends))]
        assert (names[0], names[-1], names.count(b"XADD"), len(names)) == (b"MULTI", b"EXEC", 2000, 2002)
        assert spy.sends[0].startswith(MULTI) and [EXEC in s for s in spy.sends].count(True) == 1
        assert spy.sends[-1] == EXEC and len(spy.sends) == 1000 // STREAM_CHUNK + 1
        with anyio.fail_after(10):
            stored = await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))
            wf = await workflow_entries(backend, *(r.event_id for r in results))
            oldest: Any = await backend.xrange(WORKFLOW_STREAM, count=1)
    # The workflow stream is shared and capped (MAXLEN ~): a writer beside this test on the same Redis
    # (a second test run) may have trimmed our oldest entries since; only those may be missing.
    trimmed = [r for r in results if _entry_id(r.entries[WORKFLOW_STREAM]) < _entry_id(oldest[0][0])]
    assert len(results) == 1000 and len(stored) == 1000 and len(wf) + len(trimmed) == 1000
    assert [r.event_id for r in results] == [s[b"event"][7:43].decode() for s in stored]


def _entry_id(entry_id: str | bytes) -> tuple[int, int]:
    """A stream entry id as a comparable (ms, seq)."""
    ms, _, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
    return int(ms), int(seq)


async def test_publish_many_small_batch_is_one_send(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to STREAM_CHUNK events go in one send: MULTI, the XADDs and EXEC together."""
    async with open_bus(backend, test_prefix) as bus:
        spy = SendSpy(backend, monkeypatch)
        with anyio.fail_after(10):
            await bus.publish_many([("TICKET_CREATED", ticket_created())] * STREAM_CHUNK)
    assert len(spy.sends) == 1 and spy.names(0) == [b"MULTI", *[b"XADD"] * (2 * STREAM_CHUNK), b"EXEC"]


@pytest.mark.parametrize("bad", [37, 537, 999], ids=["first-chunk", "middle", "last"])
async def test_publish_many_all_or_none_on_one_invalid(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch, bad: int
) -> None:
    """One invalid event among 1,000 raises naming its index, type and path; nothing is written.

    The chunks before it were queued already: the transaction is DISCARDed (never EXECuted),
    and the connection goes back to the pool in a clean state.
    """
    events: list[Any] = [("TICKET_CREATED", ticket_created()) for _ in range(1000)]
    events[bad] = ("TICKET_CREATED", ticket_created(ticketId="not-a-uuid"))
    async with open_bus(backend, test_prefix) as bus:
        spy = SendSpy(backend, monkeypatch)
        with anyio.fail_after(10):
            with pytest.raises(PayloadValidationError) as info:
                await bus.publish_many(events)
            assert await prefixed_keys(backend, test_prefix) == []
            sent = [c[0] for c in parse_commands(b"".join(spy.sends)) if c[0] != b"SCAN"]
            after = await bus.publish("TICKET_CREATED", ticket_created())  # the pool still works
    assert after.ok
    if bad < STREAM_CHUNK:
        assert sent == []  # the invalid event was found before anything went out
    else:
        queued = 2 * (bad // STREAM_CHUNK) * STREAM_CHUNK
        assert sent[: queued + 2] == [b"MULTI", *[b"XADD"] * queued, b"DISCARD"]
    assert info.value.path == f"$[{bad}].payload.ticketId" and info.value.event_type == "TICKET_CREATED"
    assert f"TICKET_CREATED: invalid $[{bad}].payload.ticketId: Expected a uuid" in str(info.value)


async def test_streamed_batch_refuses_an_oversized_item_late(backend: aioredis.Redis, test_prefix: str) -> None:
    """An item over max_payload_bytes after the first chunk names its index; the queued chunks are discarded."""
    events = [("TICKET_CREATED", ticket_created())] * 250 + [("TICKET_CREATED", ticket_created(blob="x" * 3000))]
    async with open_bus(backend, test_prefix, max_payload_bytes=2048) as bus:
        with anyio.fail_after(10):
            with pytest.raises(PayloadTooLargeError, match=r"event \[250\]"):
                await bus.publish_many(events)
            assert await prefixed_keys(backend, test_prefix) == []


async def test_streamed_batch_connection_lost_before_exec_writes_nothing(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection failing while chunks are queued (before EXEC) is a plain backend error: nothing was written."""
    send = publish_module.send_packed  # type: ignore[attr-defined]
    calls = 0

    async def failing(conn: Any, data: bytes, timeout_s: float | None) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise rex.ConnectionError("Connection reset by peer")
        await send(conn, data, timeout_s)

    async with open_bus(backend, test_prefix) as bus:
        monkeypatch.setattr(publish_module, "send_packed", failing)
        with anyio.fail_after(10):
            with pytest.raises(BackendUnavailableError, match="before EXEC; nothing was written"):
                await bus.publish_many([("TICKET_CREATED", ticket_created())] * 500)
            monkeypatch.undo()
            assert await prefixed_keys(backend, test_prefix) == []
            assert (await bus.publish("TICKET_CREATED", ticket_created())).ok


async def test_streamed_batch_lost_reply_is_outcome_unknown(
    fake_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply lost after EXEC went out: PublishOutcomeUnknownError carrying every event id of the batch."""

    async def dropped(*args: Any, **kwargs: Any) -> list[Any]:
        raise rex.ConnectionError("Connection reset by peer")

    async with open_bus(fake_client, test_prefix) as bus:
        prepared = [bus.prepare("TICKET_CREATED", ticket_created()) for _ in range(250)]
        monkeypatch.setattr(publish_module, "read_replies", dropped)
        with anyio.fail_after(10), pytest.raises(PublishOutcomeUnknownError) as info:
            await bus.publish_many(prepared)
        monkeypatch.undo()
        with anyio.fail_after(5):
            stored = await entries(fake_client, bus.keys.stream("global", "TICKET_CREATED"))
    assert info.value.event_ids == tuple(p.event_id for p in prepared)
    assert len(stored) == 250  # EXEC ran; only the reply was lost


async def test_publish_many_refuses_an_oversized_item(backend: aioredis.Redis, test_prefix: str) -> None:
    """An item over max_payload_bytes names its index and nothing is written."""
    events = [("TICKET_CREATED", ticket_created()), ("TICKET_CREATED", ticket_created(blob="x" * 3000))]
    async with open_bus(backend, test_prefix, max_payload_bytes=2048) as bus:
        with anyio.fail_after(5):
            with pytest.raises(PayloadTooLargeError, match=r"event \[1\]"):
                await bus.publish_many(events)
            assert await prefixed_keys(backend, test_prefix) == []


async def test_runtime_error_inside_exec_is_reported_not_hidden(backend: aioredis.Redis, test_prefix: str) -> None:
    """WRONGTYPE inside EXEC does not roll back: PartialWriteError says what was written and what was refused."""
    async with open_bus(backend, test_prefix) as bus:
        stream = bus.keys.stream("global", "TICKET_CREATED")
        with anyio.fail_after(5):
            await backend.set(stream, "not a stream")
            with pytest.raises(PartialWriteError) as info:
                await bus.publish("TICKET_CREATED", ticket_created())
            event_id = info.value.event_ids[0]
            wf = await workflow_entries(backend, event_id)
    assert [(e, s) for e, s, _ in info.value.written] == [(event_id, WORKFLOW_STREAM)]
    assert [(e, s) for e, s, _ in info.value.failed] == [(event_id, stream)]
    assert "WRONGTYPE" in info.value.failed[0][2] and "does not roll back" in str(info.value)
    assert len(wf) == 1  # the workflow XADD ran: exactly what the error reported
    with anyio.fail_after(5):  # the shared workflow stream is not under the test prefix: clean up by hand
        await backend.xdel(WORKFLOW_STREAM, info.value.written[0][2])


async def test_batch_with_one_refused_event_names_the_written_ones(backend: aioredis.Redis, test_prefix: str) -> None:
    """In publish_many, a refused XADD fails only its event; the error lists every entry written."""
    async with open_bus(backend, test_prefix) as bus:
        bad = bus.keys.stream("emailservice::v7", "TICKET_CREATED")
        with anyio.fail_after(5):
            await backend.set(bad, "x")
        good = [bus.prepare("TICKET_CREATED", ticket_created(), channel="internal-notifications") for _ in range(2)]
        refused = bus.prepare("TICKET_CREATED", ticket_created(), channel="emailservice::v7")
        with anyio.fail_after(5):
            with pytest.raises(PartialWriteError) as info:
                await bus.publish_many([good[0], refused, good[1]])
    assert {e for e, _, _ in info.value.written} == {good[0].event_id, good[1].event_id}
    assert [(e, s) for e, s, _ in info.value.failed] == [(refused.event_id, bad)]
    assert str(info.value).startswith("1 of 3 events were not written")


async def test_idempotent_publish_checks_types_before_writing(backend: aioredis.Redis, test_prefix: str) -> None:
    """Through the idempotency script a WRONGTYPE stream writes nothing at all (types are checked first)."""
    async with open_bus(backend, test_prefix) as bus:
        stream = bus.keys.stream("global", "TICKET_CREATED")
        with anyio.fail_after(5):
            await backend.set(stream, "x")
            with pytest.raises(BackendError, match="WRONGTYPE") as info:
                await bus.publish("TICKET_CREATED", ticket_created(), idempotency_key="k")
            assert not isinstance(info.value, PartialWriteError)
            assert await backend.get(bus.publisher.marker_key("tenant-1", "k")) is None
            assert await prefixed_keys(backend, test_prefix) == [stream.encode()]


async def test_transaction_refused_at_queue_time_writes_nothing(
    redis_process: Callable[..., Any], test_prefix: str
) -> None:
    """An ACL refusal of one queued XADD aborts the whole MULTI/EXEC (EXECABORT): nothing is written."""
    server = redis_process(appendonly=False)
    admin = aioredis.Redis(port=server.port)
    acl = ("ACL", "SETUSER", "pub", "on", ">pw", f"~{test_prefix}*", "+@all")
    limited = aioredis.Redis(port=server.port, username="pub", password="pw")
    try:
        with anyio.fail_after(10):
            await admin.execute_command(*acl)  # type: ignore[no-untyped-call]
            async with open_bus(limited, test_prefix) as bus:
                with pytest.raises(PermissionDeniedError, match="nothing was written"):
                    await bus.publish("TICKET_CREATED", ticket_created())
                assert await admin.keys("*") == []
    finally:
        with anyio.fail_after(5):
            await limited.aclose()
            await admin.aclose()


async def test_the_server_runs_one_transaction(redis_process: Callable[..., Any], test_prefix: str) -> None:
    """INFO commandstats on a private server: publish_many of 1,000 is 1 MULTI, 1 EXEC, 2,000 XADDs."""
    server = redis_process(appendonly=False)
    client = aioredis.Redis(port=server.port)
    try:
        with anyio.fail_after(20):
            async with open_bus(client, test_prefix) as bus:
                await client.config_resetstat()
                await bus.publish_many([("TICKET_CREATED", ticket_created())] * 1000)
                stats = await client.info("commandstats")
    finally:
        with anyio.fail_after(5):
            await client.aclose()
    calls = {name: stats[f"cmdstat_{name}"]["calls"] for name in ("multi", "exec", "xadd")}
    assert calls == {"multi": 1, "exec": 1, "xadd": 2000}
