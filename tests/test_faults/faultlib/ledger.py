"""The ledger: what really happened, kept outside the Redis under test.

One SQLite file in WAL mode, written by the test process, by publishers and by every subscriber
process (each opens its own connection; a SIGKILL mid-write loses at most that row). Rows:

- ``handlings``: a handler ran for an event (``phase`` "begin" when it starts, "done" once its
  side effect happened: the "done" row *is* the side effect that must happen exactly once;
  "skip" when a guarded handler found its effect already committed, see :meth:`Ledger.commit_effect`);
- ``effects``: the effect keys (:attr:`bus.Delivery.effect_key`) of guarded side effects, unique:
  a guarded handler inserts its key and its "done" row in one transaction, or neither;
- ``publishes``: a publisher's ``invoke`` before calling publish, then ``ok``, ``fail`` (nothing
  was written) or ``unknown`` (the write may have happened);
- ``marks``: process life-cycle notes (``ready`` once a subscriber consumes).

:func:`check` turns the rows into a :class:`Verdict`: lost, unexpected and duplicated handlings.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

__all__ = ["Handling", "Ledger", "Publish", "Verdict", "check"]

Outcome = Literal["invoke", "ok", "fail", "unknown"]
Phase = Literal["begin", "done", "skip"]
DEFAULT_HANDLER = "handler"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handlings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    handler TEXT NOT NULL,
    consumer TEXT NOT NULL,
    pid INTEGER NOT NULL,
    delivery INTEGER NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('begin', 'done', 'skip')),
    stream TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS handlings_event ON handlings (event_id);
CREATE TABLE IF NOT EXISTS publishes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('invoke', 'ok', 'fail', 'unknown')),
    pid INTEGER NOT NULL,
    detail TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS effects (
    effect_key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS marks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    event TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at REAL NOT NULL
);
"""


class Handling(NamedTuple):
    """One handler row."""

    event_id: str
    handler: str
    consumer: str
    pid: int
    delivery: int
    phase: Phase
    stream: str
    entry_id: str
    at: float


class Publish(NamedTuple):
    """One publisher row."""

    event_id: str
    outcome: Outcome
    pid: int
    detail: str
    at: float


class Ledger:
    """A connection to the ledger file (create one per process; cheap, thread-safe)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close this connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute(sql, args)

    # -- writes --------------------------------------------------------------------------------

    def handled(
        self,
        event_id: str,
        *,
        consumer: str,
        delivery: int,
        handler: str = DEFAULT_HANDLER,
        phase: Phase = "done",
        stream: str = "",
        entry_id: str = "",
    ) -> None:
        """Record a handler's begin, or its side effect ("done")."""
        self._write(
            "INSERT INTO handlings (event_id, handler, consumer, pid, delivery, phase, stream, entry_id, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, handler, consumer, os.getpid(), delivery, phase, stream, entry_id, time.time()),
        )

    def commit_effect(
        self,
        event_id: str,
        *,
        effect_key: str,
        consumer: str,
        delivery: int,
        handler: str = DEFAULT_HANDLER,
        stream: str = "",
        entry_id: str = "",
    ) -> bool:
        """A guarded side effect: in ONE transaction, insert ``effect_key`` (``ON CONFLICT DO
        NOTHING``) and the "done" row if the key was new, else a "skip" row. True if applied.

        This is how a handler makes its effect exactly-once on an at-least-once bus: the effect and
        its idempotency key commit together, so a redelivery (after a crash before the ack, or to
        a peer that reclaimed a frozen consumer's entry) finds the key and skips.
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO effects (effect_key, event_id, pid, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (effect_key, event_id, os.getpid(), now),
                )
                applied = cur.rowcount == 1
                self._db.execute(
                    "INSERT INTO handlings (event_id, handler, consumer, pid, delivery, phase, stream, entry_id, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event_id,
                        handler,
                        consumer,
                        os.getpid(),
                        delivery,
                        "done" if applied else "skip",
                        stream,
                        entry_id,
                        now,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return applied

    def published_many(self, event_ids: Iterable[str], outcome: Outcome, detail: str = "") -> None:
        """Record the same publisher step for many ids in one transaction (batch publishes)."""
        now, pid = time.time(), os.getpid()
        rows = [(e, outcome, pid, detail, now) for e in event_ids]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO publishes (event_id, outcome, pid, detail, at) VALUES (?, ?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def published(self, event_id: str, outcome: Outcome, detail: str = "") -> None:
        """Record a publisher step: ``invoke`` before the call, then ``ok``/``fail``/``unknown``."""
        self._write(
            "INSERT INTO publishes (event_id, outcome, pid, detail, at) VALUES (?, ?, ?, ?, ?)",
            (event_id, outcome, os.getpid(), detail, time.time()),
        )

    @contextmanager
    def publishing(self, event_id: str, *, unknown: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
        """Record ``invoke`` now and ``ok``, ``unknown`` (for ``unknown`` exceptions) or ``fail``."""
        self.published(event_id, "invoke")
        try:
            yield
        except unknown as exc:
            self.published(event_id, "unknown", f"{type(exc).__name__}: {exc}")
            raise
        except Exception as exc:
            self.published(event_id, "fail", f"{type(exc).__name__}: {exc}")
            raise
        self.published(event_id, "ok")

    def mark(self, name: str, event: str) -> None:
        """Record a process life-cycle event (e.g. a subscriber is ``ready``)."""
        self._write(
            "INSERT INTO marks (name, event, pid, at) VALUES (?, ?, ?, ?)", (name, event, os.getpid(), time.time())
        )

    # -- reads ---------------------------------------------------------------------------------

    def handlings(self, phase: Phase | None = "done") -> list[Handling]:
        """Handler rows in insertion order (only ``phase`` rows unless ``None``)."""
        sql = "SELECT event_id, handler, consumer, pid, delivery, phase, stream, entry_id, at FROM handlings"
        args: tuple[object, ...] = ()
        if phase is not None:
            sql, args = sql + " WHERE phase = ?", (phase,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [Handling(*row) for row in rows]

    def publishes(self) -> list[Publish]:
        """Publisher rows in insertion order."""
        with self._lock:
            rows = self._db.execute("SELECT event_id, outcome, pid, detail, at FROM publishes ORDER BY seq").fetchall()
        return [Publish(*row) for row in rows]

    def count_done(self, pid: int | None = None, phase: Phase = "done") -> int:
        """How many side effects ("done" rows) are recorded (by process ``pid`` if given); or of
        another ``phase`` ("begin": handler runs, "skip": guarded repeats)."""
        sql = "SELECT COUNT(*) FROM handlings WHERE phase = ?"
        args: tuple[object, ...] = (phase,)
        if pid is not None:
            sql, args = sql + " AND pid = ?", (phase, pid)
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return int(row[0])

    def marks(self, name: str | None = None) -> list[tuple[str, str, int, float]]:
        """``(name, event, pid, at)`` rows, optionally of one name."""
        sql = "SELECT name, event, pid, at FROM marks"
        args: tuple[object, ...] = ()
        if name is not None:
            sql, args = sql + " WHERE name = ?", (name,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [(str(n), str(e), int(p), float(a)) for n, e, p, a in rows]

    def verdict(
        self,
        *,
        expected: Iterable[str] | None = None,
        handlers: Iterable[str] | None = None,
        pending: int | None = None,
    ) -> Verdict:
        """:func:`check` over everything recorded so far."""
        return check(self.handlings(None), self.publishes(), expected=expected, handlers=handlers, pending=pending)

    def wait_until(self, predicate: Callable[[Ledger], bool], timeout_s: float, what: str = "condition") -> None:
        """Poll ``predicate(self)`` every 20 ms; ``TimeoutError`` naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"ledger: {what} not reached within {timeout_s} s")
            time.sleep(0.02)

    def wait_mark(self, name: str, event: str, pid: int, timeout_s: float = 15.0) -> None:
        """Block until process ``pid`` recorded ``event`` under ``name``."""
        self.wait_until(
            lambda led: any(m[1] == event and m[2] == pid for m in led.marks(name)), timeout_s, f"{name} {event}"
        )

    def wait_done(self, n: int, timeout_s: float) -> None:
        """Block until at least ``n`` side effects are recorded."""
        self.wait_until(lambda led: led.count_done() >= n, timeout_s, f"{n} handlings")


@dataclass(frozen=True, repr=False)
class Verdict:
    """What the ledger says about delivery. Keys are ``(event_id, handler)`` pairs."""

    expected: frozenset[tuple[str, str]]
    maybe: frozenset[tuple[str, str]]
    counts: Counter[tuple[str, str]] = field(compare=False)
    lost: frozenset[tuple[str, str]]
    unexpected: frozenset[tuple[str, str]]
    duplicated: dict[tuple[str, str], int]
    pending: int | None = None
    #: Handler runs ("begin" rows) per key, for keys run more than once: at-least-once delivery,
    #: visible even when a guard kept the side effect single (then ``skipped`` counts the guarded repeats).
    repeated: dict[tuple[str, str], int] = field(default_factory=dict)
    skipped: int = 0

    @property
    def handled(self) -> int:
        """Distinct (event, handler) pairs handled at least once."""
        return len(self.counts)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing unexpected, nothing twice, nothing pending (when measured)."""
        return not (self.lost or self.unexpected or self.duplicated or self.pending)

    def __str__(self) -> str:
        def some(keys: Iterable[tuple[str, str]]) -> str:
            items = sorted(keys)
            return ", ".join(f"{e}/{h}" for e, h in items[:5]) + (" ..." if len(items) > 5 else "")

        return (
            f"expected {len(self.expected)} (+{len(self.maybe)} maybe), handled {self.handled}; "
            f"lost {len(self.lost)} [{some(self.lost)}], unexpected {len(self.unexpected)} "
            f"[{some(self.unexpected)}], duplicated {len(self.duplicated)} [{some(self.duplicated)}], "
            f"pending {self.pending}; runs repeated for {len(self.repeated)}, guard skipped {self.skipped}"
        )

    __repr__ = __str__  # pytest shows assertion messages with repr()


def check(
    handlings: Iterable[Handling],
    publishes: Iterable[Publish] = (),
    *,
    expected: Iterable[str] | None = None,
    handlers: Iterable[str] | None = None,
    pending: int | None = None,
) -> Verdict:
    """Compare side effects ("done" rows) with what had to happen.

    Must be handled: event ids given in ``expected``, plus ids whose publish returned ``ok``.
    May be handled: ids whose publish ended ``unknown`` or never ended (publisher killed).
    Must not be handled: ids whose publish ended ``fail`` only, and ids nobody published.
    Each id is expected once per handler in ``handlers`` (default: every handler that recorded
    anything, or ``"handler"``). ``pending`` (XPENDING after drain) is carried into the verdict.
    """
    rows = list(handlings)
    done = [h for h in rows if h.phase == "done"]
    runs: Counter[tuple[str, str]] = Counter((h.event_id, h.handler) for h in rows if h.phase == "begin")
    names = set(handlers) if handlers is not None else {h.handler for h in done} or {DEFAULT_HANDLER}
    outcomes: dict[str, set[str]] = {}
    for p in publishes:
        outcomes.setdefault(p.event_id, set()).add(p.outcome)
    must = set(expected or ()) | {e for e, o in outcomes.items() if "ok" in o}
    may = {e for e, o in outcomes.items() if "ok" not in o and "fail" not in o} - must
    counts: Counter[tuple[str, str]] = Counter((h.event_id, h.handler) for h in done)
    must_keys = frozenset((e, n) for e in must for n in names)
    may_keys = frozenset((e, n) for e in may for n in names)
    return Verdict(
        expected=must_keys,
        maybe=may_keys,
        counts=counts,
        lost=frozenset(must_keys - counts.keys()),
        unexpected=frozenset(counts.keys() - must_keys - may_keys),
        duplicated={k: n for k, n in counts.items() if n > 1},
        pending=pending,
        repeated={k: n for k, n in runs.items() if n > 1},
        skipped=sum(1 for h in rows if h.phase == "skip"),
    )
