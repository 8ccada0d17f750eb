"""Redis itself fails: SIGKILL and restart from the AOF, restart without persistence (state lost)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import anyio
import pytest
from faultlib import FaultRedis, Ledger, Procs
from faultlib.cluster import (
    EVENT_TYPE,
    GROUP,
    GUARD_ENV,
    LOAD_SLACK_S,
    Subscribers,
    fast_bus,
    log_lines,
    publish_batches_recorded,
    publish_recorded,
    wait_drained,
)

from bus import Keys

pytestmark = pytest.mark.fault

STREAM = Keys().stream("global", EVENT_TYPE)
#: Publisher and subscribers must work again this long after Redis accepts connections (plus
#: LOAD_SLACK_S, so that a busy machine's scheduling delays do not fail the tests).
RECOVERY_BOUND_S = 5.0 + LOAD_SLACK_S
#: A vanished consumer group must exist again this long after Redis accepts connections (idem).
REGROUP_BOUND_S = 3.0 + LOAD_SLACK_S


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])


async def test_redis_sigkill_restart_from_aof_mid_run(
    make_fault_redis: Callable[..., FaultRedis], ledger: Ledger, procs: Procs
) -> None:
    """Redis SIGKILLed twice under 20,000 events (AOF fsync always): lost 0, all back in 5 s (+ slack), no exits."""
    # appendfsync always: a publish that returned ok is on disk, so it survives the SIGKILL.
    # With everysec Redis may lose up to 1 s of writes it had acknowledged.
    n, batch, duration_s, kill_at_s = 20_000, 50, 10.0, (3.5, 7.0)
    server = make_fault_redis(appendfsync="always")
    subs = Subscribers(procs, ledger)
    names = ("sub-a", "sub-b")
    env = {**GUARD_ENV, "REDIS_STREAM_BATCH_SIZE": "100"}
    children = [subs.start(name, server.url, env=env) for name in names]
    restarted_at: list[float] = []
    async with fast_bus(server.url) as bus:

        async def kill_and_restart() -> None:
            t0 = anyio.current_time()
            for at in kill_at_s:
                await anyio.sleep(max(0.0, t0 + at - anyio.current_time()))
                await anyio.to_thread.run_sync(server.kill)
                await anyio.sleep(0.3)
                await anyio.to_thread.run_sync(server.start)  # returns once it answers PING (AOF loaded)
                restarted_at.append(time.time())

        with anyio.fail_after(55):
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_and_restart)
                ids = await publish_batches_recorded(
                    bus, ledger, n, batch=batch, pause_s=duration_s * batch / n, give_up_after_s=20
                )
    assert len(restarted_at) == len(kill_at_s)
    verdict = wait_drained(ledger, server, subscribers=subs, timeout_s=40)
    assert not verdict.lost and not verdict.unexpected and verdict.pending == 0, verdict
    assert not verdict.duplicated, verdict
    assert len(verdict.expected) == n == len(ids)  # every batch ended ok (republished after a failure)
    rows = ledger.handlings(phase="begin")
    oks = [p.at for p in ledger.publishes() if p.outcome == "ok"]
    recovery: list[str] = []
    for at in restarted_at:
        publisher = min(t for t in oks if t > at) - at
        assert publisher <= RECOVERY_BOUND_S, f"publisher back {publisher:.2f} s after the restart"
        for name in names:  # the first entry written after the restart that this subscriber handled
            first = min(h.at for h in rows if h.consumer == name and _entry_ms(h.entry_id) > at * 1000) - at
            assert first <= RECOVERY_BOUND_S, f"{name} back {first:.2f} s after the restart"
            recovery.append(f"{name} {first:.2f} s")
        recovery.append(f"publisher {publisher:.2f} s")
    for child in children:
        assert child.alive, child.tail()
    print(f"{n} events, {len(restarted_at)} Redis SIGKILLs: back after {', '.join(recovery)}; {verdict}")


async def test_redis_restart_without_persistence_recreates_groups(
    make_fault_redis: Callable[..., FaultRedis], ledger: Ledger, procs: Procs
) -> None:
    """Redis restarted empty: groups back in 3 s (+ slack), later events lost 0, NOGROUP <= 1/s, loss told once."""
    server = make_fault_redis(appendonly=False)  # and no RDB snapshots: a restart starts empty
    subs = Subscribers(procs, ledger)
    names = ("sub-a", "sub-b")
    children = [subs.start(name, server.url) for name in names]
    group_back_at: list[float] = []
    async with fast_bus(server.url) as bus:
        with anyio.fail_after(20):
            before = await publish_recorded(bus, ledger, 100, pause_s=0.005)
        ledger.wait_done(len(before), timeout_s=10)
        await anyio.to_thread.run_sync(server.kill)
        await anyio.to_thread.run_sync(server.start)
        restarted_at = time.time()

        async def watch_group() -> None:
            while True:
                try:
                    server.group_info(STREAM, GROUP)
                except Exception:  # no stream yet, or no group on it yet
                    await anyio.sleep(0.01)
                    continue
                group_back_at.append(time.time())
                return

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_group)
                after = await publish_recorded(bus, ledger, 300, pause_s=0.01)
    assert group_back_at and group_back_at[0] - restarted_at <= REGROUP_BOUND_S, group_back_at
    verdict = wait_drained(ledger, server, subscribers=subs, expected=after, timeout_s=20)
    assert not verdict.lost and not verdict.unexpected and verdict.pending == 0, verdict
    nogroup_lines = 0
    for child in children:
        assert child.alive, child.tail()
        times = [at for at, _ in log_lines(child, "NOGROUP")]
        nogroup_lines += len(times)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= 0.98 for gap in gaps), f"{child.name}: NOGROUP lines {gaps} s apart\n{child.tail()}"
    assert nogroup_lines >= 1  # the loss was met
    lost_lines = [line for child in children for _, line in log_lines(child, "was lost")]
    assert len(lost_lines) == 1 and STREAM in lost_lines[0], lost_lines  # once per stream, by one consumer
    assert sum(1 for name in names for m in ledger.marks(name) if m[1] == "lost_group") == 1
    print(
        f"groups back {group_back_at[0] - restarted_at:.2f} s after the restart; {nogroup_lines} NOGROUP lines; "
        f"{len(after)} published after: {verdict}"
    )
