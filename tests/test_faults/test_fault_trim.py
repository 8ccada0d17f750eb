"""Trimming under load (issue #7): a million events through a capped stream, and a consumer too
slow for the cap under both trim policies. The subscriber runs as its own OS process
(:mod:`faultlib.loadsub`) on a private redis-server without AOF (a million entries through the
disk would measure the disk, not the bus)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from faultlib import FaultRedis, Ledger, Procs
from faultlib.cluster import EVENT_TYPE, GROUP, fast_bus, ticket_created
from faultlib.loadsub import rss_bytes, start_load_subscriber, wait_status

from bus import Delivery, Keys
from bus.testing import wait_for_stats

pytestmark = pytest.mark.fault

#: Events of the big run: the spec's number, which fits: measured on this 2-core machine 14-26 s
#: with the machine to itself, 41-48 s while other test suites ran beside it (publisher, consumer
#: and Redis share the 2 cores), and over 57 s beside a second full CI run. The run's deadline
#: only catches a stall, so it leaves room for a loaded machine.
MILLION = 1_000_000
#: The cap of the big run. ``MAXLEN ~`` trims whole radix-tree nodes only, so a stream may hold up
#: to one node (``stream-node-max-entries`` = 100 entries, fewer when ``stream-node-max-bytes``
#: 4 KB fills first) beyond the cap: ``cap + 1%`` holds for every node size only when 1% of the cap
#: is at least 100 entries, i.e. a cap of 10,000 or more.
CAP = 10_000
PUBLISH_BATCH = 1000
#: A channel of its own: ``global`` would add a workflow entry to every publish.
CHANNEL = "trim-load"
STREAM = Keys().stream(CHANNEL, EVENT_TYPE)
MARKERS = Keys().marker_events("tenant-faults")


def _group(r: redis.Redis, stream: str) -> dict[str, Any]:
    groups: Any = r.xinfo_groups(stream)
    return next(g for g in groups if g["name"] == GROUP.encode() or g["name"] == GROUP)


def _memory(r: redis.Redis, pid: int) -> dict[str, int]:
    info: Any = r.info("memory")
    return {
        "used_memory": int(info["used_memory"]),
        # everything but the dataset, plus the stream itself: what trimming is meant to bound.
        # Client buffers are left out: they hold whatever request or reply is in flight at the
        # moment of sampling (a 1,000-event pipeline is ~1 MB), not what Redis keeps.
        "without_markers": int(info["used_memory"])
        - int(info["used_memory_dataset"])
        - int(info.get("mem_clients_normal", 0))
        + _usage(r, STREAM),
        "stream": _usage(r, STREAM),
        "markers": _usage(r, MARKERS),
        "consumer_rss": rss_bytes(pid),
    }


def _done(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda s: bool(s["done"] == n)


def _usage(r: redis.Redis, key: str) -> int:
    return int(r.memory_usage(key, samples=0) or 0)


async def test_million_events_stream_stays_capped_and_memory_flat(
    make_fault_redis: Any, procs: Procs, tmp_path: Path
) -> None:
    """1,000,000 events (publish_many x 1,000, MAXLEN ~ 10,000), the consumer keeping up: XLEN
    never above cap + 1%, nothing trimmed unread, Redis memory apart from the dedupe markers and
    the consumer's RSS flat within 5% between 100k and 1M."""
    server: FaultRedis = make_fault_redis(appendonly=False)
    status = tmp_path / "status.json"
    env = {"FAULT_CHANNEL": CHANNEL, "REDIS_STREAM_MAX_LENGTH": str(CAP), "REDIS_STREAM_BATCH_SIZE": "1000"}
    # As in the hostile-input test: glibc's dynamic mmap threshold lets the ~1 MB reply buffers of
    # 1,000-entry reads stay on the heap after they are freed, so RSS would show a high-water mark
    # of transient buffers rather than what the consumer holds. A fixed threshold returns them.
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    child = start_load_subscriber(procs, "sub-trim", server.url, status, env)
    samples: list[int] = []
    waits = 0
    checkpoints: dict[int, dict[str, int]] = {}
    started = time.monotonic()
    with server.client() as r:
        async with fast_bus(server.url, max_len=CAP) as bus:
            items = [(EVENT_TYPE, ticket_created())] * PUBLISH_BATCH  # ids differ: one per event
            client = bus.client
            with anyio.fail_after(240):
                for published in range(PUBLISH_BATCH, MILLION + 1, PUBLISH_BATCH):
                    await bus.publish_many(items, channel=CHANNEL)
                    while True:  # a consumer keeping up: at most half a cap outstanding
                        stream: Any = await client.xinfo_stream(STREAM)
                        group: Any = (await client.xinfo_groups(STREAM))[0]
                        samples.append(int(stream["length"]))
                        outstanding = int(stream["entries-added"]) - int(group["entries-read"]) + int(group["pending"])
                        if outstanding <= CAP // 2:
                            break
                        waits += 1
                        await anyio.sleep(0.005)
                    if published in (100_000, MILLION):
                        wait_status(status, _done(published), 60, child=child, what=f"{published} handled")
                        checkpoints[published] = _memory(r, child.pid)
        elapsed = time.monotonic() - started
        final = wait_status(status, lambda s: s["stats"].get("acked") == MILLION, 60, child=child)
        at_100k, at_1m = checkpoints[100_000], checkpoints[MILLION]
        cards = int(r.scard(MARKERS))
    longest = max(samples)
    print(
        f"1M: {elapsed:.1f} s ({MILLION / elapsed:,.0f} events/s, {waits} waits for the consumer); XLEN max "
        f"{longest} over {len(samples)} samples (cap {CAP}); at 100k / 1M: "
        + ", ".join(f"{k} {at_100k[k] / 2**20:.1f} / {at_1m[k] / 2**20:.1f} MB" for k in at_100k)
        + f"; dedupe markers {cards:,} members, {(at_1m['markers'] - at_100k['markers']) / 900_000:.0f} B/event"
    )
    assert final["done"] == MILLION and final["calls"] == MILLION
    assert final["stats"]["trimmed_unread"] == 0 and final["stats"]["trimmed_pending"] == 0
    assert longest <= CAP * 1.01, f"XLEN reached {longest}"
    assert min(samples[len(samples) // 10 :]) >= CAP * 0.99  # trimmed to the cap, not far below it
    for key in ("without_markers", "stream", "consumer_rss"):
        assert abs(at_1m[key] - at_100k[key]) <= 0.05 * at_100k[key], (key, at_100k[key], at_1m[key])
    # What is not flat: one dedupe marker per event, kept for marker_ttl_s (see the xfail below).
    assert cards == MILLION


@pytest.mark.parametrize("policy", ["approx", "safe"])
async def test_slow_consumer_loses_nothing_when_safe_and_counts_every_drop_when_approx(
    make_fault_redis: Any, ledger: Ledger, ledger_path: Path, procs: Procs, tmp_path: Path, policy: str
) -> None:
    """A consumer far slower than the publisher (cap 1,000, 6,000 events): under trim_policy
    "safe" nothing is lost before delivery; under "approx" the dropped count the consumer and
    status() report equals the true one (published minus handled)."""
    cap, count, channel = 1000, 6000, "trim-slow"
    stream = Keys().stream(channel, EVENT_TYPE)
    server: FaultRedis = make_fault_redis(appendonly=False)
    status = tmp_path / "status.json"
    env = {
        "FAULT_LEDGER": str(ledger_path),
        "FAULT_CHANNEL": channel,
        "FAULT_WORK_MS": "1",
        "BUS_CONCURRENCY": "1",
        "REDIS_STREAM_BATCH_SIZE": "10",
        "REDIS_STREAM_MAX_LENGTH": str(cap),
        "BUS_TRIM_POLICY": policy,
    }
    child = start_load_subscriber(procs, "sub-slow", server.url, status, env)
    ids: list[str] = []
    lengths: list[int] = []
    async with fast_bus(server.url, max_len=cap, trim_policy=policy) as bus:
        with anyio.fail_after(20):
            for _ in range(count // 500):
                results = await bus.publish_many([(EVENT_TYPE, ticket_created())] * 500, channel=channel)
                ids += [res.event_id for res in results]
                lengths.append(int(await bus.client.xlen(stream)))

        def settled(s: dict[str, Any]) -> bool:
            st = s["stats"]
            return bool(s["done"] + st.get("trimmed_unread", 0) + st.get("trimmed_pending", 0) == count)

        final = wait_status(status, settled, 40, child=child, what="every event handled or counted as dropped")
        with server.client() as r:
            group = _group(r, stream)
            last: Any = r.xrevrange(stream, count=1)
            # Nothing pending, nothing unread (Redis 7.0's own lag would count the trimmed entries).
            assert int(group["pending"]) == 0 and group["last-delivered-id"] == last[0][0]
        view = await bus.status(channel=channel)
    handled = {h.event_id for h in ledger.handlings()}
    assert handled <= set(ids)
    assert len(ledger.handlings()) == len(handled)  # each once
    true_dropped = count - len(handled)
    stats = final["stats"]
    reported = stats["trimmed_unread"] + stats["trimmed_pending"]
    print(
        f"{policy}: handled {len(handled)}, dropped {true_dropped} (reported {reported}: {stats['trimmed_unread']} "
        f"unread + {stats['trimmed_pending']} pending; status() {view.trimmed_unread}); XLEN after each publish "
        f"batch max {max(lengths)}; safely trimmed {stats['safely_trimmed']}"
    )
    if policy == "safe":
        assert true_dropped == 0 and reported == 0
        assert max(lengths) > cap  # the price: the stream grows while the consumer lags
        with server.client() as r:
            _wait_trimmed_back(r, stream, cap)
    else:
        assert true_dropped > count // 2  # the consumer really fell behind the cap
        assert reported == true_dropped
        assert view.trimmed_unread == stats["trimmed_unread"]
        assert max(lengths) <= cap + 100


def _wait_trimmed_back(r: redis.Redis, stream: str, cap: int, timeout_s: float = 10) -> None:
    """Block until the consumer's safe trimming brought ``stream`` back to ``cap`` entries."""
    deadline = time.monotonic() + timeout_s
    while (length := int(r.xlen(stream))) > cap:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stream} still holds {length} entries (cap {cap}) after {timeout_s} s")
        time.sleep(0.05)


async def test_dedupe_markers_expire_under_continuous_traffic(fault_redis: FaultRedis) -> None:
    """With marker_ttl_s = 1 and an event every 50 ms, the first event's marker is gone 3 s later (sets rotate)."""
    async with fast_bus(fault_redis.url, marker_ttl_s=1) as bus:
        handled: list[str] = []

        async def handler(delivery: Delivery) -> None:
            handled.append(delivery.event_id)

        bus.subscribe(EVENT_TYPE, handler)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            first = str(uuid.uuid4())
            await bus.publish(EVENT_TYPE, ticket_created(), event_id=first)
            with anyio.fail_after(10):
                for _ in range(60):
                    await bus.publish(EVENT_TYPE, ticket_created())
                    await anyio.sleep(0.05)
                await wait_for_stats(bus, lambda s: s.handled == 61)
            members: Any = await bus.client.smembers(MARKERS)
            previous: Any = await bus.client.smembers(f"{MARKERS}:prev")
            tg.cancel_scope.cancel()
    assert first in handled
    held = [m.decode() for m in (*members, *previous)]
    assert not any(m.endswith(first) for m in held), f"{len(held)} markers still held"
    # Two TTLs' worth at most (about 40 events of the last 2 s), never all 61.
    assert len(held) < 61
