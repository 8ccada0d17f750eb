"""EventBus.publish: wire fields, the workflow entry, validation before any write, size cap."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import (
    WORKFLOW_STREAM,
    PayloadTooLargeError,
    PayloadValidationError,
    WorkflowHooks,
)
from schemas.events.tickets import TicketCreated

from ._support import (
    TS,
    USER,
    UUID,
    entries,
    golden_bytes,
    golden_fields,
    open_bus,
    parse_commands,
    prefixed_keys,
    ticket_created,
    workflow_entries,
    xrange,
)


async def test_round_trip_equals_the_golden_wire_examples(backend: aioredis.Redis, test_prefix: str) -> None:
    """The per-type entry is exactly {event: golden envelope, channel: global}; the workflow entry is the golden one."""
    envelope = json.loads(golden_bytes("bus_event_ticket_updated.json"))
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await bus.publish(
                "TICKET_UPDATED", envelope["payload"], event_id=envelope["id"], timestamp=envelope["timestamp"]
            )
            stream = f"{test_prefix}event-stream:global:TICKET_UPDATED"
            got = await xrange(backend, stream)
            wf = await workflow_entries(backend, envelope["id"])
    assert [list(fields.items()) for _, fields in got] == [
        [(b"event", golden_bytes("bus_event_ticket_updated.json")), (b"channel", b"global")]
    ]
    assert wf == [golden_fields("workflow_event_ticket_updated.json")]
    assert result.event_id == envelope["id"] and not result.duplicate
    assert result.entries == {WORKFLOW_STREAM: wf_id(result), stream: got[0][0].decode()}


def wf_id(result: Any) -> str:
    """The workflow entry id in a result."""
    return str(result.entries[WORKFLOW_STREAM])


async def test_workflow_hooks_equal_the_golden_hooks_example(backend: aioredis.Redis, test_prefix: str) -> None:
    """Hooks fill execution_id, workflow_correlation_key, event_name, from_state and to_state exactly."""
    golden = dict(golden_fields("workflow_event_ticket_closed_hooks.json"))
    hooks = WorkflowHooks(
        execution_id=golden[b"execution_id"].decode(),
        correlation_key=golden[b"workflow_correlation_key"].decode(),
        event_name=golden[b"event_name"].decode(),
        from_state=golden[b"from_state"].decode(),
        to_state=golden[b"to_state"].decode(),
    )
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            await bus.publish(
                "TICKET_CLOSED",
                json.loads(golden[b"payload_json"]),
                event_id=golden[b"event_id"].decode(),
                timestamp=golden[b"timestamp"].decode(),
                hooks=hooks,
            )
            wf = await workflow_entries(backend, golden[b"event_id"].decode())
    assert wf == [golden_fields("workflow_event_ticket_closed_hooks.json")]


async def test_generated_id_and_timestamp(backend: aioredis.Redis, test_prefix: str) -> None:
    """Without event_id/timestamp the bus writes a fresh uuid4 and toISOString()-style time."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await bus.publish("TICKET_CREATED", ticket_created())
            (fields,) = await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))
    env = json.loads(fields[b"event"])
    assert env["id"] == result.event_id and len(env["id"]) == 36 and env["id"][14] == "4"
    assert len(env["timestamp"]) == 24 and env["timestamp"].endswith("Z")
    assert list(env) == ["id", "eventType", "timestamp", "payload"]


async def test_unknown_keys_stay_on_the_wire(backend: aioredis.Redis, test_prefix: str) -> None:
    """A mapping payload is written as given, unknown keys included, in both entries."""
    payload = ticket_created(customField={"a": [1, 2]}, note='é "quoted"')
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await bus.publish("TICKET_CREATED", payload)
            (fields,) = await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))
            (wf,) = await workflow_entries(backend, result.event_id)
    assert json.loads(fields[b"event"])["payload"] == payload
    assert json.loads(dict(wf)[b"payload_json"]) == payload


async def test_struct_payload(backend: aioredis.Redis, test_prefix: str) -> None:
    """A payload Struct is validated and written with wire names; tenant and user reach the workflow entry."""
    payload = TicketCreated(tenant_id="t-9", occurred_at=TS, ticket_id=UUID, actor_user_id=USER)
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await bus.publish("TICKET_CREATED", payload)
            (fields,) = await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))
            (wf,) = await workflow_entries(backend, result.event_id)
    assert json.loads(fields[b"event"])["payload"] == {
        "tenantId": "t-9",
        "occurredAt": TS,
        "actorUserId": USER,
        "ticketId": UUID,
    }
    assert (dict(wf)[b"tenant"], dict(wf)[b"user_id"]) == (b"t-9", USER.encode())


async def test_force_field_only_on_recovery(backend: aioredis.Redis, test_prefix: str) -> None:
    """``force="1"`` is written only when asked for (recovery re-publishes)."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            await bus.publish("TICKET_CREATED", ticket_created())
            await bus.publish("TICKET_CREATED", ticket_created(), force=True)
            normal, forced = await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))
    assert b"force" not in normal
    assert forced[b"force"] == b"1" and list(forced)[-1] == b"force"


async def test_other_channel_writes_no_workflow_entry(backend: aioredis.Redis, test_prefix: str) -> None:
    """A publish on a non-global channel writes only that channel's per-type stream (one XADD)."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await bus.publish("TICKET_CREATED", ticket_created(), channel="emailservice::v7")
            keys = await prefixed_keys(backend, test_prefix)
            wf = await workflow_entries(backend, result.event_id)
    stream = f"{test_prefix}event-stream:emailservice::v7:TICKET_CREATED"
    assert keys == [stream.encode()] and wf == []
    assert list(result.entries) == [stream]


async def test_channels_get_their_own_ids_unless_one_is_given(backend: aioredis.Redis, test_prefix: str) -> None:
    """Copies on several channels get distinct fresh ids (global's is the workflow's); a given event_id is shared."""
    chans = ("internal-notifications", "global")  # global not first: its copy still carries the primary id
    given = "5d2f2a1e-7c1b-4b7a-8f0e-2c3d4e5f6a7b"
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            own = await bus.write([bus.prepare("TICKET_CREATED", ticket_created(), channel=chans)])
            shared = await bus.write([bus.prepare("TICKET_CREATED", ticket_created(), channel=chans, event_id=given)])
            g = await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))
            n = await entries(backend, bus.keys.stream("internal-notifications", "TICKET_CREATED"))
            wf = await workflow_entries(backend, own[0].event_id, shared[0].event_id)
    g_first, n_first = (json.loads(e[b"event"])["id"] for e in (g[0], n[0]))
    assert g_first == own[0].event_id and n_first != g_first
    assert own[0].event_id_of(bus.keys.stream("internal-notifications", "TICKET_CREATED")) == n_first
    assert g[1][b"event"] == n[1][b"event"] and json.loads(g[1][b"event"])["id"] == given == shared[0].event_id
    assert [dict(w)[b"event_id"].decode() for w in wf] == [own[0].event_id, given]


INVALID: list[Any] = [
    pytest.param("TICKET_CREATED", {"ticketId": "nope"}, {}, "$.payload.ticketId", "uuid", id="bad-field"),
    pytest.param("TICKET_CREATED", {"ticketId": None}, {}, "$.payload.ticketId", "", id="null-field"),
    pytest.param("TICKET_CREATED", {"occurredAt": "2026-01-23T10:11:12+00:00"}, {}, "$.payload", "", id="offset"),
    pytest.param("TICKET_CREATD", {}, {}, "$.eventType", "TICKET_CREATED", id="unknown-type"),
    pytest.param("TICKET_CREATED", {}, {"event_id": "42"}, "$.id", "uuid", id="bad-event-id"),
    pytest.param(
        "TICKET_CREATED", {}, {"timestamp": "2026-01-23T10:11:12+00:00"}, "$.timestamp", "ending in Z", id="bad-ts"
    ),
    pytest.param(
        "TICKET_CREATED",
        {},
        {"hooks": WorkflowHooks(execution_id="run-1")},
        "$.workflow.execution_id",
        "uuid",
        id="bad-execution-id",
    ),
    pytest.param("TICKET_CREATED", {}, {"channel": ""}, "$.channel", "channel", id="empty-channel"),
]


@pytest.mark.parametrize(("event_type", "change", "options", "path", "rule"), INVALID)
async def test_invalid_event_writes_nothing(
    backend: aioredis.Redis,
    test_prefix: str,
    event_type: str,
    change: dict[str, Any],
    options: dict[str, Any],
    path: str,
    rule: str,
) -> None:
    """An invalid envelope, payload or workflow entry raises naming type, path and rule; nothing is written."""
    eid = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
    options = {"event_id": eid, **options}
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            with pytest.raises(PayloadValidationError) as info:
                await bus.publish(event_type, ticket_created(**change), **options)
            assert await prefixed_keys(backend, test_prefix) == []
            assert await workflow_entries(backend, eid) == []
    assert info.value.event_type == event_type
    assert info.value.path.startswith(path) and rule in str(info.value)
    assert str(info.value).startswith(f"{event_type}: invalid {info.value.path}: ")


async def test_bad_workflow_user_id_writes_nothing(backend: aioredis.Redis, test_prefix: str) -> None:
    """A payload whose userId is not a uuid fails the workflow entry's rule: neither entry is written."""
    payload = {"tenantId": "t", "occurredAt": TS, "userId": "bob", "ticketId": UUID}
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            with pytest.raises(PayloadValidationError) as info:
                await bus.publish("TICKET_CREATED", payload)
            assert await prefixed_keys(backend, test_prefix) == []
    assert info.value.path == "$.workflow.user_id"


async def test_oversized_payload_is_refused_before_writing(backend: aioredis.Redis, test_prefix: str) -> None:
    """An envelope over max_payload_bytes raises PayloadTooLargeError naming sizes; nothing is written."""
    async with open_bus(backend, test_prefix, max_payload_bytes=1024) as bus:
        with anyio.fail_after(5):
            await bus.publish("TICKET_CREATED", ticket_created(note="x" * 500))
            with pytest.raises(PayloadTooLargeError, match="max_payload_bytes \\(1024\\)"):
                await bus.publish("TICKET_CREATED", ticket_created(note="x" * 1100))
            assert len(await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))) == 1


@pytest.mark.parametrize(
    ("policy", "trim"),
    [
        pytest.param("approx", [b"MAXLEN", b"~", b"1000"], id="approx"),
        pytest.param("none", [], id="none"),
    ],
)
async def test_xadd_trims_with_maxlen(
    backend: aioredis.Redis, test_prefix: str, policy: str, trim: list[bytes]
) -> None:
    """Every XADD carries MAXLEN ~ max_len under the default trim policy, and none under "none"."""
    async with open_bus(backend, test_prefix, trim_policy=policy) as bus:
        prepared = bus.prepare("TICKET_CREATED", ticket_created())
    for command in parse_commands(prepared.command):
        assert command[0] == b"XADD" and command[2 : 2 + len(trim)] == trim
        assert command[2 + len(trim)] == b"*"


async def test_approximate_trim_bounds_the_stream(real_client: aioredis.Redis, test_prefix: str) -> None:
    """With a small max_len the stream stays near it (MAXLEN ~ trims whole nodes) on the real Redis."""
    async with open_bus(real_client, test_prefix, max_len=10) as bus:
        with anyio.fail_after(10):
            await bus.publish_many([("TICKET_CREATED", ticket_created())] * 400, channel="internal-notifications")
            length = await real_client.xlen(bus.keys.stream("internal-notifications", "TICKET_CREATED"))
    assert 10 <= length <= 150


async def test_prepare_packs_the_same_bytes_however_the_publish_is_spelt(fake_client: aioredis.Redis) -> None:
    """Channels as str, tuple or list, a dict or a Struct payload, hooks or none: one command for one publish."""
    payload = TicketCreated(tenant_id="t-9", occurred_at=TS, ticket_id=UUID, actor_user_id=USER)
    as_dict = {"tenantId": "t-9", "occurredAt": TS, "actorUserId": USER, "ticketId": UUID}
    async with open_bus(fake_client, "p:") as bus:
        chans = ("global", "internal-notifications")
        commands = {
            bus.prepare("TICKET_CREATED", p, channel=c, hooks=h, event_id=UUID, timestamp=TS).command
            for p in (payload, as_dict)
            for c in (chans, list(chans), chans)
            for h in (None, WorkflowHooks(), WorkflowHooks(execution_id="", event_name="", from_state=""))
        }
        single = {
            bus.prepare("TICKET_CREATED", as_dict, channel=c, event_id=UUID, timestamp=TS).command
            for c in ("global", ["global"])
        }
    assert len(commands) == 1 and len(single) == 1
    (command,) = commands
    assert [c[1] for c in parse_commands(command)] == [
        WORKFLOW_STREAM.encode(),
        b"p:event-stream:global:TICKET_CREATED",
        b"p:event-stream:internal-notifications:TICKET_CREATED",
    ]


async def test_publish_many_shares_one_timestamp(fake_client: aioredis.Redis) -> None:
    """The events of one publish_many carry one publish time (fresh ids each)."""
    async with open_bus(fake_client, "p:") as bus:
        results = await bus.publish_many([("TICKET_CREATED", ticket_created(n=i)) for i in range(300)])
        stored = await entries(fake_client, bus.keys.stream("global", "TICKET_CREATED"))
    envelopes = [json.loads(e[b"event"]) for e in stored]
    assert len({e["timestamp"] for e in envelopes}) == 1
    assert [e["id"] for e in envelopes] == [r.event_id for r in results] and len({r.event_id for r in results}) == 300
