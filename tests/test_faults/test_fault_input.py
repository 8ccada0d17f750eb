"""Bad input (issue #7): poison events, duplicates, invalid and oversized publishes, raw garbage
and hostile entries a foreign writer XADDs. Subscribers run as their own OS processes
(:mod:`faultlib.loadsub`) on a private redis-server; nothing may be lost silently and nothing
may stop the consumer."""

from __future__ import annotations

import hashlib
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from faultlib import FaultRedis, Ledger, Procs
from faultlib.cluster import EVENT_TYPE, GROUP, fast_bus, ticket_created
from faultlib.hostile import GARBAGE, HOSTILE, Hostile
from faultlib.loadsub import rss_bytes, start_load_subscriber, wait_status

from bus import Delivery, Keys, PayloadTooLargeError, PayloadValidationError
from bus._codec import encode_envelope
from bus.testing import wait_for_stats

pytestmark = pytest.mark.fault

STREAM = Keys().stream("global", EVENT_TYPE)
DEAD = Keys.dead_letter(STREAM)
WORKFLOW = "workflow:events:global"


def _dead_letters(server: FaultRedis) -> list[dict[bytes, bytes]]:
    with server.client() as r:
        return [fields for _, fields in r.xrange(DEAD)]


def _lengths(server: FaultRedis) -> tuple[int, int]:
    with server.client() as r:
        return int(r.xlen(STREAM)), int(r.xlen(WORKFLOW))


async def test_poison_event_dead_lettered_after_max_deliveries_while_good_events_flow(
    fault_redis: FaultRedis, ledger: Ledger, ledger_path: Path, procs: Procs, tmp_path: Path
) -> None:
    """A poison event among 1,000 good ones: dead-lettered after exactly max deliveries with a
    SHA-256-identical event, acked, 1 dead letter; the good ones' p99 publish->handled < 2 s."""
    max_deliveries, retries, good = 5, 2, 1000
    poison_ticket = str(uuid.uuid4())
    status = tmp_path / "status.json"
    env = {
        "FAULT_LEDGER": str(ledger_path),
        "FAULT_POISON": poison_ticket,
        "REDIS_STREAM_MAX_DELIVERIES": str(max_deliveries),
        "BUS_HANDLER_RETRIES": str(retries),
    }
    child = start_load_subscriber(procs, "sub-poison", fault_redis.url, status, env)
    published_at: dict[str, float] = {}
    async with fast_bus(fault_redis.url) as bus:
        with anyio.fail_after(30):
            poison = await bus.publish(EVENT_TYPE, {**ticket_created(), "ticketId": poison_ticket})
            for _ in range(good):  # spread over the poison's retries (~2.5 s between deliveries)
                event_id = str(uuid.uuid4())
                published_at[event_id] = time.time()
                await bus.publish(EVENT_TYPE, ticket_created(), event_id=event_id)
                await anyio.sleep(0.008)
    final = wait_status(
        status,
        lambda s: s["stats"].get("dead_lettered") == 1 and s["done"] == good and s["stats"]["acked"] == good + 1,
        timeout_s=30,
        child=child,
        what="poison dead-lettered and every good event handled",
    )
    assert fault_redis.pending(GROUP) == 0
    entry_id = poison.entries[STREAM]
    with fault_redis.client() as r:
        original = r.xrange(STREAM, entry_id, entry_id)[0][1][b"event"]
    dead = _dead_letters(fault_redis)
    assert len(dead) == 1
    assert hashlib.sha256(dead[0][b"event"]).hexdigest() == hashlib.sha256(original).hexdigest()
    assert dead[0][b"deadLetterReason"] == b"max-deliveries"
    assert dead[0][b"deliveries"] == str(max_deliveries).encode()
    assert dead[0][b"sourceMessageId"] == entry_id.encode()
    assert b"PoisonError" in dead[0][b"lastError"]
    begins = [h for h in ledger.handlings(phase="begin") if h.event_id == poison.event_id]
    assert sorted({h.delivery for h in begins}) == list(range(1, max_deliveries + 1))
    assert len(begins) == final["poison_calls"] == max_deliveries * (1 + retries)
    verdict = ledger.verdict(expected=list(published_at))
    assert not verdict.lost and not verdict.duplicated, verdict
    done = {h.event_id: h.at for h in ledger.handlings() if h.event_id in published_at}
    latencies = sorted(done[e] - published_at[e] for e in published_at)
    p99 = statistics.quantiles(latencies, n=100)[98]
    first, last = min(h.at for h in begins), max(h.at for h in begins)
    during = sum(1 for at in done.values() if first <= at <= last)
    print(
        f"poison: {len(begins)} calls over {last - first:.1f} s; good p50 {latencies[500] * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms; {during} handled during the retries"
    )
    assert during >= good // 2  # the good events really flowed while the poison retried
    assert p99 < 2.0, f"p99 {p99:.3f} s"


@pytest.mark.parametrize("how", ["same-event-id", "same-idempotency-key"])
async def test_each_event_published_twice_is_handled_once(
    fault_redis: FaultRedis, ledger: Ledger, ledger_path: Path, procs: Procs, tmp_path: Path, how: str
) -> None:
    """1,000 events each published twice inside the dedupe window (same event id, or same
    idempotency key): side effects exactly 1,000, nothing pending."""
    count = 1000
    status = tmp_path / "status.json"
    child = start_load_subscriber(procs, "sub-dupes", fault_redis.url, status, {"FAULT_LEDGER": str(ledger_path)})
    ids: list[str] = []
    duplicates_reported = 0
    async with fast_bus(fault_redis.url) as bus:
        with anyio.fail_after(30):
            for _ in range(0, count, 50):
                batch = [(str(uuid.uuid4()), ticket_created()) for _ in range(50)]
                ids += [e for e, _ in batch]
                if how == "same-event-id":  # both copies in one round trip: read in one batch
                    prepared = [bus.prepare(EVENT_TYPE, p, event_id=e) for e, p in batch for _ in range(2)]
                    await bus.write(prepared)
                else:
                    for e, p in batch:
                        key = f"dupe-test:{e}"
                        first = await bus.publish(EVENT_TYPE, p, event_id=e, idempotency_key=key)
                        again = await bus.publish(EVENT_TYPE, p, event_id=str(uuid.uuid4()), idempotency_key=key)
                        assert not first.duplicate and again.event_id == e
                        duplicates_reported += again.duplicate
    written = 2 * count if how == "same-event-id" else count
    final = wait_status(status, lambda s: s["stats"].get("acked", 0) >= written, 30, child=child, what="all acked")
    await anyio.sleep(0.3)  # let late duplicates show
    entries, _ = _lengths(fault_redis)
    assert entries == written
    assert fault_redis.pending(GROUP) == 0
    done = Counter(h.event_id for h in ledger.handlings())
    assert sum(done.values()) == count, f"{sum(done.values())} side effects for {count} events"
    assert max(done.values()) == 1 and set(done) == set(ids)
    if how == "same-event-id":
        assert final["stats"]["duplicates"] == count
    else:
        assert duplicates_reported == count  # the second publish wrote nothing


Breaker = Callable[[dict[str, Any]], dict[str, Any]]
#: ``(kind, how it breaks a valid payload, the JSON path the error must name)``.
INVALID: list[tuple[str, Breaker, str]] = [
    ("missing-field", lambda p: {k: v for k, v in p.items() if k != "ticketId"}, "$.payload.ticketId"),
    ("wrong-type", lambda p: {**p, "ticketId": 123}, "$.payload.ticketId"),
    ("bad-uuid", lambda p: {**p, "ticketId": "not-a-uuid"}, "$.payload.ticketId"),
    ("offset", lambda p: {**p, "occurredAt": "2026-01-02T03:04:05+00:00"}, "$.payload.occurredAt"),
    ("naive", lambda p: {**p, "occurredAt": "2026-01-02T03:04:05"}, "$.payload.occurredAt"),
    ("unknown-enum", lambda p: {**p, "actorType": "ROBOT"}, "$.payload.actorType"),
]


async def test_invalid_publishes_are_refused_with_the_json_path(fault_redis: FaultRedis) -> None:
    """Six kinds of invalid payload, alone and as item 37 of a batch of 100: the error names the
    JSON path and nothing is written (stream and workflow stream lengths unchanged)."""
    async with fast_bus(fault_redis.url) as bus:
        await bus.publish(EVENT_TYPE, ticket_created())  # the streams exist
        before = _lengths(fault_redis)
        for kind, breaks, path in INVALID:
            with pytest.raises(PayloadValidationError) as alone:
                await bus.publish(EVENT_TYPE, breaks(ticket_created()))
            assert alone.value.path == path, (kind, str(alone.value))
            assert path in str(alone.value)
            items = [(EVENT_TYPE, ticket_created()) for _ in range(100)]
            items[37] = (EVENT_TYPE, breaks(ticket_created()))
            with pytest.raises(PayloadValidationError) as batch:
                await bus.publish_many(items)
            assert batch.value.path == "$[37]" + path[1:], (kind, str(batch.value))
            assert _lengths(fault_redis) == before, kind
        assert bus.publisher.round_trips == 1  # only the first, valid publish reached Redis


async def test_raw_garbage_is_dead_lettered_after_one_attempt(
    fault_redis: FaultRedis, procs: Procs, tmp_path: Path
) -> None:
    """Raw garbage XADDed by a foreign writer (8 kinds): each dead-lettered as invalid after 1
    attempt with its reason, acked; the consumer stays alive and handles the next good event."""
    status = tmp_path / "status.json"
    child = start_load_subscriber(procs, "sub-garbage", fault_redis.url, status)
    with fault_redis.client() as r:
        entry_ids = {r.xadd(STREAM, fields).decode(): (kind, reason) for kind, fields, reason in GARBAGE}
    n = len(GARBAGE)
    wait_status(status, lambda s: s["stats"].get("dead_lettered") == n, 15, child=child, what="garbage dead-lettered")
    async with fast_bus(fault_redis.url) as bus:
        await bus.publish(EVENT_TYPE, ticket_created())
    final = wait_status(status, lambda s: s["done"] == 1, 15, child=child, what="the next good event handled")
    assert child.alive
    assert final["calls"] == 1  # no handler ever saw the garbage
    assert final["stats"]["invalid"] == n and final["stats"]["failed"] == 0
    assert fault_redis.pending(GROUP) == 0
    dead = _dead_letters(fault_redis)
    assert len(dead) == n
    for fields in dead:
        kind, reason = entry_ids[fields[b"sourceMessageId"].decode()]
        assert fields[b"deadLetterReason"] == b"invalid", kind
        assert fields[b"deliveries"] == b"1", kind
        assert reason in fields[b"lastError"].decode(), (kind, fields[b"lastError"])


async def test_oversized_and_hostile_publishes_are_refused_before_any_write(fault_redis: FaultRedis) -> None:
    """An event of exactly max_payload_bytes is written, one byte more is PayloadTooLargeError
    (alone or in a batch); 10,000-deep nesting, a 2,000,000-char field and a 5,000-digit number
    are refused too; nothing of a refused publish is written."""
    async with fast_bus(fault_redis.url) as bus:
        cap = bus.settings.max_payload_bytes
        event_id, timestamp = str(uuid.uuid4()), "2026-01-02T03:04:05.678Z"

        def sized(size: int) -> dict[str, Any]:
            payload = {**ticket_created(), "note": ""}
            base = len(encode_envelope(event_id, EVENT_TYPE, timestamp, bus.registry.validate(EVENT_TYPE, payload)))
            return {**payload, "note": "x" * (size - base)}

        exact = await bus.publish(EVENT_TYPE, sized(cap), event_id=event_id, timestamp=timestamp)
        with fault_redis.client() as r:
            assert len(r.xrange(STREAM, exact.entries[STREAM], exact.entries[STREAM])[0][1][b"event"]) == cap
        before = _lengths(fault_redis)
        trips = bus.publisher.round_trips
        with pytest.raises(PayloadTooLargeError, match=f"is {cap + 1} bytes, over max_payload_bytes"):
            await bus.publish(EVENT_TYPE, sized(cap + 1), event_id=event_id, timestamp=timestamp)
        with pytest.raises(PayloadTooLargeError, match=r"event \[3\]"):
            await bus.publish_many([(EVENT_TYPE, ticket_created()) for _ in range(3)] + [(EVENT_TYPE, sized(cap + 1))])
        deep: list[Any] = []
        for _ in range(10_000):
            deep = [deep]
        hostile: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"nested": deep}, PayloadValidationError, "nested too deeply"),
            ({"note": "x" * 2_000_000}, PayloadTooLargeError, "over max_payload_bytes"),
            ({"amount": 10**5000}, PayloadValidationError, "4300 digits"),
        ]
        for extra, error, text in hostile:
            with pytest.raises(error, match=text):
                await bus.publish(EVENT_TYPE, {**ticket_created(), **extra})
        assert _lengths(fault_redis) == before
        assert bus.publisher.round_trips == trips


async def test_hostile_entries_are_dead_lettered_and_consumer_memory_stays_bounded(
    make_fault_redis: Any, procs: Procs, tmp_path: Path
) -> None:
    """1,000 hostile entries XADDed raw after 500 to warm up (10,000-deep nesting, a 2,000,000-char
    field, a 5,000-digit number, NaN, a duplicate tenantId; 200 each): each dead-lettered as invalid
    with its reason after 1 attempt, byte for byte; the consumer lives and its RSS grows < 20 MB."""
    server: FaultRedis = make_fault_redis(appendonly=False)  # 800 MB through the AOF would dominate
    status = tmp_path / "status.json"
    # glibc's mmap threshold fixed at its initial 128 KiB: freed multi-MB buffers go back to the kernel,
    # so RSS shows what the consumer holds. With the default dynamic threshold they stay in the heap
    # and RSS climbs once to a high-water mark of the transient copies (measured: +10 to +27 MB over
    # a cold start, then flat, with 2 MB entries) which says nothing about growth per message.
    env = {"MALLOC_MMAP_THRESHOLD_": "131072"}
    # The freeze that builds each backlog can outlast the fast read timeout on a loaded machine: the
    # read in flight must then be answered after SIGCONT, not reset (its entries would be delivered
    # twice) nor claimed back as idle.
    env |= {"BUS_READ_TIMEOUT_S": "120", "REDIS_STREAM_CLAIM_TIMEOUT": "120000"}
    child = start_load_subscriber(procs, "sub-hostile", server.url, status, env)

    def inject(count: int) -> dict[str, Hostile]:
        """XADD ``count`` hostile entries as one backlog (the consumer frozen meanwhile)."""
        out: dict[str, Hostile] = {}
        child.stop()
        try:
            with server.client() as r:
                for n in range(count):
                    item = HOSTILE[n % len(HOSTILE)]()
                    out[r.xadd(STREAM, {b"event": item.event, b"channel": b"global"}).decode()] = item
        finally:
            child.cont()
        return out

    cold = rss_bytes(child.pid)
    # Both rounds arrive as a backlog (the worst case: full reads, flushes of ~20 dead letters), the
    # warm-up so that caches and buffers of every kind exist before the baseline.
    warm = inject(500)
    wait_status(status, lambda s: s["stats"].get("dead_lettered") == len(warm), 40, child=child, what="warm-up")
    baseline = rss_bytes(child.pid)
    started = time.monotonic()
    sent = inject(1000)
    total = len(warm) + len(sent)
    final = wait_status(
        status, lambda s: s["stats"].get("dead_lettered") == total, 45, child=child, what="1,000 dead-lettered"
    )
    elapsed = time.monotonic() - started
    after = rss_bytes(child.pid)
    assert child.alive
    assert final["calls"] == 0 and final["stats"]["invalid"] == total and final["stats"]["acked"] == total
    assert server.pending(GROUP) == 0
    kinds: Counter[str] = Counter()
    with server.client() as r:
        for _, fields in r.xrange(DEAD):
            item = sent.get(fields[b"sourceMessageId"].decode())
            if item is None:
                continue
            kinds[item.kind] += 1
            assert fields[b"deadLetterReason"] == b"invalid" and fields[b"deliveries"] == b"1", item.kind
            assert item.reason in fields[b"lastError"].decode(), (item.kind, fields[b"lastError"])
            assert fields[b"event"] == item.event, item.kind  # the original, byte for byte
    assert kinds == dict.fromkeys((make().kind for make in HOSTILE), 200)
    growth = after - baseline
    print(
        f"hostile: 1,000 dead-lettered in {elapsed:.1f} s; consumer RSS {cold / 2**20:.1f} MB at start, "
        f"{baseline / 2**20:.1f} MB after 500, {after / 2**20:.1f} MB after 1,500 (growth {growth / 2**20:.1f} MB)"
    )
    assert growth < 20 * 2**20, f"RSS grew {growth / 2**20:.1f} MB"
    async with fast_bus(server.url) as bus:
        await bus.publish(EVENT_TYPE, ticket_created())
    wait_status(status, lambda s: s["done"] == 1, 15, child=child, what="a good event after the hostile ones")


async def test_strict_json_off_keeps_only_the_size_check(fault_redis: FaultRedis) -> None:
    """BUS_STRICT_JSON=false: a duplicate tenantId is handled with the last value and a 5,000-digit
    number under an unknown key is handled; an oversized event is still dead-lettered."""
    tenants: list[str] = []

    async def handler(delivery: Delivery) -> None:
        tenants.append(delivery.tenant_id)

    duplicate, big, huge = (make() for make in (HOSTILE[4], HOSTILE[2], HOSTILE[1]))
    async with fast_bus(fault_redis.url, strict_json=False) as bus:
        bus.subscribe(EVENT_TYPE, handler)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with fault_redis.client() as r:
                for item in (duplicate, big, huge):
                    r.xadd(STREAM, {b"event": item.event, b"channel": b"global"})
            with anyio.fail_after(10):
                stats = await wait_for_stats(bus, lambda s: s.handled + s.dead_lettered == 3)
            tg.cancel_scope.cancel()
    assert (stats.handled, stats.dead_lettered) == (2, 1)
    assert sorted(tenants) == ["tenant-b", "tenant-faults"]  # the duplicate key: its last value, as JSON.parse
    assert b"over max_payload_bytes" in _dead_letters(fault_redis)[0][b"lastError"]
