"""Subscriber processes SIGKILLed, SIGTERMed or frozen while handling: nothing lost, everything acked, and side
effects committed with ``Delivery.effect_key`` happen once although delivery is at-least-once."""

from __future__ import annotations

import time

import anyio
import pytest
from faultlib import FaultRedis, Ledger, Procs
from faultlib.cluster import (
    CLAIM_IDLE_S,
    EVENT_TYPE,
    FAST_ENV,
    GROUP,
    GUARD_ENV,
    LOAD_SLACK_S,
    RECLAIM_INTERVAL_S,
    Subscribers,
    fast_bus,
    publish_batches_recorded,
    publish_recorded,
    wait_drained,
)

from bus import Keys

pytestmark = pytest.mark.fault

STREAM = Keys().stream("global", EVENT_TYPE)
#: A peer must have handled a dead consumer's pending entries within this long after the kill (plus
#: LOAD_SLACK_S, so that a busy machine's scheduling delays do not fail the tests).
TAKEOVER_BOUND_S = CLAIM_IDLE_S + 2 * RECLAIM_INTERVAL_S + 1.0 + LOAD_SLACK_S


async def _publish(server: FaultRedis, ledger: Ledger, count: int) -> list[str]:
    async with fast_bus(server.url) as bus:
        if count >= 100:
            return await publish_batches_recorded(bus, ledger, count, batch=100)
        return await publish_recorded(bus, ledger, count)


def _wait_done_by(ledger: Ledger, pid: int, n: int, timeout_s: float = 20) -> None:
    ledger.wait_until(lambda led: led.count_done(pid) >= n, timeout_s, f"{n} handled by pid {pid}")


@pytest.mark.parametrize("cli", [pytest.param(False, id="runner"), pytest.param(True, id="bus-run")])
async def test_sigkill_mid_batch_then_restart_under_same_name(
    fault_redis: FaultRedis, ledger: Ledger, procs: Procs, cli: bool
) -> None:
    """Killed mid-batch 5x, restarted as the same consumer, 10,000 events: lost 0, acked 10,000, pending 0, dups 0."""
    kills, k = 5, 10_000
    subs = Subscribers(procs, ledger)
    env = {**GUARD_ENV, "FAULT_WORK_MS": "2", "BUS_CONCURRENCY": "16", "REDIS_STREAM_BATCH_SIZE": "50"}
    child = subs.start("sub-a", fault_redis.url, env=env, cli=cli)
    with anyio.fail_after(30):
        ids = await _publish(fault_redis, ledger, k)
    killed: set[int] = set()
    for i in range(kills):
        # Then die in the middle of more. A fast run overshoots its share before the kill lands, so
        # a later run's share is capped by what is left (spread over the kills still to come).
        share = min(k // (kills + 2), (k - ledger.count_done()) // (kills - i + 1))
        _wait_done_by(ledger, child.pid, share, timeout_s=30)
        assert child.alive, child.tail()
        killed.add(child.pid)
        child.kill()
        subs.restart(child, "sub-a")
    verdict = wait_drained(ledger, fault_redis, subscribers=subs, expected=ids, timeout_s=40)
    assert not verdict.lost and not verdict.unexpected and verdict.pending == 0, verdict
    assert not verdict.duplicated, verdict  # each side effect committed once, keyed by Delivery.effect_key
    info = fault_redis.group_info(STREAM, GROUP)
    assert (info["length"], info["entries-read"], info["lag"], info["pending"]) == (k, k, 0, 0), info
    # At-least-once stays visible: handlers ran again only for entries a killed run had begun,
    # and every guarded repeat ("skip") is of an effect a killed run committed but never acked.
    rows = ledger.handlings(phase=None)
    begun_by_killed = {h.event_id for h in rows if h.pid in killed and h.phase == "begin"}
    done_by_killed = {h.event_id for h in rows if h.pid in killed and h.phase == "done"}
    assert {e for e, _ in verdict.repeated} <= begun_by_killed, verdict
    assert {h.event_id for h in rows if h.phase == "skip"} <= done_by_killed, verdict
    for pid in killed:  # each kill landed mid-batch: the killed run had begun handlings it never finished
        begun = {h.event_id for h in rows if h.pid == pid and h.phase == "begin"}
        finished = {h.event_id for h in rows if h.pid == pid and h.phase != "begin"}
        assert begun - finished, f"the kill of pid {pid} did not interrupt a handler"
    print(f"{k} events, {kills} kills: {verdict}")


async def test_side_effect_finished_before_the_kill_is_not_repeated(
    fault_redis: FaultRedis, ledger: Ledger, procs: Procs
) -> None:
    """A side effect committed with its effect_key just before a SIGKILL (not acked) is redelivered, not repeated."""
    subs = Subscribers(procs, ledger)
    child = subs.start("sub-a", fault_redis.url, env={**GUARD_ENV, "FAULT_HOLD_MS": "3000"})
    with anyio.fail_after(10):
        ids = await _publish(fault_redis, ledger, 1)
    ledger.wait_done(1, timeout_s=10)  # side effect done; the handler still holds the entry
    first = child.pid
    child.kill()
    subs.restart(child, "sub-a")
    verdict = wait_drained(ledger, fault_redis, subscribers=subs, expected=ids, timeout_s=15, settle_s=0.5)
    ledger.wait_until(lambda led: led.count_done(phase="skip") == 1, 10, "the redelivery's guarded skip")
    assert not verdict.lost and verdict.pending == 0, verdict
    assert not verdict.duplicated, verdict
    runs = ledger.handlings(phase=None)
    assert [(h.pid, h.phase, h.delivery) for h in runs] == [
        (first, "begin", 1),
        (first, "done", 1),
        (child.pid, "begin", 2),  # at-least-once: delivered again to the restarted consumer
        (child.pid, "skip", 2),  # ... which found the effect committed under the same key
    ]


async def test_peer_takes_over_a_dead_consumers_pending(fault_redis: FaultRedis, ledger: Ledger, procs: Procs) -> None:
    """A subscriber killed for good with 100 pending: a peer handles them in claim idle + 2 intervals + 1 s + slack."""
    n = 100
    subs = Subscribers(procs, ledger)
    batch = {"REDIS_STREAM_BATCH_SIZE": str(n)}  # a reclaim pass claims up to one batch per stream
    slow_env = {**batch, "FAULT_WORK_MS": "60000", "BUS_HANDLER_TIMEOUT_S": "120", "BUS_CONCURRENCY": str(n)}
    slow = subs.start("sub-dead", fault_redis.url, env=slow_env)
    with anyio.fail_after(10):
        ids = await _publish(fault_redis, ledger, n)
    ledger.wait_until(lambda led: led.count_done(phase="begin") == n, 10, f"all {n} begun by sub-dead")
    peer = subs.start("sub-peer", fault_redis.url, env=batch)
    assert fault_redis.pending(GROUP) == n
    killed_at = time.time()
    slow.kill()
    verdict = wait_drained(ledger, fault_redis, subscribers=subs, expected=ids, timeout_s=TAKEOVER_BOUND_S + 5)
    assert verdict.ok, verdict
    took = max(h.at for h in ledger.handlings()) - killed_at
    assert took <= TAKEOVER_BOUND_S, f"takeover took {took:.2f} s > {TAKEOVER_BOUND_S} s"
    assert ledger.count_done(peer.pid) == n
    print(f"{n} pending taken over in {took:.2f} s (bound {TAKEOVER_BOUND_S} s)")


async def test_frozen_consumer_is_taken_over_and_recovers(
    fault_redis: FaultRedis, ledger: Ledger, procs: Procs
) -> None:
    """SIGSTOP mid-handling: a peer takes over within the claim bound; after SIGCONT lost 0, pending 0, dups 0."""
    subs = Subscribers(procs, ledger)
    # The frozen one's handler timeout outlasts the freeze, so its handlers finish after SIGCONT.
    env = {**GUARD_ENV, "FAULT_WORK_MS": "3000", "BUS_HANDLER_TIMEOUT_S": "60"}
    frozen = subs.start("sub-frozen", fault_redis.url, env=env)
    with anyio.fail_after(10):
        ids = await _publish(fault_redis, ledger, 6)
    ledger.wait_until(lambda led: led.count_done(phase="begin") == len(ids), 10, "all 6 begun")
    frozen.stop()  # mid-handling: every handler is inside its 3 s of work
    stopped_at = time.time()
    assert ledger.count_done(frozen.pid) == 0
    peer = subs.start("sub-peer", fault_redis.url, env=GUARD_ENV)
    ready_at = max(at for _, event, pid, at in ledger.marks("sub-peer") if event == "ready" and pid == peer.pid)
    ledger.wait_until(lambda led: led.count_done(peer.pid) == len(ids), TAKEOVER_BOUND_S + 5, "peer took over")
    took = max(h.at for h in ledger.handlings()) - max(stopped_at, ready_at)
    assert took <= TAKEOVER_BOUND_S, f"takeover took {took:.2f} s > {TAKEOVER_BOUND_S} s"
    frozen.cont()
    # The frozen consumer's handlers resume and finish their work: each finds its effect committed.
    ledger.wait_until(lambda led: led.count_done(frozen.pid, phase="skip") == len(ids), 10, "frozen ones skipped")
    verdict = wait_drained(ledger, fault_redis, subscribers=subs, expected=ids, timeout_s=15, settle_s=1.0)
    assert not verdict.lost and not verdict.unexpected and verdict.pending == 0, verdict
    assert not verdict.duplicated, verdict
    assert len(verdict.repeated) == len(ids), verdict  # at-least-once: every event ran on both consumers
    assert frozen.alive, frozen.tail()


@pytest.mark.parametrize("cli", [pytest.param(False, id="runner"), pytest.param(True, id="bus-run")])
async def test_sigterm_mid_batch_finishes_in_flight_and_repeats_nothing(
    fault_redis: FaultRedis, ledger: Ledger, procs: Procs, cli: bool
) -> None:
    """SIGTERM mid-batch: the process exits 0 within the shutdown grace, every handler it began
    finished; restarted under the same name it drains the rest: lost 0, duplicates 0, pending 0."""
    subs = Subscribers(procs, ledger)
    env = {"FAULT_WORK_MS": "100", "BUS_CONCURRENCY": "4"}
    child = subs.start("sub-a", fault_redis.url, env=env, cli=cli)
    with anyio.fail_after(10):
        ids = await _publish(fault_redis, ledger, 60)
    first = child.pid
    _wait_done_by(ledger, first, 8)
    started = time.monotonic()
    assert child.terminate(timeout_s=10) == 0, child.tail()
    assert time.monotonic() - started <= float(FAST_ENV["BUS_SHUTDOWN_GRACE_S"]) + 2.0 + LOAD_SLACK_S
    rows = ledger.handlings(phase=None)
    begun = {h.event_id for h in rows if h.pid == first and h.phase == "begin"}
    finished = {h.event_id for h in rows if h.pid == first and h.phase == "done"}
    assert begun == finished, f"{len(begun - finished)} handlers were cut off by SIGTERM"
    subs.restart(child, "sub-a")
    verdict = wait_drained(ledger, fault_redis, subscribers=subs, expected=ids, timeout_s=20)
    assert verdict.ok, verdict
