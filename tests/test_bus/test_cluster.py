"""Redis Cluster mode on a private 3-master cluster started by the test session: publish (one
MULTI/EXEC per slot, in the reference's order), consume (readers per node), a slot migration
while running, and a publish stopped between slots (marker ``fault``)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from bus import (
    CHANNEL_GLOBAL,
    WORKFLOW_DLQ,
    WORKFLOW_STREAM,
    BackendError,
    BusSettings,
    Delivery,
    EventBus,
    Keys,
    LoopTiming,
    Reject,
    ops,
)
from bus.dashboard import DashboardSettings, dashboard_app
from bus.routing import fanout_channels
from bus.testing import reference_fields, ticket_created_payload, wait_drained, wait_for_stats
from bus.wire import is_cluster, slot_of
from schemas import REGISTRY, example_payload
from subscribers.workflow import (
    ConverterSettings,
    WorkflowConsumer,
    WorkflowConsumerSettings,
    WorkflowConverter,
    WorkflowInvocation,
)

from ._cluster import ClusterServers
from ._support import ticket_created

#: The workflow services' loops: short blocks, a read timeout that survives a failover.
_TIMING = LoopTiming(block_ms=200, read_timeout_s=5)

pytestmark = pytest.mark.fault


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterServers]:
    """A 3-master cluster on free ports for the whole session; only its own servers are stopped."""
    servers = ClusterServers(Path(tmp_path_factory.mktemp("cluster")))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def cbus(cluster: ClusterServers, prefix: str) -> AsyncIterator[EventBus]:
    """A bus on the cluster with a unique key prefix."""
    settings = BusSettings.from_url(cluster.url, prefix=prefix, block_ms=200, read_timeout_s=5)
    async with EventBus(settings) as bus:
        yield bus


async def test_cluster_url_makes_a_cluster_client(cbus: EventBus) -> None:
    """A redis+cluster:// URL selects redis-py's asyncio cluster client."""
    assert is_cluster(cbus.client)


async def test_fanout_publish_writes_every_copy_across_slots(cbus: EventBus, prefix: str) -> None:
    """A fan-out publish writes the workflow entry and every channel copy, though they live in different slots."""
    payload = ticket_created()
    with anyio.fail_after(10):
        result = await cbus.publish("TICKET_CREATED", payload, channel=None)
    streams = [WORKFLOW_STREAM, *(cbus.keys.stream(ch, "TICKET_CREATED") for ch in fanout_channels("TICKET_CREATED"))]
    assert list(result.entries) == streams
    assert len({slot_of(s) for s in streams}) > 1
    client: Any = cbus.client
    for stream, entry_id in result.entries.items():
        found = await client.xrange(stream, entry_id, entry_id)
        assert len(found) == 1, stream


def _forty_types() -> list[str]:
    """40 event types: every type with a notification or email copy first, then others."""
    all_types = sorted(REGISTRY.event_types)
    fanned = [t for t in all_types if len(fanout_channels(t)) > 1]
    return (fanned + [t for t in all_types if t not in fanned])[:40]


class Effects:
    """Side effects by effect_key (a repeat is a duplicate side effect) and handled copies by stream."""

    def __init__(self) -> None:
        self.by_key: dict[str, int] = {}
        self.copies: set[tuple[str, str]] = set()
        self._waits: list[tuple[set[tuple[str, str]], anyio.Event]] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.by_key[delivery.effect_key] = self.by_key.get(delivery.effect_key, 0) + 1
        self.copies.add((delivery.stream, delivery.event_id))
        for wanted, event in self._waits:
            if not event.is_set() and wanted <= self.copies:
                event.set()

    async def wait_for(self, wanted: set[tuple[str, str]]) -> None:
        """Until every copy in ``wanted`` was handled."""
        event = anyio.Event()
        if wanted <= self.copies:
            return
        self._waits.append((wanted, event))
        await event.wait()

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.by_key.values())


async def _expected_copies(bus: EventBus, results: list[Any]) -> tuple[set[tuple[str, str]], set[str]]:
    """Every channel copy (stream, event id) and workflow event id the publishes reported."""
    copies: set[tuple[str, str]] = set()
    workflow: set[str] = set()
    for r in results:
        for stream in r.entries:
            if stream == bus.keys.workflow_stream:
                workflow.add(r.event_id)
            else:
                copies.add((stream, r.event_id_of(stream)))
    return copies, workflow


async def _workflow_ids(client: Any, wanted: set[str]) -> set[str]:
    """The event ids of ``wanted`` that have a workflow entry."""
    found: set[str] = set()
    last = "-"
    while True:
        page = await client.xrange(WORKFLOW_STREAM, last, "+", count=5000)
        for _, fields in page:
            eid = fields.get(b"event_id", b"").decode()
            if eid in wanted:
                found.add(eid)
        if len(page) < 5000:
            return found
        last = "(" + page[-1][0].decode()


@pytest.mark.slow
async def test_fanout_batches_over_forty_types_are_consumed_once_while_a_busy_slot_migrates(
    cluster: ClusterServers, prefix: str
) -> None:
    """N events over 40 types, fanned out and published in batches while a busy stream's slot
    migrates: lost 0, duplicate side effects 0, every copy and workflow entry present."""
    n_events = int(os.environ.get("BUS_CLUSTER_EVENTS", "2000"))
    settings = BusSettings.from_url(
        cluster.url, prefix=prefix, block_ms=200, read_timeout_s=5, max_len=10 * n_events, reclaim_interval_s=1
    )
    types = _forty_types()
    payloads = {t: example_payload(t) for t in types}
    effects = Effects()
    results: list[Any] = []
    async with EventBus(settings) as bus:
        for t in types:
            for channel in fanout_channels(t):
                bus.subscribe(t, effects, channel=channel, subscriber_id="effects")
        busy = bus.keys.stream(CHANNEL_GLOBAL, types[0])
        slot = slot_of(busy)
        src = cluster.port_of_slot(slot)
        dest = next(p for p in cluster.ports if p != src)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(300):
                for start in range(0, n_events, 250):
                    batch = [
                        bus.prepare(types[i % len(types)], payloads[types[i % len(types)]], channel=None)
                        for i in range(start, min(start + 250, n_events))
                    ]
                    results += await bus.write(batch)
                    if start == (n_events // 2) // 250 * 250:  # halfway: move the busy stream's slot
                        moved = await anyio.to_thread.run_sync(cluster.migrate_slot, slot, dest)
                        assert moved >= 1
                expected, workflow = await _expected_copies(bus, results)
                await effects.wait_for(expected)
                await wait_drained(bus)
            tg.cancel_scope.cancel()
        assert cluster.port_of_slot(slot) == dest
        assert len(workflow) == n_events
        assert expected - effects.copies == set()  # lost 0
        assert effects.duplicates == 0
        assert len(effects.copies) == len(expected)
        assert await _workflow_ids(bus.client, workflow) == workflow
        assert bus.stats.handled == len(expected)


async def test_publish_stopped_between_slots_is_completed_by_a_retry(cluster: ClusterServers, prefix: str) -> None:
    """A fan-out batch stopped after its workflow entries and global copies leaves a prefix of each event; writing
    the same prepared events again ends with one handled event per copy, one workflow dispatch per event, and
    no workflow entry written by the converter."""
    settings = BusSettings.from_url(cluster.url, prefix=prefix, block_ms=200, read_timeout_s=5)
    n = 50
    async with EventBus(settings) as bus:
        prepared = [bus.prepare("TICKET_CREATED", ticket_created(), channel=None) for _ in range(n)]
        wf, global_stream, *others = prepared[0].streams
        assert wf == WORKFLOW_STREAM and len(others) == 2
        crashed = anyio.CancelScope()

        async def crash(phase: int) -> None:  # the process dies once the global copies are confirmed
            if phase == 1:
                crashed.cancel()
                await anyio.lowlevel.checkpoint()

        client: Any = bus.client
        wf_group = f"{prefix}wf"  # from here on (the shared workflow stream holds other tests' entries)
        await client.xgroup_create(WORKFLOW_STREAM, wf_group, id="$", mkstream=True)
        bus.publisher.writer.after_phase = crash
        with crashed, anyio.fail_after(10):
            await bus.write(prepared)
        assert crashed.cancelled_caught
        bus.publisher.writer.after_phase = None
        assert await client.xlen(global_stream) == n
        assert [await client.exists(s) for s in others] == [0, 0]
        ids = {p.event_id for p in prepared}
        assert await _workflow_ids(client, ids) == ids

        effects = Effects()
        for channel in fanout_channels("TICKET_CREATED"):
            bus.subscribe("TICKET_CREATED", effects, channel=channel, subscriber_id="effects")
        dispatched: dict[str, int] = {}
        all_dispatched = anyio.Event()

        async def trigger(inv: WorkflowInvocation) -> None:
            dispatched[inv.event.event_id] = dispatched.get(inv.event.event_id, 0) + 1
            if ids <= dispatched.keys():
                all_dispatched.set()

        workflow = WorkflowConsumer(WorkflowConsumerSettings(group=wf_group, timing=_TIMING))
        workflow.register("TICKET_CREATED", trigger)
        converter = WorkflowConverter(
            ConverterSettings(event_types=("TICKET_CREATED",), group=f"{prefix}conv", timing=_TIMING)
        )
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await tg.start(workflow.run, bus)
            await tg.start(converter.run, bus)
            with anyio.fail_after(60):
                await effects.wait_for({(global_stream, i) for i in ids})
                results = await bus.write(prepared)  # the retry: the same prepared events, the same ids
                expected, _ = await _expected_copies(bus, results)
                await effects.wait_for(expected)
                assert converter.loop is not None and workflow.loop is not None
                await converter.loop.wait_until(lambda s: s.acked >= 2 * n)  # both global copies of each event
                await all_dispatched.wait()
                await workflow.loop.wait_until(lambda s: s.acked >= 2 * n)  # both workflow entries of each event
                await wait_drained(bus)
            tg.cancel_scope.cancel()
        assert len(expected) == 3 * n
        assert effects.copies == expected
        assert effects.duplicates == 0  # one handled event per copy
        assert sum(1 for i in ids if dispatched.get(i) == 1) == n  # one workflow dispatch per event
        assert converter.stats == {"written": 0, "skipped": 2 * n}  # every event already had its workflow entry
        assert await client.xlen(global_stream) == 2 * n  # (the retry's copies, deduped by the consumers)


async def test_publish_and_consume_follow_a_slot_through_ask_and_moved(cluster: ClusterServers, prefix: str) -> None:
    """While a stream's slot is half migrated (the source answers ASK) publishes land on the target behind
    ASKING; once the slot is the target's (MOVED) the reader re-plans: every event is handled once."""
    settings = BusSettings.from_url(cluster.url, prefix=prefix, block_ms=200, read_timeout_s=5)
    async with EventBus(settings) as bus:
        effects = Effects()
        bus.subscribe("TICKET_CREATED", effects, subscriber_id="effects")
        stream = bus.keys.stream(CHANNEL_GLOBAL, "TICKET_CREATED")
        slot = slot_of(stream)
        src = cluster.port_of_slot(slot)
        dest = next(p for p in cluster.ports if p != src)
        expected: set[tuple[str, str]] = set()
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(60):
                for _ in range(10):
                    expected.add((stream, (await bus.publish("TICKET_CREATED", ticket_created())).event_id))
                await effects.wait_for(expected)
                # The session's cluster keeps every test's keys, and any of them may hash to this slot:
                # a neighbour in the slot stands for them, so the check is that ours moved, not how many did.
                neighbour = f"{{{stream}}}:neighbour"
                cluster.client(src).set(neighbour, b"1")
                moved = await anyio.to_thread.run_sync(cluster.begin_migration, slot, src, dest)
                assert {stream, neighbour} <= moved
                for _ in range(10):  # the source asks for the stream elsewhere now
                    expected.add((stream, (await bus.publish("TICKET_CREATED", ticket_created())).event_id))
                assert cluster.client(src).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0  # (written to dest)
                await anyio.to_thread.run_sync(cluster.finish_migration, slot, src, dest)
                await effects.wait_for(expected)
                await wait_drained(bus)
            tg.cancel_scope.cancel()
        assert cluster.client(dest).xlen(stream) == 20
        assert effects.copies == expected and effects.duplicates == 0


async def test_restarted_consumer_drains_its_own_pending_entries_across_slots(
    cluster: ClusterServers, prefix: str
) -> None:
    """Entries a consumer read on streams of several slots but never acked (it stopped) are handled once by
    its successor of the same name, from its own pending entries, one XREADGROUP per slot."""
    settings = BusSettings.from_url(
        cluster.url, prefix=prefix, block_ms=200, read_timeout_s=5, consumer_name="c1", shutdown_grace_s=0.1
    )
    channels = fanout_channels("TICKET_CREATED")
    streams = [f"{prefix}event-stream:{ch}:TICKET_CREATED" for ch in channels]
    assert len({slot_of(s) for s in streams}) == len(streams)
    stuck = anyio.Event()
    read: set[tuple[str, str]] = set()

    async def never_done(delivery: Delivery) -> None:
        read.add((delivery.stream, delivery.event_id))
        if len(read) == 3 * len(channels):
            stuck.set()
        await anyio.sleep_forever()

    async with EventBus(settings) as bus:
        for channel in channels:
            bus.subscribe("TICKET_CREATED", never_done, channel=channel, subscriber_id="effects")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(30):
                for _ in range(3):
                    await bus.publish("TICKET_CREATED", ticket_created(), channel=None)
                await stuck.wait()
            tg.cancel_scope.cancel()
    effects = Effects()
    async with EventBus(settings) as bus:
        for channel in channels:
            bus.subscribe("TICKET_CREATED", effects, channel=channel, subscriber_id="effects")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(30):
                await effects.wait_for(read)
                await wait_drained(bus)
            tg.cancel_scope.cancel()
        assert bus.stats.read == len(read) and effects.copies == read and effects.duplicates == 0


async def test_hashtag_puts_a_publish_in_one_slot_and_one_transaction(cluster: ClusterServers, prefix: str) -> None:
    """With BUS_KEY_HASHTAG every key of a fan-out batch (the workflow stream too) is in the tag's slot: the batch
    is one MULTI/EXEC, and the consumers and the workflow consumer read the tagged streams once each."""
    tag = prefix.rstrip(":")
    settings = BusSettings.from_url(cluster.url, prefix=prefix, block_ms=200, read_timeout_s=5, key_hashtag=tag)
    async with EventBus(settings) as bus:
        prepared = [bus.prepare("TICKET_CREATED", ticket_created(), channel=None) for _ in range(20)]
        streams = prepared[0].streams
        assert streams[0] == f"{{{tag}}}:{WORKFLOW_STREAM}" and all(f"{{{tag}}}" in s for s in streams)
        assert {slot_of(s) for s in streams} == {slot_of(tag)}
        effects = Effects()
        for channel in fanout_channels("TICKET_CREATED"):
            bus.subscribe("TICKET_CREATED", effects, channel=channel, subscriber_id="effects")
        dispatched: list[str] = []
        ids = {p.event_id for p in prepared}
        all_dispatched = anyio.Event()

        async def trigger(inv: WorkflowInvocation) -> None:
            dispatched.append(inv.event.event_id)
            if ids <= set(dispatched):
                all_dispatched.set()

        workflow = WorkflowConsumer(WorkflowConsumerSettings(timing=_TIMING))
        workflow.register("TICKET_CREATED", trigger)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await tg.start(workflow.run, bus)
            with anyio.fail_after(30):
                before = bus.publisher.round_trips
                results = await bus.write(prepared)
                assert bus.publisher.round_trips - before == 1  # one phase: every event whole, one transaction
                expected, _ = await _expected_copies(bus, results)
                await effects.wait_for(expected)
                await all_dispatched.wait()
                await wait_drained(bus)
            tg.cancel_scope.cancel()
        assert len(expected) == 3 * 20 and effects.copies == expected and effects.duplicates == 0
        assert sorted(dispatched) == sorted(ids)


@pytest.mark.parametrize("hashtag", [pytest.param(False, id="reference-keys"), pytest.param(True, id="hashtag")])
async def test_idempotent_publish_needs_one_slot(cluster: ClusterServers, prefix: str, hashtag: bool) -> None:
    """An idempotent fan-out publish runs its script when all its keys share a slot (BUS_KEY_HASHTAG), and is
    refused before writing anything when they span slots (the reference's keys)."""
    tag = prefix.rstrip(":") if hashtag else None
    settings = BusSettings.from_url(cluster.url, prefix=prefix, key_hashtag=tag)
    async with EventBus(settings) as bus:
        client: Any = bus.client
        stream = bus.keys.stream(CHANNEL_GLOBAL, "TICKET_CREATED")
        with anyio.fail_after(10):
            if not hashtag:
                with pytest.raises(BackendError, match="span several hash slots"):
                    await bus.publish("TICKET_CREATED", ticket_created(), channel=None, idempotency_key="k1")
                assert await client.exists(stream) == 0
                return
            first = await bus.publish("TICKET_CREATED", ticket_created(), channel=None, idempotency_key="k1")
            again = await bus.publish("TICKET_CREATED", ticket_created(), channel=None, idempotency_key="k1")
        assert len(first.entries) == 4 and not first.duplicate
        assert again.duplicate and again.event_id == first.event_id
        assert await client.xlen(stream) == 1


async def test_dead_letter_replay_and_purge_work_across_slots(cbus: EventBus) -> None:
    """A per-type dead letter (its stream in another slot than the source) is found, replayed once with its
    original fields, skipped when replayed again, and dead letters of several streams are purged."""
    stream = cbus.keys.stream(CHANNEL_GLOBAL, "TICKET_CREATED")
    dead = Keys.dead_letter(stream)
    assert slot_of(stream) != slot_of(dead)
    client: Any = cbus.client
    original = reference_fields("TICKET_CREATED", ticket_created_payload(), force=True)
    meta = {b"sourceStream": stream.encode(), b"sourceMessageId": b"1-0", b"deliveries": b"10"}
    dl_id = (await client.xadd(dead, {**original, **meta})).decode()
    with anyio.fail_after(10):
        views = await ops.find_dead_letters(cbus, [dl_id])
        (outcome,) = await ops.replay_dead_letters(cbus, views)
        (again,) = await ops.replay_dead_letters(cbus, views)
    assert (outcome.status, again.status) == ("replayed", "skipped")
    entries = await client.xrange(stream)
    assert [(e[0].decode(), list(e[1].items())) for e in entries] == [(outcome.entry_id, list(original.items()))]
    assert await client.xlen(dead) == 0
    other = Keys.dead_letter(cbus.keys.stream(CHANNEL_GLOBAL, "TICKET_CLOSED"))
    views = []
    with anyio.fail_after(10):
        for d, event_type in ((dead, "TICKET_CREATED"), (other, "TICKET_CLOSED")):
            dl = (await client.xadd(d, {**original, **meta})).decode()  # (the two ids may be equal)
            views += await ops.find_dead_letters(cbus, [dl], stream=event_type)
        assert await ops.purge_dead_letters(cbus, views) == 2


#: How long the node refuses writes in the outage test: twice what would dead-letter an entry if each
#: refused delivery counted (claim idle x max deliveries).
_CLAIM_IDLE_MS, _MAX_DELIVERIES = 300, 2
_OUTAGE_S = 2 * _CLAIM_IDLE_MS / 1000 * _MAX_DELIVERIES


async def test_a_node_out_of_memory_pauses_the_consumer_and_dead_letters_nothing(
    cluster: ClusterServers, prefix: str
) -> None:
    """One master out of memory (maxmemory 1, noeviction) while handlers write their effects to it, for longer than
    claim idle x max deliveries: the write probe reaches that node, the consumer pauses, nothing is dead-lettered,
    and once the node writes again it resumes by itself and every event is handled once."""
    settings = BusSettings.from_url(
        cluster.url,
        prefix=prefix,
        block_ms=200,
        read_timeout_s=5,
        claim_idle_ms=_CLAIM_IDLE_MS,
        max_deliveries=_MAX_DELIVERIES,
        reclaim_interval_s=0.1,
        handler_retries=0,
        outage_probe_max_s=0.2,
    )
    n = 5
    async with EventBus(settings) as bus:
        stream = bus.keys.stream(CHANNEL_GLOBAL, "TICKET_CREATED")
        admin = cluster.client(cluster.port_of_slot(slot_of(stream)))  # the node the effects go to
        client: Any = bus.client
        gate = anyio.Event()
        started: set[str] = set()
        all_started = anyio.Event()
        applied: dict[str, int] = {}
        deliveries: list[int] = []

        async def effect(delivery: Delivery) -> None:
            deliveries.append(delivery.delivery_count)
            started.add(delivery.event_id)
            if len(started) == n:
                all_started.set()
            await gate.wait()
            await client.incr(f"{{{stream}}}:effect:{delivery.event_id}")  # (the stream's slot: the full node)
            applied[delivery.event_id] = applied.get(delivery.event_id, 0) + 1

        bus.subscribe("TICKET_CREATED", effect, subscriber_id="effects")
        saved = admin.config_get("maxmemory*")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            consumer = bus.consumer
            assert consumer is not None
            try:
                with anyio.fail_after(30):
                    ids = {(await bus.publish("TICKET_CREATED", ticket_created())).event_id for _ in range(n)}
                    await all_started.wait()
                    admin.config_set("maxmemory-policy", "noeviction")
                    admin.config_set("maxmemory", 1)
                    gate.set()  # every handler's write is refused now
                    await consumer.wait_until(lambda s: s.outages >= 1)
                    assert consumer.health.paused and consumer.health.status() is not None
                await anyio.sleep(_OUTAGE_S)  # the outage itself: its length is the fault under test
                assert consumer.health.paused, "resumed while the node still refused writes"
            finally:
                admin.config_set("maxmemory", saved["maxmemory"])
                admin.config_set("maxmemory-policy", saved["maxmemory-policy"])
            with anyio.fail_after(30):
                await consumer.wait_until(lambda s: s.handled >= n)
                await wait_drained(bus)
            assert not consumer.health.paused
            stats = bus.stats
            tg.cancel_scope.cancel()
        assert applied == dict.fromkeys(ids, 1)
        assert stats.dead_lettered == 0 and await client.exists(Keys.dead_letter(stream)) == 0
        assert stats.outage_failures >= n and max(deliveries) < _MAX_DELIVERIES


async def test_dead_letter_cap_is_checked_per_slot(cluster: ClusterServers, prefix: str) -> None:
    """Past BUS_DEAD_LETTER_MAXLEN on a cluster (the dead-letter stream in its own slot), nothing is trimmed and the
    dead letters past the cap are counted, as on a single node."""
    settings = BusSettings.from_url(cluster.url, prefix=prefix, block_ms=200, read_timeout_s=5, dead_letter_max_len=2)
    async with EventBus(settings) as bus:
        stream = bus.keys.stream(CHANNEL_GLOBAL, "TICKET_CREATED")
        assert slot_of(stream) != slot_of(Keys.dead_letter(stream))

        async def reject(delivery: Delivery) -> None:
            raise Reject("nope")

        bus.subscribe("TICKET_CREATED", reject, subscriber_id="rejects")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            for k in range(1, 5):  # one at a time: each flush sees the length its dead letter made
                await bus.publish("TICKET_CREATED", ticket_created())
                with anyio.fail_after(10):
                    await wait_for_stats(bus, lambda s, k=k: s.dead_lettered == k)  # type: ignore[misc]
            tg.cancel_scope.cancel()
        client: Any = bus.client
        assert await client.xlen(Keys.dead_letter(stream)) == 4  # none trimmed
        assert bus.stats.dead_lettered_over_cap == 2


async def test_operator_views_follow_the_tagged_workflow_stream(cluster: ClusterServers, prefix: str) -> None:
    """With BUS_KEY_HASHTAG, bus status, bus dlq, the dashboard and bus tail show the tagged workflow stream and its
    DLQ (where the bus and its workflow consumer write), not the reference's untagged names."""
    tag = prefix.rstrip(":")
    settings = BusSettings.from_url(cluster.url, prefix=prefix, key_hashtag=tag)
    async with EventBus(settings) as bus:
        keys = bus.keys
        assert keys.workflow_stream == f"{{{tag}}}:{WORKFLOW_STREAM}"
        assert keys.workflow_dlq == f"{{{tag}}}:{WORKFLOW_DLQ}"
        client: Any = bus.client
        with anyio.fail_after(20):
            result = await bus.publish("TICKET_CREATED", ticket_created(), channel=None)
            original = {"event_id": result.event_id, "event_type": "TICKET_CREATED"}
            dl_fields = {"original_message": json.dumps(original), "error_message": "boom", "original_id": "1-0"}
            dl_id = (await client.xadd(keys.workflow_dlq, dl_fields)).decode()

            report = await ops.status(bus)  # bus status and the dashboard's overview
            (wf,) = [r for r in report.rows if r.kind == "workflow"]
            assert (wf.stream.stream, wf.dead_letter_stream) == (keys.workflow_stream, keys.workflow_dlq)
            assert wf.stream.length == 1 and wf.stream.dead_letter_length == 1

            assert keys.workflow_dlq in await ops.dead_letter_streams(bus)  # bus dlq list
            for name in (WORKFLOW_STREAM, WORKFLOW_DLQ):  # the names operators type
                assert ops.dead_letter_stream_of(keys, name) == keys.workflow_dlq
            (view,) = await ops.find_dead_letters(bus, [dl_id], stream=WORKFLOW_STREAM)
            assert (view.dead_letter_stream, view.source_stream) == (keys.workflow_dlq, keys.workflow_stream)

            assert ops.stream_of(keys, WORKFLOW_STREAM) == keys.workflow_stream  # bus tail workflow:events:global
            tailed = [e async for e in ops.tail(bus, ops.stream_of(keys, WORKFLOW_STREAM), count=5)]
            assert [e.id for e in tailed] == [result.entries[keys.workflow_stream]]

            app = dashboard_app(bus, DashboardSettings())
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
                overview = (await http.get("/")).text
                stream_page = await http.get("/stream", params={"key": keys.workflow_stream})
                dead_letters = (await http.get("/dead-letters")).text
        assert keys.workflow_stream in overview and stream_page.status_code == 200
        assert keys.workflow_dlq in dead_letters and dl_id in dead_letters
