"""One stream entry on its way from the reader to the acker, and the registry of entries in flight."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import repeat, starmap
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from ..wire import Fields, RawEntry

if TYPE_CHECKING:
    from ._delivery import Subscription
    from ._pending import PendingEntry

__all__ = ["DEAD", "DROPPED", "DUPLICATE", "MARKS", "PROGRESS", "Entry", "Failure", "InFlight"]

#: What the acker does with an entry (``Entry.outcome``) other than a handled one (those go to
#: ``AckBuffer.done``: XACK and the event marker): XACK only (already processed); XADD a dead
#: letter and XACK; the handler markers of ``members`` and release (left pending); the handler
#: markers only (its later handlers still run); XACK only (deleted or trimmed while pending).
DUPLICATE, DEAD, MARKS, PROGRESS, DROPPED = range(2, 7)

_first = itemgetter(0)
_exhaust: Callable[[Iterable[Any]], None] = deque[Any](maxlen=0).extend  # runs an iterator to its end, keeping nothing


class Failure(msgspec.Struct, frozen=True, gc=False):
    """Why an entry is dead-lettered: the reason, the full text, the bare message and its stack."""

    reason: str  # "max-deliveries", "invalid", "rejected"
    text: str
    message: str = ""
    stack: str = ""


class Entry(msgspec.Struct, eq=False, gc=False):
    """One stream entry on its way from the reader to the acker (and its outcome, once known).

    A Struct without GC tracking (compared and hashed by identity): a batch of 1,000 entries in
    flight no longer feeds the cyclic GC's young generation, which otherwise ran full collections
    over the whole heap every few batches. It must never be part of a reference cycle: nothing it
    refers to refers back to it.
    """

    stream: str
    entry_id: bytes
    fields: Fields | None
    deliveries: int = 1
    delivery: Any = None  # a bus.Delivery, or a StreamEntry for flat-entry handlers
    subs: tuple[Subscription, ...] = ()
    done: frozenset[str] = frozenset()
    event_member: bytes = b""
    #: False for an entry whose ``event_member`` another entry holds here (a copy of an event in flight).
    holds: bool = True
    outcome: int = 0
    failure: Failure | None = None
    members: list[bytes] | None = None
    #: Seconds its handlers took (recorded only when the process exports metrics).
    took: float = 0.0


class InFlight:
    """Entries read or claimed here and not yet acked or released, by stream and by event.

    Per stream: entry id -> when it was read or last kept alive (keep-alive and reclaim use it);
    per event marker member: the entry handling that event here (a copy of the same event in the
    same batch is acked as a duplicate instead of running twice).
    """

    __slots__ = ("by_stream", "holders")

    def __init__(self, streams: Sequence[str]) -> None:
        self.by_stream: dict[str, dict[bytes, float]] = {stream: {} for stream in streams}
        self.holders: dict[bytes, Entry] = {}

    def admit(self, stream: str, entries: Sequence[RawEntry]) -> list[Entry]:
        """New entries (first delivery) become in-flight the moment they are read."""
        # Built by C-level iteration (``[entry_id, fields]`` pairs as they came): no bytecode per entry.
        out = list(starmap(partial(Entry, stream), entries))
        self.by_stream[stream].update(dict.fromkeys(map(_first, entries), anyio.current_time()))
        return out

    def admit_pending(self, items: Iterable[PendingEntry]) -> list[Entry]:
        """Entries from a pending list; one already in flight here (a race with a claim) is skipped."""
        now = anyio.current_time()
        out: list[Entry] = []
        for stream, entry_id, fields, before in items:
            in_flight = self.by_stream[stream]
            if entry_id not in in_flight:
                in_flight[entry_id] = now
                out.append(Entry(stream, entry_id, fields, before + 1))
        return out

    def release(self, entry: Entry) -> None:
        """No longer in flight here: stays pending in Redis (unless it was acked)."""
        self.by_stream[entry.stream].pop(entry.entry_id, None)
        if self.holders.get(entry.event_member) is entry:
            del self.holders[entry.event_member]

    def release_all(self, entries: Iterable[Entry]) -> None:
        """:meth:`release` of each entry, in one loop."""
        by_stream = self.by_stream
        holders = self.holders
        for entry in entries:
            by_stream[entry.stream].pop(entry.entry_id, None)
            if holders.get(entry.event_member) is entry:
                del holders[entry.event_member]

    def release_held(self, ids: dict[str, list[bytes]], members: Iterable[list[bytes]]) -> None:
        """:meth:`release` of entries given as their ids by stream and the event members they hold
        themselves (``Entry.holds``), by C-level iteration: no bytecode per entry."""
        by_stream = self.by_stream
        for stream, entry_ids in ids.items():
            _exhaust(map(by_stream[stream].pop, entry_ids, repeat(None)))
        pop = self.holders.pop
        for held in members:
            _exhaust(map(pop, held, repeat(None)))

    def stale(self, older_than_s: float) -> dict[str, list[bytes]]:
        """Per stream, the ids in flight for at least ``older_than_s`` (their keep-alive is due)."""
        now = anyio.current_time()
        stale: dict[str, list[bytes]] = {}
        for stream, in_flight in self.by_stream.items():
            old = [entry_id for entry_id, since in in_flight.items() if now - since >= older_than_s]
            if old:
                stale[stream] = old
        return stale

    def touch(self, ids: dict[str, list[bytes]], now: float) -> None:
        """Record a keep-alive of ``ids`` (those still in flight)."""
        for stream, entry_ids in ids.items():
            in_flight = self.by_stream[stream]
            for entry_id in entry_ids:
                if entry_id in in_flight:
                    in_flight[entry_id] = now

    def keys(self) -> set[tuple[str, bytes]]:
        """Every ``(stream, entry id)`` in flight (reclaim skips them)."""
        return {(stream, entry_id) for stream, in_flight in self.by_stream.items() for entry_id in in_flight}

    def clear(self) -> None:
        """Forget everything (the loop ended)."""
        for in_flight in self.by_stream.values():
            in_flight.clear()
        self.holders.clear()
