"""A private redis-server for one fault test, with the faults that Redis itself can suffer.

Wraps a ``RedisProcess`` from the ``redis_process`` fixture (tests/conftest.py: free port, own
directory, AOF everysec, killed at the end of the test) and adds SIGKILL + restart on the same
port and directory, SIGSTOP/SIGCONT, and the stream facts checks need (pending, lag, length).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

import redis

__all__ = ["FaultRedis", "RedisProcessLike"]


class RedisProcessLike(Protocol):
    """What ``redis_process(...)`` returns (tests/conftest.py ``RedisProcess``)."""

    dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def kill(self) -> None: ...

    def stop(self) -> None: ...


class FaultRedis:
    """One private redis-server; restarts keep the port and the data directory (AOF replay)."""

    def __init__(self, process: RedisProcessLike) -> None:
        self.process = process
        self.restarts = 0

    @property
    def port(self) -> int:
        """The TCP port (the same after every restart)."""
        return self.process.port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return self.process.url

    @property
    def dir(self) -> Path:
        """The server's working directory (AOF, log)."""
        return self.process.dir

    @property
    def pid(self) -> int:
        """pid of the running server."""
        if self.process.proc is None:
            raise RuntimeError("redis-server is not started")
        return self.process.proc.pid

    @property
    def alive(self) -> bool:
        """True while the server process runs (stopped counts as running)."""
        return self.process.proc is not None and self.process.proc.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A sync client straight to the server (not through any proxy); close it after use."""
        kwargs.setdefault("socket_timeout", 5.0)
        return redis.Redis(port=self.port, **kwargs)

    def kill(self) -> None:
        """SIGKILL: no AOF flush, up to a second of writes may be lost under ``everysec``."""
        self._resume_if_stopped()
        self.process.kill()

    def stop(self) -> None:
        """SIGTERM: a clean shutdown that flushes the AOF."""
        self._resume_if_stopped()
        self.process.stop()

    def start(self) -> None:
        """Start on the same port and directory; returns once it answers PING (AOF loaded)."""
        self.process.start()

    def restart(self, *, graceful: bool = False) -> None:
        """Kill (SIGKILL, or SIGTERM if ``graceful``) and start again on the same port and dir."""
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start()
        self.restarts += 1

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered (a hung server)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        os.kill(self.pid, signal.SIGCONT)

    def _resume_if_stopped(self) -> None:
        if self.alive:
            os.kill(self.pid, signal.SIGCONT)

    def wait_fsync(self) -> None:
        """Make the AOF durable now (so a SIGKILL loses nothing written before this call)."""
        with self.client() as r:
            r.execute_command("BGREWRITEAOF")
            deadline = time.monotonic() + 10
            while int(r.info("persistence").get("aof_rewrite_in_progress", 0)) or int(
                r.info("persistence").get("aof_rewrite_scheduled", 0)
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError("BGREWRITEAOF did not finish in 10 s")
                time.sleep(0.02)

    # -- stream facts ----------------------------------------------------------------------------

    def streams(self, match: str = "*") -> list[str]:
        """Keys of type stream matching ``match``."""
        with self.client(decode_responses=True) as r:
            return sorted(str(k) for k in r.scan_iter(match=match, _type="stream", count=1000))

    def pending(self, group: str, match: str = "*") -> int:
        """Entries delivered to ``group`` but not acked, summed over the matching streams (XPENDING)."""
        total = 0
        with self.client(decode_responses=True) as r:
            for key in r.scan_iter(match=match, _type="stream", count=1000):
                for info in r.xinfo_groups(key):
                    if info["name"] == group:
                        total += int(r.xpending(key, group)["pending"])
        return total

    def group_info(self, stream: str, group: str) -> dict[str, Any]:
        """XINFO GROUPS row of ``group`` on ``stream`` plus ``length`` (XLEN), e.g. lag, pending."""
        with self.client(decode_responses=True) as r:
            for info in r.xinfo_groups(stream):
                if info["name"] == group:
                    return {**info, "length": int(r.xlen(stream))}
        raise LookupError(f"no group {group!r} on {stream!r}")
