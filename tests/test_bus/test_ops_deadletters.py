"""``bus.ops`` dead-letter calls: both formats listed and found, replay byte for byte and at most once, purge."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from bus import EventBus, Keys, ops
from bus.testing import fast_settings, reference_fields, ticket_created_payload

META = {
    b"sourceMessageId": b"1000-0",
    b"deliveries": b"10",
    b"deadLetteredAt": b"2026-01-23T10:11:12.345Z",
    b"lastError": b"handler: RuntimeError: boom",
    b"deadLetterReason": b"max-deliveries",
}


@pytest.fixture
async def bus(backend: aioredis.Redis, test_prefix: str) -> AsyncIterator[EventBus]:
    """A bus on the backend under the test's prefix."""
    async with EventBus(fast_settings(prefix=test_prefix), client=backend) as bus:
        yield bus


async def per_type(
    bus: EventBus, event_type: str = "TICKET_CREATED", entry_id: str = "*"
) -> tuple[str, dict[bytes, bytes]]:
    """One dead letter in the per-type format; returns its id and the original fields."""
    stream = bus.keys.stream("global", event_type)
    original = reference_fields(event_type, ticket_created_payload(), force=True)
    fields = {**original, b"sourceStream": stream.encode(), **META}
    dl_id: Any = await bus.client.xadd(Keys.dead_letter(stream), fields, id=entry_id)  # type: ignore[arg-type]
    return str(dl_id.decode()), original


async def workflow(bus: EventBus, original_message: str | None = None) -> tuple[str, str, dict[str, str]]:
    """One dead letter in the workflow format under the test's prefix; returns (dlq, id, flat fields)."""
    source = f"{bus.keys.prefix}workflow:events:global"
    flat = {"event_id": str(uuid.uuid4()), "event_type": "TICKET_CREATED", "tenant": "acme", "payload_json": "{}"}
    fields = {
        "original_message": original_message if original_message is not None else json.dumps(flat),
        "error_message": "trigger failed",
        "error_stack": "Traceback ...",
        "source_stream": source,
        "original_id": "5-0",
        "moved_at": "2026-01-23T10:11:12.345Z",
    }
    dl_id: Any = await bus.client.xadd(f"{source}:dlq", fields)  # type: ignore[arg-type]
    return f"{source}:dlq", str(dl_id.decode()), flat


async def test_list_reads_both_formats_with_lengths_and_limit(bus: EventBus) -> None:
    """Per-type dead letters are found by SCAN with their metadata; a named workflow DLQ parses its flat fields."""
    ids = [(await per_type(bus))[0] for _ in range(3)]
    await per_type(bus, "TICKET_CLOSED")
    listing = await ops.list_dead_letters(bus, limit_per_stream=2)
    stream = bus.keys.stream("global", "TICKET_CREATED")
    assert listing.lengths == {
        Keys.dead_letter(stream): 3,
        Keys.dead_letter(bus.keys.stream("global", "TICKET_CLOSED")): 1,
    }
    assert listing.total == 4
    created = [v for v in listing.entries if v.source_stream == stream]
    assert [v.id for v in created] == ids[:2]
    first = created[0]
    assert (first.format, first.event_type, first.deliveries, first.reason) == (
        "per-type",
        "TICKET_CREATED",
        10,
        "max-deliveries",
    )
    assert (first.source_id, first.error, first.problem) == ("1000-0", "handler: RuntimeError: boom", "")
    only = await ops.list_dead_letters(bus, event_type="TICKET_CLOSED")
    assert [v.event_type for v in only.entries] == ["TICKET_CLOSED"]

    dlq, wf_id, flat = await workflow(bus)
    (view,) = (await ops.list_dead_letters(bus, stream=dlq)).entries
    assert (view.id, view.format, view.event_type, view.event_id, view.reason) == (
        wf_id,
        "workflow",
        "TICKET_CREATED",
        flat["event_id"],
        "failed",
    )
    assert view.original == tuple((k.encode(), v.encode()) for k, v in flat.items())
    assert view.to_json()["original"]["payload_json"] == {}


async def test_find_raises_bus_errors_for_bad_missing_and_ambiguous_ids(bus: EventBus) -> None:
    """A malformed id, an id in no stream, and an id in two streams each raise their BusError."""
    await per_type(bus, "TICKET_CREATED", "5-0")
    await per_type(bus, "TICKET_CLOSED", "5-0")
    with pytest.raises(ops.InvalidEntryIdError, match="not-an-id"):
        await ops.find_dead_letters(bus, ["not-an-id"])
    with pytest.raises(ops.DeadLetterNotFoundError, match="no dead letter 9-0 in 2 dead-letter streams"):
        await ops.find_dead_letters(bus, ["9-0"])
    with pytest.raises(ops.AmbiguousDeadLetterError, match="several dead-letter streams"):
        await ops.find_dead_letters(bus, ["5-0"])
    (view,) = await ops.find_dead_letters(bus, ["5-0", "5-0"], stream="TICKET_CLOSED")
    assert view.event_type == "TICKET_CLOSED"


async def test_replay_writes_the_original_bytes_once(bus: EventBus) -> None:
    """Replay XADDs the original fields in order and deletes the dead letter; replaying it again is skipped."""
    dl_id, original = await per_type(bus)
    stream = bus.keys.stream("global", "TICKET_CREATED")
    views = await ops.find_dead_letters(bus, [dl_id])
    (outcome,) = await ops.replay_dead_letters(bus, views)
    assert (outcome.status, outcome.ok) == ("replayed", True)
    entries: Any = await bus.client.xrange(stream)
    assert [(e[0].decode(), list(e[1].items())) for e in entries] == [(outcome.entry_id, list(original.items()))]
    assert await bus.client.xlen(Keys.dead_letter(stream)) == 0
    (again,) = await ops.replay_dead_letters(bus, views)
    assert again.status == "skipped"
    assert await bus.client.xlen(stream) == 1


async def test_replay_failures_keep_the_dead_letter(bus: EventBus) -> None:
    """A source key of another type (WRONGTYPE) and an unparsable workflow original are failed outcomes, kept."""
    dl_id, _ = await per_type(bus)
    stream = bus.keys.stream("global", "TICKET_CREATED")
    await bus.client.set(stream, "not a stream")
    dlq, wf_id, _ = await workflow(bus, original_message="{not json")
    views = [*await ops.find_dead_letters(bus, [dl_id]), *await ops.find_dead_letters(bus, [wf_id], stream=dlq)]
    outcomes = await ops.replay_dead_letters(bus, views)
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert "WRONGTYPE" in outcomes[0].detail
    assert "original_message is not JSON" in outcomes[1].detail
    assert await bus.client.xlen(Keys.dead_letter(stream)) == 1
    assert await bus.client.xlen(dlq) == 1


async def test_replay_workflow_format_and_purge(bus: EventBus) -> None:
    """A workflow dead letter replays its flat fields to its source stream; purge deletes exactly what it is given."""
    dlq, wf_id, flat = await workflow(bus)
    (view,) = await ops.find_dead_letters(bus, [wf_id], stream=dlq)
    (outcome,) = await ops.replay_dead_letters(bus, [view])
    assert outcome.ok
    written: Any = await bus.client.xrange(view.source_stream)
    (entry,) = written
    assert entry[1] == {k.encode(): v.encode() for k, v in flat.items()}

    ids = [(await per_type(bus))[0] for _ in range(3)]
    views = await ops.find_dead_letters(bus, ids[:2])
    assert await ops.purge_dead_letters(bus, views) == 2
    assert await ops.purge_dead_letters(bus, []) == 0
    assert [v.id for v in (await ops.list_dead_letters(bus)).entries] == ids[2:]
