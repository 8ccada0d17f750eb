"""Network faults between the bus and Redis, through the fault proxy: resets, a blackhole, lost replies."""

from __future__ import annotations

import time

import anyio
import pytest
import redis.asyncio as aioredis
from faultlib import FaultProxy, FaultRedis, Ledger, Procs
from faultlib.cluster import (
    BLOCK_S,
    CLAIM_IDLE_S,
    EVENT_TYPE,
    GUARD_ENV,
    LOAD_SLACK_S,
    READ_TIMEOUT_S,
    RECLAIM_INTERVAL_S,
    SOCKET_TIMEOUT_S,
    Subscribers,
    fast_bus,
    publish_attempts,
    publish_recorded,
    wait_drained,
)

from bus import Keys

pytestmark = pytest.mark.fault

STREAM = Keys().stream("global", EVENT_TYPE)
#: The consume loop's reconnect backoff cap (bus/consume/_retry.py RECONNECT_MAX_S).
RECONNECT_MAX_S = 2.0


async def test_connection_resets_every_2s_lose_nothing(
    fault_redis: FaultRedis, proxy: FaultProxy, ledger: Ledger, procs: Procs
) -> None:
    """Every connection reset every 2 s for 20 s while 5,000 events flow: lost 0, dups 0, no publish call over 10 s."""
    n, period_s, duration_s = 5_000, 2.0, 20.0
    subs = Subscribers(procs, ledger)
    for name in ("sub-a", "sub-b"):
        subs.start(name, proxy.url, env=GUARD_ENV)
    resets = 0
    calls: list[float] = []  # each publish_recorded call, its retries after a reset included
    async with fast_bus(proxy.url) as bus:

        async def reset_every_2s() -> None:
            nonlocal resets
            for _ in range(int(duration_s / period_s)):
                await anyio.sleep(period_s)
                proxy.reset()
                resets += 1

        async def publish_paced() -> list[str]:
            ids: list[str] = []
            t0 = anyio.current_time()
            for i in range(n):
                started = anyio.current_time()
                ids += await publish_recorded(bus, ledger, 1)
                calls.append(anyio.current_time() - started)
                await anyio.sleep(max(0.0, t0 + (i + 1) * duration_s / n - anyio.current_time()))
            return ids

        with anyio.fail_after(50):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reset_every_2s)
                ids = await publish_paced()
    assert resets == int(duration_s / period_s)
    verdict = wait_drained(ledger, fault_redis, subscribers=subs, expected=ids, timeout_s=30)
    assert verdict.ok, verdict
    attempts = publish_attempts(ledger)
    longest = max(seconds for *_, seconds in attempts)
    assert longest <= 10.0, f"a publish call blocked {longest:.2f} s"
    failed = sum(1 for _, outcome, *_ in attempts if outcome != "ok")
    print(
        f"{n} events, {resets} resets, {failed} failed attempts; longest call {longest:.3f} s, "
        f"longest publish with retries {max(calls):.3f} s; {verdict}"
    )


async def test_blackhole_is_noticed_and_recovered(
    fault_redis: FaultRedis, proxy: FaultProxy, ledger: Ledger, procs: Procs
) -> None:
    """A 15 s blackhole: the publisher and both subscribers notice within socket timeout + BLOCK, recover; lost 0.

    Each bound has LOAD_SLACK_S added, so that a busy machine's scheduling delays do not fail it.
    """
    hole_s, notice_bound_s = 15.0, SOCKET_TIMEOUT_S + BLOCK_S + LOAD_SLACK_S
    recovery_bound_s = READ_TIMEOUT_S + RECONNECT_MAX_S + CLAIM_IDLE_S + 2 * RECLAIM_INTERVAL_S + LOAD_SLACK_S
    subs = Subscribers(procs, ledger)
    names = ("sub-a", "sub-b")
    for name in names:
        subs.start(name, proxy.url, env=GUARD_ENV)
    async with fast_bus(proxy.url) as bus:
        with anyio.fail_after(10):
            before = await publish_recorded(bus, ledger, 20)
        ledger.wait_done(20, timeout_s=10)
        blackholed_at = time.time()
        proxy.blackhole()
        done_in_hole = -1
        with anyio.fail_after(hole_s + 30):
            async with anyio.create_task_group() as tg:

                async def heal_later() -> None:
                    nonlocal done_in_hole
                    await anyio.sleep(max(0.0, blackholed_at + hole_s - time.time()))
                    done_in_hole = ledger.count_done()
                    proxy.heal()

                tg.start_soon(heal_later)
                # Published during the hole: retried with the same id until the link is back.
                during = await publish_recorded(bus, ledger, 3, give_up_after_s=hole_s + 20)
            healed_at = blackholed_at + hole_s
            after = await publish_recorded(bus, ledger, 100, pause_s=0.05)  # 5 s of events after the heal
    failures = [p.at for p in ledger.publishes() if p.at > blackholed_at and p.outcome in ("unknown", "fail")]
    publisher_noticed = min(failures)
    assert publisher_noticed - blackholed_at <= notice_bound_s, (
        f"publisher noticed after {publisher_noticed - blackholed_at:.2f} s"
    )
    assert done_in_hole == len(before), "something passed the blackhole"
    noticed: dict[str, float] = {}
    for name in names:  # the subscriber's watcher marks "reconnect" when its bus counted a transport failure
        marks = [at for _, event, _, at in ledger.marks(name) if event == "reconnect" and at > blackholed_at]
        assert marks, f"{name} never noticed the blackhole"
        noticed[name] = marks[0] - blackholed_at
        assert noticed[name] <= notice_bound_s, f"{name} noticed after {noticed[name]:.2f} s"
    ids = before + during + after
    verdict = wait_drained(ledger, fault_redis, subscribers=subs, expected=ids, timeout_s=recovery_bound_s + 10)
    assert verdict.ok, verdict
    ok_after_heal = min(p.at for p in ledger.publishes() if p.outcome == "ok" and p.at > healed_at)
    assert ok_after_heal - healed_at <= SOCKET_TIMEOUT_S + 1.0 + LOAD_SLACK_S, (
        f"publisher recovered after {ok_after_heal - healed_at:.2f} s"
    )
    rows = ledger.handlings(phase="begin")
    for name in names:  # each subscriber handles events it read after the heal
        first = min((h.at for h in rows if h.consumer == name and h.at > healed_at), default=None)
        assert first is not None and first - healed_at <= recovery_bound_s, f"{name} did not recover in time"
    seen = ", ".join(f"{name} {at:.2f} s" for name, at in noticed.items())
    print(
        f"blackhole {hole_s} s noticed by {seen}, publisher {publisher_noticed - blackholed_at:.2f} s; "
        f"publisher recovered {ok_after_heal - healed_at:.2f} s after heal; {verdict}"
    )


async def test_lost_publish_replies_are_republished_and_handled_once(
    fault_redis: FaultRedis, proxy: FaultProxy, ledger: Ledger, procs: Procs
) -> None:
    """XADD replies dropped on the way back: the publisher gets an unknown outcome, publishes the
    same event id again, and the subscriber handles each event exactly once (duplicate entries
    are skipped by event id); lost 0, pending 0."""
    subs = Subscribers(procs, ledger)
    subs.start("sub-a", fault_redis.url)
    ids: list[str] = []
    async with fast_bus(proxy.url, socket_timeout_s=0.5) as bus:
        with anyio.fail_after(30):
            for n in range(20):
                if n % 4 == 0:
                    proxy.drop_next_reply()
                ids += await publish_recorded(bus, ledger, 1)
    unknown = [p for p in ledger.publishes() if p.outcome == "unknown"]
    assert len(unknown) == 5, ledger.publishes()
    verdict = wait_drained(ledger, fault_redis, subscribers=subs, expected=ids, timeout_s=15)
    assert verdict.ok, verdict
    with fault_redis.client() as r:
        assert r.xlen(STREAM) == 25  # every lost reply left an entry that was written twice


async def test_reads_resume_after_a_reset_on_a_slow_link(fault_redis: FaultRedis, proxy: FaultProxy) -> None:
    """Behind a proxy adding 200 ms each way (BLOCK 1 s, read timeout 1.6 s, which settings accept), a reset
    reader reconnects outside its read timeout and reads new entries again: each handled once, none by
    reclaim, and an entry written once it is back is read within one read timeout."""
    from bus import EventBus
    from bus.testing import Recorder, fast_settings, ticket_created_payload, xadd_reference

    read_timeout_s = 1.6
    settings = fast_settings(
        proxy.url,
        block_ms=1000,
        read_timeout_s=read_timeout_s,
        socket_timeout_s=5.0,
        connect_timeout_s=5.0,
        claim_idle_ms=120_000,  # nothing reaches the handler through reclaim during the test
        reclaim_interval_s=60.0,
    )

    async def publish(bus: EventBus) -> str:
        """XADD one TICKET_CREATED straight to Redis (not through the proxy); returns the event id."""
        client = aioredis.Redis(port=fault_redis.port)
        try:
            return (await xadd_reference(client, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys))[1]
        finally:
            await client.aclose()

    async with EventBus(settings) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        async with anyio.create_task_group() as tg:
            with anyio.fail_after(20):
                await tg.start(bus.run)
                ids = [await publish(bus)]
                await recorder.wait(1)
            proxy.delay(200)
            proxy.reset()
            with anyio.fail_after(20):  # reconnect (a handshake of several 400 ms round trips), then read
                ids.append(await publish(bus))
                await recorder.wait(2)
            consumer = bus.consumer
            assert consumer is not None
            ids.append(await publish(bus))
            with anyio.fail_after(read_timeout_s):  # read (not yet handled) within one read timeout
                await consumer.wait_until(lambda s: s.read >= 3)
            with anyio.fail_after(20):
                await recorder.wait(3)
            tg.cancel_scope.cancel()
    assert recorder.event_ids == ids
    assert bus.stats.reclaimed == 0 and bus.stats.reconnects >= 1
