"""Process and redis-server fault helpers: SIGKILL, SIGSTOP/SIGCONT, restart on the same port/dir."""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path

import pytest
import redis
from faultlib import FaultRedis, Ledger, Procs, process_state
from redis.backoff import NoBackoff
from redis.retry import Retry

pytestmark = pytest.mark.fault

_HEARTBEAT = textwrap.dedent(
    """
    import sys, time
    from faultlib import Ledger
    led = Ledger(sys.argv[1])
    led.mark("hb", "ready")
    while True:
        led.mark("hb", "beat")
        time.sleep(0.01)
    """
)


def _beats(ledger: Ledger, pid: int) -> int:
    return sum(1 for _, event, p, _ in ledger.marks("hb") if event == "beat" and p == pid)


def test_kill_and_restart_a_child(procs: Procs, ledger: Ledger, ledger_path: Path) -> None:
    """kill() SIGKILLs and reaps; restart() runs the same command again under a new pid."""
    child = procs.python("hb", "-c", _HEARTBEAT, str(ledger_path))
    first = child.pid
    ledger.wait_mark("hb", "ready", first)
    assert child.kill() == -signal.SIGKILL and not child.alive
    child.restart()
    ledger.wait_mark("hb", "ready", child.pid)
    assert child.pid != first and child.alive and child.spawns == 2


def test_stop_freezes_and_cont_resumes(procs: Procs, ledger: Ledger, ledger_path: Path) -> None:
    """stop() freezes the child (no progress, state T); cont() lets it run again."""
    child = procs.python("hb", "-c", _HEARTBEAT, str(ledger_path))
    ledger.wait_mark("hb", "ready", child.pid)
    child.stop()
    assert child.stopped and process_state(child.pid) == "T"
    frozen = _beats(ledger, child.pid)
    time.sleep(0.2)
    assert _beats(ledger, child.pid) == frozen
    child.cont()
    ledger.wait_until(lambda led: _beats(led, child.pid) > frozen + 3, 5, "beats after SIGCONT")
    assert not child.stopped


def test_kill_all_reaps_running_and_stopped_children(procs: Procs, ledger: Ledger, ledger_path: Path) -> None:
    """kill_all() (the fixture's finalizer) leaves no child behind, stopped ones included."""
    a = procs.python("a", "-c", _HEARTBEAT, str(ledger_path))
    b = procs.python("b", "-c", _HEARTBEAT, str(ledger_path))
    ledger.wait_mark("hb", "ready", b.pid)
    b.stop()
    procs.kill_all()
    assert not a.alive and not b.alive and process_state(a.pid) == "" and process_state(b.pid) == ""


def test_terminate_reaches_a_stopped_child(procs: Procs) -> None:
    """terminate() on a SIGSTOPped child sends SIGCONT too, so SIGTERM is acted on."""
    child = procs.spawn("sleeper", ["sleep", "30"])
    child.stop()
    assert child.terminate(5) == -signal.SIGTERM


def test_redis_restart_keeps_port_dir_and_acknowledged_data(fault_redis: FaultRedis) -> None:
    """A SIGKILL + restart keeps port and directory; data made durable before the kill survives."""
    port, directory, pid = fault_redis.port, fault_redis.dir, fault_redis.pid
    with fault_redis.client() as r:
        r.xadd("s", {"f": "1"})
        r.xgroup_create("s", "g", id="0")
    fault_redis.wait_fsync()
    fault_redis.restart()
    assert (fault_redis.port, fault_redis.dir) == (port, directory) and fault_redis.pid != pid
    assert fault_redis.restarts == 1
    with fault_redis.client() as r:
        assert r.xlen("s") == 1
    assert fault_redis.group_info("s", "g")["length"] == 1


def test_graceful_restart_flushes_everything(fault_redis: FaultRedis) -> None:
    """restart(graceful=True) shuts down cleanly: the last write survives without waiting."""
    with fault_redis.client() as r:
        r.set("last", "1")
    fault_redis.restart(graceful=True)
    with fault_redis.client() as r:
        assert r.get("last") == b"1"


def test_pause_hangs_the_server_and_resume_recovers(fault_redis: FaultRedis) -> None:
    """pause() (SIGSTOP) makes commands time out with sockets open; resume() answers again."""
    with redis.Redis(port=fault_redis.port, socket_timeout=0.3, retry=Retry(NoBackoff(), 0)) as r:
        r.ping()
        fault_redis.pause()
        try:
            with pytest.raises(redis.TimeoutError):
                r.ping()
        finally:
            fault_redis.resume()
        assert r.ping() is True


def test_pending_counts_unacked_entries_over_streams(fault_redis: FaultRedis) -> None:
    """pending() sums XPENDING of one group over the matching streams."""
    with fault_redis.client() as r:
        for key in ("p:a", "p:b"):
            r.xgroup_create(key, "g", id="0", mkstream=True)
            r.xgroup_create(key, "other", id="0")
            for _ in range(3):
                r.xadd(key, {"f": "1"})
        r.xreadgroup("g", "c", {"p:a": ">", "p:b": ">"}, count=2)
        got = r.xreadgroup("other", "c", {"p:a": ">"})
        r.xack("p:a", "other", got[0][1][0][0])
    assert fault_redis.pending("g", "p:*") == 4
    assert fault_redis.pending("other", "p:*") == 2
    assert fault_redis.streams("p:*") == ["p:a", "p:b"]
