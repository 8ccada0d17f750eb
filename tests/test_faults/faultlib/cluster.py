"""Bus-level pieces of fault tests: subscriber processes, a recording publisher, drain and verdict.

Test settings shorten production defaults so faults resolve in seconds (see :data:`FAST_ENV`):
BLOCK 1 s, hard read timeout 2 s, claim idle 2 s, reclaim every 0.5 s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import anyio

from bus import BusError, BusSettings, EventBus, PublishOutcomeUnknownError
from schemas import to_iso

from .ledger import Ledger, Verdict
from .procs import Child, Procs
from .server import FaultRedis

__all__ = [
    "EVENT_TYPE",
    "FAST_ENV",
    "GROUP",
    "GUARD_ENV",
    "Subscribers",
    "fast_bus",
    "log_lines",
    "publish_attempts",
    "publish_batches_recorded",
    "publish_recorded",
    "ticket_created",
    "wait_drained",
]

EVENT_TYPE = "TICKET_CREATED"
GROUP = "event-processors"
#: Product variables (REDIS_*, BUS_*) shortened for fault tests, plus the harness's socket timeout.
FAST_ENV: dict[str, str] = {
    "REDIS_STREAM_BLOCKING_TIMEOUT": "1000",
    "BUS_READ_TIMEOUT_S": "2",
    "REDIS_STREAM_CLAIM_TIMEOUT": "2000",
    "BUS_RECLAIM_INTERVAL_S": "0.5",
    "BUS_SHUTDOWN_GRACE_S": "1",
    "BUS_HANDLER_TIMEOUT_S": "5",
    "REDIS_STREAM_MAX_LENGTH": "100000",
    "FAULT_SOCKET_TIMEOUT_S": "2",
}
#: Subscribers that commit their side effect keyed by ``Delivery.effect_key`` (exactly-once effects).
GUARD_ENV: dict[str, str] = {"FAULT_GUARD": "1"}
CLAIM_IDLE_S = int(FAST_ENV["REDIS_STREAM_CLAIM_TIMEOUT"]) / 1000
RECLAIM_INTERVAL_S = float(FAST_ENV["BUS_RECLAIM_INTERVAL_S"])
BLOCK_S = int(FAST_ENV["REDIS_STREAM_BLOCKING_TIMEOUT"]) / 1000
READ_TIMEOUT_S = float(FAST_ENV["BUS_READ_TIMEOUT_S"])
SOCKET_TIMEOUT_S = float(FAST_ENV["FAULT_SOCKET_TIMEOUT_S"])
#: Added to the timing promises that fault tests check: their subscribers, proxy and Redis share
#: the machine's cores with whatever else runs, and a busy machine delays each step a little.
LOAD_SLACK_S = 2.0


def ticket_created(tenant: str = "tenant-faults") -> dict[str, Any]:
    """A valid TICKET_CREATED payload (catalog shape) with a fresh ticket id."""
    return {"tenantId": tenant, "occurredAt": to_iso(datetime.now(UTC)), "ticketId": str(uuid.uuid4())}


def fast_bus(url: str, **overrides: Any) -> EventBus:
    """A bus in the test process on ``url`` with :data:`FAST_ENV` (``overrides`` win)."""
    values = {"socket_timeout_s": SOCKET_TIMEOUT_S, **overrides}
    return EventBus(BusSettings.from_env({**FAST_ENV, "REDIS_URL": url}, **values))


class Subscribers:
    """Starts ``python -m faultlib.subscriber`` children that record into one ledger."""

    def __init__(self, procs: Procs, ledger: Ledger) -> None:
        self.procs = procs
        self.ledger = ledger
        self.children: list[Child] = []

    def start(
        self,
        consumer: str,
        url: str,
        *,
        env: Mapping[str, str] | None = None,
        cli: bool = False,
        timeout_s: float = 60,
    ) -> Child:
        """Spawn a subscriber named ``consumer`` on ``url``; returns once it consumes.

        ``cli=True`` runs it through the product's daemon CLI (``python -m bus run``), else
        through ``python -m faultlib.subscriber`` (the same service under ``bus.Runner``).
        """
        full = {
            **FAST_ENV,
            "REDIS_URL": url,
            "BUS_CONSUMER_NAME": consumer,
            "FAULT_LEDGER": str(self.ledger.path),
            **(env or {}),
        }
        args = ("-m", "bus", "run", "faultlib.subscriber:service") if cli else ("-m", "faultlib.subscriber")
        child = self.procs.python(consumer, *args, env=full)
        self.children.append(child)
        self.wait_ready(child, consumer, timeout_s)
        return child

    def check_crashes(self) -> None:
        """Raise (with its log) if a subscriber exited by itself with an error (not killed by the test)."""
        for child in self.children:
            code = child.returncode
            if code is not None and code > 0:
                raise RuntimeError(f"subscriber {child.name} crashed with exit status {code}\n{child.tail(60)}")

    def restart(self, child: Child, consumer: str, timeout_s: float = 60) -> Child:
        """SIGKILL (if running) and start again under the same consumer name; waits until ready."""
        child.restart()
        self.wait_ready(child, consumer, timeout_s)
        return child

    def wait_ready(self, child: Child, consumer: str, timeout_s: float = 60) -> None:
        """Block until ``child`` marked itself ready; fail fast (with its log) if it exits."""
        deadline = time.monotonic() + timeout_s
        pid = child.pid
        while not any(e == "ready" and p == pid for _, e, p, _ in self.ledger.marks(consumer)):
            if not child.alive:
                raise RuntimeError(f"subscriber {consumer} exited with {child.returncode}\n{child.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"subscriber {consumer} not ready within {timeout_s} s\n{child.tail()}")
            time.sleep(0.02)


async def publish_recorded(
    bus: EventBus,
    ledger: Ledger,
    count: int,
    *,
    event_type: str = EVENT_TYPE,
    give_up_after_s: float = 30.0,
    pause_s: float = 0.0,
) -> list[str]:
    """Publish ``count`` events one by one, recording each attempt in the ledger.

    Like a careful producer: on an error the same event id is published again (with backoff)
    until it succeeds, so every id ends ``ok``; ``unknown`` attempts may leave a duplicate entry
    that consumers must dedupe. Returns the event ids in order.
    """
    ids: list[str] = []
    for _ in range(count):
        event_id = str(uuid.uuid4())
        payload = ticket_created()
        deadline = anyio.current_time() + give_up_after_s
        backoff = 0.02
        while True:
            try:
                with ledger.publishing(event_id, unknown=(PublishOutcomeUnknownError,)):
                    await bus.publish(event_type, payload, event_id=event_id)
                break
            except BusError:
                if anyio.current_time() > deadline:
                    raise
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
        ids.append(event_id)
        if pause_s:
            await anyio.sleep(pause_s)
    return ids


async def publish_batches_recorded(
    bus: EventBus,
    ledger: Ledger,
    count: int,
    *,
    batch: int = 50,
    pause_s: float = 0.0,
    event_type: str = EVENT_TYPE,
    give_up_after_s: float = 30.0,
) -> list[str]:
    """Like :func:`publish_recorded`, ``batch`` events per ``publish_many`` (one MULTI/EXEC), the
    ledger rows of a batch in one transaction; a failed batch is published again with the same ids."""
    ids: list[str] = []
    for start in range(0, count, batch):
        items = [(str(uuid.uuid4()), ticket_created()) for _ in range(min(batch, count - start))]
        event_ids = [e for e, _ in items]
        deadline = anyio.current_time() + give_up_after_s
        backoff = 0.02
        while True:
            ledger.published_many(event_ids, "invoke")
            try:
                await bus.publish_many([bus.prepare(event_type, p, event_id=e) for e, p in items])
            except PublishOutcomeUnknownError as exc:
                ledger.published_many(event_ids, "unknown", f"{type(exc).__name__}: {exc}")
            except BusError as exc:
                ledger.published_many(event_ids, "fail", f"{type(exc).__name__}: {exc}")
            else:
                ledger.published_many(event_ids, "ok")
                break
            if anyio.current_time() > deadline:
                raise TimeoutError(f"batch at {start} not published within {give_up_after_s} s")
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
        ids += event_ids
        if pause_s:
            await anyio.sleep(pause_s)
    return ids


def publish_attempts(ledger: Ledger) -> list[tuple[str, str, float, float]]:
    """Every publish call recorded in the ledger: ``(event_id, outcome, started_at, seconds)``,
    from each ``invoke`` row to the outcome row that closed it (calls that never ended are left out)."""
    open_calls: dict[str, list[float]] = {}
    out: list[tuple[str, str, float, float]] = []
    for row in ledger.publishes():
        if row.outcome == "invoke":
            open_calls.setdefault(row.event_id, []).append(row.at)
        elif open_calls.get(row.event_id):
            started = open_calls[row.event_id].pop(0)
            out.append((row.event_id, row.outcome, started, row.at - started))
    return out


def log_lines(child: Child, needle: str) -> list[tuple[float, str]]:
    """``(epoch seconds, line)`` of the child's log lines containing ``needle`` (the subscriber's
    format: ``2026-01-23 10:11:12,345 LEVEL logger message``)."""
    out: list[tuple[float, str]] = []
    for line in child.log.read_text(errors="replace").splitlines():
        if needle in line:
            try:
                at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            out.append((at, line))
    return out


def wait_drained(
    ledger: Ledger,
    server: FaultRedis,
    *,
    expected: list[str] | None = None,
    subscribers: Subscribers | None = None,
    group: str = GROUP,
    timeout_s: float = 30.0,
    settle_s: float = 0.3,
) -> Verdict:
    """Wait until nothing expected is lost and nothing is pending, then let late duplicates show
    for ``settle_s``; returns the verdict (pending measured with XPENDING). On timeout, returns
    the verdict as it stands (the caller's assertion shows what is missing); a crashed
    ``subscribers`` child raises at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if subscribers is not None:
            subscribers.check_crashes()
        if not ledger.verdict(expected=expected).lost and server.pending(group) == 0:
            time.sleep(settle_s)
            break
        time.sleep(0.05)
    return ledger.verdict(expected=expected, pending=server.pending(group))
