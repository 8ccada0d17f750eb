"""A lightweight subscriber process for the input and trimming fault tests.

Like :mod:`faultlib.subscriber`, but built for volume: the handler counts instead of writing a
ledger row per event (a million SQLite rows would be the bottleneck), and the process reports its
counters, the bus's stats and its RSS to a JSON status file that the test polls. Run it with
``python -m faultlib.loadsub`` (under :class:`bus.Runner`: SIGTERM stops it gracefully).

Variables (besides the product's REDIS_*/BUS_*):

- ``FAULT_STATUS``: the status file (required), rewritten atomically every ``FAULT_STATUS_EVERY_MS``
  (default 100) and once more at exit;
- ``FAULT_LEDGER``: also record ``begin``/``done`` ledger rows per call (for tests of a few
  thousand events that need per-event times or side-effect counts);
- ``FAULT_EVENT_TYPES`` (default ``TICKET_CREATED``), ``FAULT_CHANNEL`` (default ``global``);
- ``FAULT_POISON``: comma-separated ``ticketId`` values whose handler always raises;
- ``FAULT_WORK_MS``: time a handler spends per event (a deliberately slow consumer);
- ``FAULT_SOCKET_TIMEOUT_S``: ``socket_timeout_s`` (no product variable).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus

from bus import BusSettings, Delivery, EventBus, Handler, run_services

from .cluster import FAST_ENV
from .ledger import Ledger
from .procs import Child, Procs

__all__ = ["LoadService", "PoisonError", "read_status", "rss_bytes", "service", "start_load_subscriber", "wait_status"]


class PoisonError(RuntimeError):
    """What the handler raises for a poison event (every delivery fails)."""


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process) from ``/proc/<pid>/status`` (VmRSS)."""
    text = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def read_status(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last status a load subscriber wrote, or None before its first write."""
    try:
        data: dict[str, Any] = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return data


def wait_status(
    path: str | os.PathLike[str],
    predicate: Callable[[dict[str, Any]], bool],
    timeout_s: float,
    *,
    child: Child | None = None,
    what: str = "condition",
) -> dict[str, Any]:
    """Poll the status file every 20 ms until ``predicate(status)`` holds; returns that status.

    ``TimeoutError`` (with the last status and the child's log) after ``timeout_s``; a ``child``
    that exits meanwhile fails at once.
    """
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] | None = None
    while True:
        status = read_status(path)
        if status is not None and predicate(status):
            return status
        if child is not None and not child.alive:
            raise RuntimeError(f"load subscriber exited with {child.returncode}\n{child.tail()}")
        if time.monotonic() > deadline:
            tail = child.tail() if child is not None else ""
            raise TimeoutError(
                f"load subscriber: {what} not reached within {timeout_s} s; last status {status}\n{tail}"
            )
        time.sleep(0.02)


def start_load_subscriber(
    procs: Procs, name: str, url: str, status_path: Path, env: Mapping[str, str] | None = None, timeout_s: float = 60
) -> Child:
    """Spawn ``python -m faultlib.loadsub`` as consumer ``name`` on ``url`` with :data:`FAST_ENV`
    (``env`` wins); returns once it consumes."""
    full = {
        **FAST_ENV,
        "REDIS_URL": url,
        "BUS_CONSUMER_NAME": name,
        "FAULT_STATUS": str(status_path),
        **(env or {}),
    }
    child = procs.python(name, "-m", "faultlib.loadsub", env=full)
    wait_status(status_path, lambda s: bool(s["ready"]) and s["pid"] == child.pid, timeout_s, child=child, what="ready")
    return child


class LoadService:
    """Subscribes one counting handler per event type and consumes, reporting to a status file."""

    name = "load"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.status_path = Path(environ["FAULT_STATUS"])
        self.every_s = float(environ.get("FAULT_STATUS_EVERY_MS", "100")) / 1000
        self.ledger = Ledger(environ["FAULT_LEDGER"]) if environ.get("FAULT_LEDGER") else None
        self.event_types = environ.get("FAULT_EVENT_TYPES", "TICKET_CREATED").split(",")
        self.channel = environ.get("FAULT_CHANNEL", "global")
        self.poison = frozenset(filter(None, environ.get("FAULT_POISON", "").split(",")))
        self.work_s = float(environ.get("FAULT_WORK_MS", "0")) / 1000
        self.calls = 0
        self.done = 0
        self.poison_calls = 0
        self.ready = False
        self.bus: EventBus | None = None

    def _handler(self, consumer: str) -> Handler:
        ledger, poison, work_s = self.ledger, self.poison, self.work_s

        async def handle(delivery: Delivery) -> None:
            self.calls += 1
            if ledger is not None:
                ledger.handled(
                    delivery.event_id,
                    consumer=consumer,
                    delivery=delivery.delivery_count,
                    phase="begin",
                    stream=delivery.stream,
                    entry_id=delivery.entry_id,
                )
            if poison and getattr(delivery.value, "ticket_id", None) in poison:
                self.poison_calls += 1
                raise PoisonError(f"poison ticket {delivery.value.ticket_id} (delivery {delivery.delivery_count})")
            if work_s:
                await anyio.sleep(work_s)
            self.done += 1  # the side effect
            if ledger is not None:
                ledger.handled(
                    delivery.event_id,
                    consumer=consumer,
                    delivery=delivery.delivery_count,
                    stream=delivery.stream,
                    entry_id=delivery.entry_id,
                )

        return handle

    def write_status(self) -> None:
        """Write the counters atomically (temp file + rename)."""
        bus = self.bus
        status = {
            "pid": os.getpid(),
            "ready": self.ready,
            "calls": self.calls,
            "done": self.done,
            "poison_calls": self.poison_calls,
            "rss": rss_bytes(),
            "at": time.time(),
            "stats": msgspec.structs.asdict(bus.stats) if bus is not None and bus.consumer is not None else {},
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(self.status_path)

    async def _report(self) -> None:
        while True:
            self.write_status()
            await anyio.sleep(self.every_s)

    async def run(self, bus: EventBus, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, consume, report ``ready`` once the groups exist."""
        self.bus = bus
        handler = self._handler(bus.consumer_name)
        for event_type in self.event_types:
            bus.subscribe(event_type, handler, channel=self.channel, subscriber_id="load")
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(bus.run)
                self.ready = True
                tg.start_soon(self._report)
                task_status.started()
        finally:
            self.write_status()


def service(environ: dict[str, str]) -> LoadService:
    """Factory for ``bus run faultlib.loadsub:service`` (it passes the environment)."""
    return LoadService(environ)


async def main() -> None:
    """Run the service under the product's runner until SIGTERM/SIGINT."""
    overrides: dict[str, Any] = {}
    if os.environ.get("FAULT_SOCKET_TIMEOUT_S"):
        overrides["socket_timeout_s"] = float(os.environ["FAULT_SOCKET_TIMEOUT_S"])
    await run_services([service(dict(os.environ))], BusSettings.from_env(**overrides))


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    anyio.run(main)
