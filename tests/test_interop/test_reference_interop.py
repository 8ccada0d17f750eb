"""Interop with the reference bus on the real Redis, through the executable double (reference_double.py).

The double writes and reads the reference's keys under the test prefix (per-type streams) and
the reference's unprefixed keys (marker sets, the workflow stream); our side runs ``bus`` and
``publishers`` with the same prefix. Tenants are random and their marker sets are deleted, the
workflow stream is consumed through groups of the test's own created at ``$`` (see
``conftest.ReferenceKeys.workflow_group``).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import TracerProvider

from bus import WORKFLOW_STREAM, Delivery, EventBus, LoopTiming, PublishResult
from bus.observability import Tracing
from bus.testing import fast_settings, wait_for_stats
from publishers import publish_event
from subscribers.workflow import WorkflowConsumer, WorkflowConsumerSettings, WorkflowInvocation

from .conftest import ReferenceKeys, valid_payload
from .reference_double import (
    EMAIL_TYPES,
    MARKER_TTL_S,
    NOTIFICATION_TYPES,
    PublishedCopy,
    ReferenceConsumer,
    ReferenceEvent,
    ReferencePublisher,
    ReferenceWorkflowConsumer,
)

pytestmark = pytest.mark.integration

G, N, E = "global", "internal-notifications", "emailservice::v7"
#: MAXLEN for the scenarios that write more than the reference's 1000 entries to one stream (the
#: shared workflow stream in the 2,000-event test): trimming would drop entries a group has not
#: read yet (the reference's quirk) and shorten the workflow stream under other tests.
NO_TRIM = 1_000_000
#: Short blocking reads, so cancelling the consumers at the end of a test is quick.
BLOCK_MS = 100

Copy = tuple[str, str]  # (channel, event_id)


class Tally:
    """Records items from handlers and triggers; ``await tally.wait(n)`` until it holds ``n``."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = anyio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def wait(self, count: int) -> None:
        while len(self.items) < count:
            await self._changed.wait()


@asynccontextmanager
async def our_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> AsyncIterator[EventBus]:
    """Our bus under the test prefix: fast timings, but the reference's 30 s claim timeout (a
    shorter one would take over entries the double is still handling in a shared group)."""
    values: dict[str, Any] = {"prefix": prefix, "block_ms": BLOCK_MS, "claim_idle_ms": 30_000}
    values.update(overrides)
    async with EventBus(fast_settings(**values), client=client) as bus:
        yield bus


def our_recorder(tally: Tally) -> Callable[[Delivery], Any]:
    """A handler of ours that records ``(channel, event_id)``."""

    async def handle(delivery: Delivery) -> None:
        tally.add((delivery.channel, delivery.event_id))

    return handle


def double_recorder(tally: Tally) -> Callable[[ReferenceEvent], Any]:
    """A handler of the double that records ``(channel, event_id)``."""

    async def handle(event: ReferenceEvent) -> None:
        tally.add((event.channel, event.id))

    return handle


def our_workflow(bus: EventBus, prefix: str, group: str, tally: Tally) -> WorkflowConsumer:
    """Our workflow consumer in ``group``, DLQ under the prefix, recording ``(tenant, event_id, entry_id)``."""
    settings = WorkflowConsumerSettings(
        group=group,
        dlq=f"{prefix}workflow:events:global:dlq",
        consumer=f"ours-{uuid.uuid4().hex[:8]}",
        timing=LoopTiming(block_ms=BLOCK_MS, read_timeout_s=2.0),
    )
    consumer = WorkflowConsumer(settings)

    async def record(inv: WorkflowInvocation) -> None:
        tally.add((inv.event.tenant, inv.event.event_id, inv.entry_id))

    consumer.register("*", record, name="record")
    return consumer


def double_workflow(
    client: aioredis.Redis, prefix: str, group: str, name: str | None = None
) -> ReferenceWorkflowConsumer:
    """The double's workflow consumer in ``group``, DLQ under the prefix."""
    return ReferenceWorkflowConsumer(
        client, group=group, dlq=f"{prefix}workflow:events:global:dlq", consumer_name=name, block_ms=BLOCK_MS
    )


def our_copies(bus: EventBus, results: list[PublishResult]) -> list[Copy]:
    """``(channel, event_id)`` of every per-type copy our publishes wrote."""
    out: list[Copy] = []
    for result in results:
        for stream in result.entries:
            parsed = bus.keys.parse_stream(stream)
            if parsed is not None:
                out.append((parsed[0], result.event_id_of(stream)))
    return out


async def copies_on_wire(client: aioredis.Redis, publisher: ReferencePublisher) -> list[Copy]:
    """``(channel, envelope id)`` of every entry of the per-type streams under the double's prefix."""
    out: list[Copy] = []
    async for key in client.scan_iter(match=f"{publisher.keys.head}*", count=1000, _type="stream"):
        channel, _ = publisher.keys.parse(key.decode())
        rows: Any = await client.xrange(key)
        out += [(channel, json.loads(fields[b"event"])["id"]) for _, fields in rows]
    return out


async def poll_until(check: Callable[[], Awaitable[bool]], interval_s: float = 0.05) -> None:
    """Poll ``check`` until it holds (put it under ``anyio.fail_after``)."""
    while True:
        if await check():
            return
        await anyio.sleep(interval_s)


async def pending(client: aioredis.Redis, streams: list[str], group: str) -> int:
    """Entries pending in ``group`` over ``streams``."""
    total = 0
    for stream in streams:
        info: Any = await client.xpending(stream, group)
        total += int(info["pending"])
    return total


async def pending_workflow(client: aioredis.Redis, group: str, event_ids: set[str]) -> int:
    """The test's own workflow entries (by event id) pending in ``group``: another test run on the same
    Redis adds its entries to the shared stream, and the group reads those too."""
    rows: Any = await client.xpending_range(WORKFLOW_STREAM, group, "-", "+", 100_000)
    total = 0
    for row in rows:
        found: Any = await client.xrange(WORKFLOW_STREAM, min=row["message_id"], max=row["message_id"])
        total += bool(found) and found[0][1].get(b"event_id", b"").decode() in event_ids
    return total


async def test_our_fanout_is_handled_once_per_copy_by_the_reference(
    real_client: aioredis.Redis, reference_client: aioredis.Redis, reference_keys: ReferenceKeys, test_prefix: str
) -> None:
    """Our publish_event of the 23 notification/email types: the double handles each of the 63 copies once."""
    tenant = reference_keys.tenant()
    types = sorted(NOTIFICATION_TYPES | EMAIL_TYPES)
    expected_total = len(types) + len(NOTIFICATION_TYPES) + len(EMAIL_TYPES)
    publisher = ReferencePublisher(reference_client, prefix=test_prefix)  # for its key layout only
    consumer = ReferenceConsumer(reference_client, prefix=test_prefix, block_ms=BLOCK_MS)
    handled = Tally()
    for event_type in types:
        for channel in ReferencePublisher.channels(event_type):
            consumer.subscribe(event_type, double_recorder(handled), channel=channel, key="record")
    workflow = double_workflow(reference_client, test_prefix, await reference_keys.workflow_group())
    async with our_bus(real_client, test_prefix) as bus, anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        await tg.start(workflow.run)
        results = [await publish_event(bus, t, valid_payload(t, tenant)) for t in types]
        with anyio.fail_after(10):
            await consumer.wait_until(lambda s: s.outcomes >= expected_total)
            await workflow.wait_until(lambda w: len(w.handled_of([tenant])) >= len(types))
        tg.cancel_scope.cancel()
    wire = await copies_on_wire(real_client, publisher)
    assert expected_total == 63 and len(wire) == 63
    assert Counter(channel for channel, _ in wire) == {G: 23, N: 21, E: 19}
    assert len({event_id for _, event_id in wire}) == 63, "every copy carries its own id"
    assert Counter(our_copies(bus, results)) == Counter(wire)
    assert Counter(consumer.stats.handled_ids) == Counter(wire) == Counter(handled.items)
    assert consumer.stats.handled == Counter({(ch, t): 1 for t in types for ch in ReferencePublisher.channels(t)})
    assert (consumer.stats.skipped_duplicates, consumer.stats.invalid, consumer.stats.failed) == (0, 0, 0)
    # The workflow entry of each publish carries the global copy's id, and the double handled each once.
    global_ids = [event_id for channel, event_id in wire if channel == G]
    assert sorted(e.event_id for e in workflow.handled_of([tenant])) == sorted(global_ids)
    assert sorted(r.event_id for r in results) == sorted(global_ids)


async def test_reference_fanout_is_handled_once_per_copy_by_us(
    real_client: aioredis.Redis, reference_client: aioredis.Redis, reference_keys: ReferenceKeys, test_prefix: str
) -> None:
    """The double's publishes (fan-out, explicit channels): we handle every copy and workflow entry once."""
    tenant = reference_keys.tenant()
    plan: list[tuple[str, str | None]] = [
        ("TICKET_CREATED", None),  # global + notifications + email
        ("PROJECT_UPDATED", None),  # global + email
        ("INVOICE_GENERATED", None),  # global + notifications
        ("ASSET_CREATED", None),  # global only
        ("TICKET_UPDATED", N),  # explicit channel: global + it, lists skipped
        ("TICKET_CLOSED", G),  # explicit global: written twice (quirk), two ids, two workflow entries
    ] * 2
    publisher = ReferencePublisher(reference_client, prefix=test_prefix)
    handled, invoked = Tally(), Tally()
    group = await reference_keys.workflow_group()
    async with our_bus(real_client, test_prefix) as bus, anyio.create_task_group() as tg:
        for event_type, channel in dict.fromkeys(plan):
            for ch in dict.fromkeys(ReferencePublisher.channels(event_type, channel)):
                bus.subscribe(event_type, our_recorder(handled), channel=ch, subscriber_id="record")
        workflow = our_workflow(bus, test_prefix, group, invoked)
        await tg.start(bus.run)
        await tg.start(workflow.run, bus)
        copies: list[PublishedCopy] = []
        for event_type, channel in plan:
            copies += await publisher.publish_event(event_type, valid_payload(event_type, tenant), channel)
        globals_ = [c for c in copies if c.channel == G]
        with anyio.fail_after(10):
            stats = await wait_for_stats(bus, lambda s: s.acked >= len(copies))
            while len([i for i in invoked.items if i[0] == tenant]) < len(globals_):
                await invoked.wait(len(invoked.items) + 1)
        tg.cancel_scope.cancel()
    assert len(copies) == 24 and len(globals_) == 14
    assert Counter(handled.items) == Counter((c.channel, c.event_id) for c in copies)
    assert len({c.event_id for c in copies}) == 24, "every reference copy carries its own id"
    assert (stats.handled, stats.duplicates, stats.dead_lettered, stats.invalid) == (24, 0, 0, 0)
    ours = sorted((eid, entry) for t, eid, entry in invoked.items if t == tenant)
    assert ours == sorted((c.event_id, c.workflow_entry_id) for c in globals_)
    assert await real_client.xlen(f"{test_prefix}workflow:events:global:dlq") == 0


async def test_our_consumer_leaves_the_reference_markers_alone(
    real_client: aioredis.Redis, reference_client: aioredis.Redis, reference_keys: ReferenceKeys, test_prefix: str
) -> None:
    """The double skips X re-published after we handled X; its marker sets hold just its own writes, with TTLs."""
    tenant = reference_keys.tenant()
    event_id = str(uuid.uuid4())
    payload = valid_payload("ASSET_CREATED", tenant)  # a global-only type: one copy per publish
    publisher = ReferencePublisher(reference_client, prefix=test_prefix)
    consumer = ReferenceConsumer(reference_client, prefix=test_prefix, block_ms=BLOCK_MS)
    calls = Counter[str]()

    def handler(key: str) -> Callable[[ReferenceEvent], Any]:
        async def handle(event: ReferenceEvent) -> None:
            calls[key] += 1

        return handle

    consumer.subscribe("ASSET_CREATED", handler("audit"), key="audit")
    consumer.subscribe("ASSET_CREATED", handler("notify"), key="notify")
    events_key, handlers_key = f"processed_events:{tenant}", f"processed_event_handlers:{tenant}"
    ours = Tally()
    async with anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        await publisher.publish_event("ASSET_CREATED", payload, event_id=event_id)
        with anyio.fail_after(5):
            await consumer.wait_until(lambda s: s.outcomes == 1)
        written = (await real_client.smembers(events_key), await real_client.smembers(handlers_key))
        # Our consumer (its own group on the same stream) handles X between the two deliveries.
        async with (
            our_bus(real_client, test_prefix, consumer_group="python-interop") as bus,
            anyio.create_task_group() as our_tg,
        ):
            bus.subscribe("ASSET_CREATED", our_recorder(ours), subscriber_id="record")
            await our_tg.start(bus.run)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.acked == 1)
            # The reference re-publishes X (not forced), then we publish X with the same id.
            await publisher.publish_event("ASSET_CREATED", payload, event_id=event_id)
            with anyio.fail_after(5):
                await consumer.wait_until(lambda s: s.outcomes == 2)
                await wait_for_stats(bus, lambda s: s.acked == 2)
            await publish_event(bus, "ASSET_CREATED", payload, event_id=event_id)
            with anyio.fail_after(5):
                await consumer.wait_until(lambda s: s.outcomes == 3)
                ours_stats = await wait_for_stats(bus, lambda s: s.acked == 3)
            our_markers: set[bytes] = await real_client.smembers(bus.keys.marker_events(tenant))  # type: ignore[assignment]
            our_tg.cancel_scope.cancel()
        tg.cancel_scope.cancel()
    assert written == ({event_id.encode()}, {f"{event_id}:audit".encode(), f"{event_id}:notify".encode()})
    assert (await real_client.smembers(events_key), await real_client.smembers(handlers_key)) == written
    for key in (events_key, handlers_key):
        assert await real_client.type(key) == b"set"
        assert 0 < await real_client.ttl(key) <= MARKER_TTL_S
        assert await real_client.exists(f"{key}:prev") == 0
    assert dict(calls) == {"audit": 1, "notify": 1}
    assert (consumer.stats.total, consumer.stats.skipped_duplicates) == (1, 2)
    assert ours.items == [(G, event_id)] and (ours_stats.handled, ours_stats.duplicates) == (1, 2)
    assert any(m.decode().endswith(event_id) for m in our_markers), "our markers live under our prefix"


async def test_both_sides_share_groups_and_handle_every_copy_once(
    real_client: aioredis.Redis, reference_client: aioredis.Redis, reference_keys: ReferenceKeys, test_prefix: str
) -> None:
    """2,000 events, both sides publishing and sharing groups: every copy handled once overall, none pending or dead."""
    tenant = reference_keys.tenant()
    types = ["TICKET_CREATED", "PROJECT_UPDATED", "INVOICE_GENERATED", "ASSET_CREATED"]
    per_side = 1000
    payloads = {t: valid_payload(t, tenant) for t in types}
    publisher = ReferencePublisher(reference_client, prefix=test_prefix, max_len=NO_TRIM)
    consumer = ReferenceConsumer(reference_client, prefix=test_prefix, block_ms=BLOCK_MS)
    theirs, ours, invoked = Tally(), Tally(), Tally()
    streams: list[str] = []
    group = await reference_keys.workflow_group()
    theirs_wf = double_workflow(reference_client, test_prefix, group, name=f"consumer-{uuid.uuid4().hex[:6]}")
    async with our_bus(real_client, test_prefix, max_len=NO_TRIM) as bus, anyio.create_task_group() as tg:
        for event_type in types:
            for channel in ReferencePublisher.channels(event_type):
                consumer.subscribe(event_type, double_recorder(theirs), channel=channel, key="record")
                bus.subscribe(event_type, our_recorder(ours), channel=channel, subscriber_id="record")
                streams.append(publisher.keys.stream(channel, event_type))
        ours_wf = our_workflow(bus, test_prefix, group, invoked)
        for start in (consumer.run, bus.run, theirs_wf.run):
            await tg.start(start)
        await tg.start(ours_wf.run, bus)

        copies: list[Copy] = []

        async def reference_side() -> None:
            for i in range(per_side):
                event_type = types[i % len(types)]
                copies.extend(
                    (c.channel, c.event_id) for c in await publisher.publish_event(event_type, payloads[event_type])
                )

        async def our_side() -> None:
            for i in range(per_side):
                event_type = types[(i + 1) % len(types)]
                copies.extend(our_copies(bus, [await publish_event(bus, event_type, payloads[event_type])]))

        def workflow_done() -> int:
            return len(theirs_wf.handled_of([tenant])) + sum(1 for t, _, _ in invoked.items if t == tenant)

        with anyio.fail_after(60):  # a deadline on the condition below, generous for a loaded machine
            async with anyio.create_task_group() as publishers_tg:
                publishers_tg.start_soon(reference_side)
                publishers_tg.start_soon(our_side)
            global_copies = sum(1 for channel, _ in copies if channel == G)
            global_ids = {event_id for channel, event_id in copies if channel == G}

            async def settled() -> bool:
                return (
                    consumer.stats.outcomes + bus.stats.acked >= len(copies)
                    and workflow_done() >= global_copies
                    and not await pending(real_client, streams, "event-processors")
                    and not await pending_workflow(real_client, group, global_ids)
                )

            await poll_until(settled)
        tg.cancel_scope.cancel()
        our_stats = bus.stats
    assert global_copies == 2 * per_side and len(copies) == 2 * per_side * 2  # 3+2+2+1 copies per 4 types
    assert consumer.stats.total + our_stats.handled == len(copies)
    assert Counter(theirs.items) + Counter(ours.items) == Counter(copies), "every copy handled exactly once overall"
    assert consumer.stats.total > 0 and our_stats.handled > 0, "the group was really shared"
    assert (consumer.stats.skipped_duplicates, consumer.stats.invalid, consumer.stats.failed) == (0, 0, 0)
    assert (our_stats.duplicates, our_stats.dead_lettered, our_stats.failed) == (0, 0, 0)
    workflow_ids = [e.event_id for e in theirs_wf.handled_of([tenant])] + [
        e for t, e, _ in invoked.items if t == tenant
    ]
    assert Counter(workflow_ids) == Counter(event_id for channel, event_id in copies if channel == G)
    assert await pending(real_client, streams, "event-processors") == 0
    assert await pending_workflow(real_client, group, global_ids) == 0
    assert [k async for k in real_client.scan_iter(match=f"{test_prefix}*dead-letter*")] == []
    dlq: Any = await real_client.xrange(f"{test_prefix}workflow:events:global:dlq")
    assert [f for _, f in dlq if tenant.encode() in f[b"original_message"]] == []


async def test_entries_with_trace_context_read_correctly_by_the_reference(
    real_client: aioredis.Redis, reference_client: aioredis.Redis, reference_keys: ReferenceKeys, test_prefix: str
) -> None:
    """A traced publish (extra traceparent field on every entry): the double handles each copy and the
    workflow entry as it would without the field (it reads only the fields it names)."""
    tenant = reference_keys.tenant()
    event_type = "TICKET_CREATED"  # global + notifications + email: three copies and the workflow entry
    consumer = ReferenceConsumer(reference_client, prefix=test_prefix, block_ms=BLOCK_MS)
    handled = Tally()
    for channel in ReferencePublisher.channels(event_type):
        consumer.subscribe(event_type, double_recorder(handled), channel=channel, key="record")
    workflow = double_workflow(reference_client, test_prefix, await reference_keys.workflow_group())
    settings = fast_settings(prefix=test_prefix, block_ms=BLOCK_MS, claim_idle_ms=30_000)
    tracing = Tracing(TracerProvider())  # the otel extra, part of the dev extra
    async with EventBus(settings, client=real_client, tracing=tracing) as bus, anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        await tg.start(workflow.run)
        result = await publish_event(bus, event_type, valid_payload(event_type, tenant))
        with anyio.fail_after(10):
            await consumer.wait_until(lambda s: s.outcomes >= 3)
            await workflow.wait_until(lambda w: len(w.handled_of([tenant])) >= 1)
        tg.cancel_scope.cancel()
    for stream, entry_id in result.entries.items():
        rows: Any = await real_client.xrange(stream, min=entry_id, max=entry_id)
        assert rows[0][1][b"traceparent"].startswith(b"00-"), f"{stream} carries the trace context"
    assert Counter(handled.items) == Counter(our_copies(bus, [result]))
    assert (consumer.stats.skipped_duplicates, consumer.stats.invalid, consumer.stats.failed) == (0, 0, 0)
    (entry,) = workflow.handled_of([tenant])
    assert (entry.event_id, entry.event_type, entry.tenant) == (result.event_id, event_type, tenant)
    assert workflow.failed == 0
