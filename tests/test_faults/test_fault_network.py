"""Network faults between the bus and Redis (through the fault proxy), and Redis restarts."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest
from faultlib import FaultProxy, FaultRedis, Ledger, Procs
from faultlib.cluster import (
    BLOCK_S,
    CLAIM_IDLE_S,
    EVENT_TYPE,
    READ_TIMEOUT_S,
    RECLAIM_INTERVAL_S,
    SOCKET_TIMEOUT_S,
    Subscribers,
    fast_bus,
    publish_recorded,
    wait_drained,
)

from bus import Keys

pytestmark = pytest.mark.fault

STREAM = Keys().stream("global", EVENT_TYPE)
#: The consume loop's reconnect backoff cap (bus/_consume.py RECONNECT_MAX_S).
RECONNECT_MAX_S = 2.0


async def test_connection_resets_every_2s_lose_nothing(
    fault_redis: FaultRedis, proxy: FaultProxy, ledger: Ledger, procs: Procs
) -> None:
    """Every connection (publisher and subscriber) reset every 2 s while events flow: lost 0,
    nothing unexpected, nothing handled twice, pending 0 after drain."""
    subs = Subscribers(procs, ledger)
    subs.start("sub-a", proxy.url)
    subs.start("sub-b", proxy.url)
    resets = 0
    async with fast_bus(proxy.url) as bus:

        async def reset_every_2s() -> None:
            nonlocal resets
            while True:
                await anyio.sleep(2)
                proxy.reset()
                resets += 1

        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reset_every_2s)
                ids = await publish_recorded(bus, ledger, 300, pause_s=0.025)
                tg.cancel_scope.cancel()
    assert resets >= 3
    verdict = wait_drained(ledger, fault_redis, subscribers=subs, expected=ids, timeout_s=30)
    assert verdict.ok, verdict


async def test_blackhole_is_noticed_and_recovered(
    fault_redis: FaultRedis, proxy: FaultProxy, ledger: Ledger, procs: Procs
) -> None:
    """A blackholed link: the subscriber notices within socket timeout + BLOCK (gives up its
    connection), and after heal handles what was published meanwhile and what comes next."""
    subs = Subscribers(procs, ledger)
    subs.start("sub-a", proxy.url)
    direct = fast_bus(fault_redis.url)
    async with direct:
        with anyio.fail_after(10):
            before = await publish_recorded(direct, ledger, 5)
        ledger.wait_done(5, timeout_s=10)
        blackholed_at = time.monotonic()
        proxy.blackhole()
        with anyio.fail_after(10):
            during = await publish_recorded(direct, ledger, 5)
        noticed = proxy.wait_event("client_closed", blackholed_at, timeout_s=SOCKET_TIMEOUT_S + BLOCK_S + 5)
        assert noticed.at - blackholed_at <= SOCKET_TIMEOUT_S + BLOCK_S, "the subscriber did not notice in time"
        await anyio.sleep(max(0.0, blackholed_at + 4 - time.monotonic()))
        assert ledger.count_done() == 5  # nothing passed the blackhole
        proxy.heal()
        healed_at = time.time()
        with anyio.fail_after(10):
            after = await publish_recorded(direct, ledger, 5)
    recovery_bound_s = READ_TIMEOUT_S + RECONNECT_MAX_S + CLAIM_IDLE_S + 2 * RECLAIM_INTERVAL_S
    verdict = wait_drained(
        ledger, fault_redis, subscribers=subs, expected=before + during + after, timeout_s=recovery_bound_s + 5
    )
    assert verdict.ok, verdict
    late = max(h.at for h in ledger.handlings()) - healed_at
    assert late <= recovery_bound_s, f"recovered {late:.2f} s after heal (bound {recovery_bound_s} s)"


async def test_redis_sigkill_restart_same_port_and_dir(
    make_fault_redis: Callable[..., FaultRedis], ledger: Ledger, procs: Procs
) -> None:
    """Redis SIGKILLed and restarted on the same port and dir (AOF fsync always) while events
    flow: publishers and subscribers reconnect by themselves; lost 0, pending 0."""
    server = make_fault_redis(appendfsync="always")
    subs = Subscribers(procs, ledger)
    subs.start("sub-a", server.url)
    subs.start("sub-b", server.url)
    async with fast_bus(server.url) as bus:

        async def restart_twice() -> None:
            for _ in range(2):
                await anyio.sleep(1.5)
                await anyio.to_thread.run_sync(server.kill)
                await anyio.sleep(0.5)
                await anyio.to_thread.run_sync(server.start)

        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                tg.start_soon(restart_twice)
                ids = await publish_recorded(bus, ledger, 200, pause_s=0.02)
    verdict = wait_drained(ledger, server, subscribers=subs, expected=ids, timeout_s=30)
    assert not verdict.lost and not verdict.unexpected and verdict.pending == 0, verdict
    assert not verdict.duplicated, verdict


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
