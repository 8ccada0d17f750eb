"""The hand-off from the dispatcher to the workers: a bounded queue of entries, filled a batch at
a time and taken one entry at a time.

A memory object stream moved each entry with a send and a receive (checks, statistics, a waiting
task woken per item); here the dispatcher appends a whole batch to a deque and wakes as many idle
workers as it added entries, and a worker takes the next entry with one ``popleft``
(:attr:`EntryQueue.take`). Workers still take one entry at a time, so a slow handler holds up only
its own entry, never the ones after it.

Bounded: :meth:`EntryQueue.put` waits while ``capacity`` entries are queued (backpressure up to
the reader); a put waiting for room goes on once a worker finds the queue empty (:meth:`get`), or
one takes an entry with :meth:`get_nowait`. :meth:`EntryQueue.close` ends it: workers take what
is left, then :meth:`get` raises ``anyio.EndOfStream``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from ._entry import Entry

__all__ = ["EntryQueue"]


class EntryQueue:
    """Entries decoded and not yet taken by a worker (see the module docstring)."""

    __slots__ = ("_capacity", "_closed", "_getters", "_items", "_space", "take")

    def __init__(self, capacity: int) -> None:
        self._items: deque[Entry] = deque()
        #: The next entry, IndexError when none is queued: a worker's fast path, one C call. When
        #: it raises, the worker calls :meth:`get` (which waits, or ends the worker once closed).
        self.take: Callable[[], Entry] = self._items.popleft
        self._capacity = max(1, capacity)
        self._getters: deque[anyio.Event] = deque()  # idle workers, first come first woken
        self._space: anyio.Event | None = None  # set when the waiting put may go on
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, entries: list[Entry], unqueued: Callable[[list[Entry]], object]) -> None:
        """Queue ``entries`` in order, waiting for room as needed. The ones it did not queue
        (cancelled while waiting, or closed meanwhile) go to ``unqueued``, and only those: the
        queued ones belong to the workers from then on."""
        done = 0
        items = self._items
        try:
            while done < len(entries) and not self._closed:
                room = self._capacity - len(items)
                if room <= 0:
                    self._space = space = anyio.Event()
                    try:
                        await space.wait()
                    finally:
                        self._space = None
                    continue
                chunk = entries[done : done + room] if done or room < len(entries) else entries
                items.extend(chunk)
                done += len(chunk)
                self._wake(len(chunk))
        finally:
            if done < len(entries):
                unqueued(entries[done:])

    def _wake(self, n: int) -> None:
        getters = self._getters
        while n > 0 and getters:
            getters.popleft().set()
            n -= 1

    def get_nowait(self) -> Entry:
        """The next entry; ``anyio.WouldBlock`` when none is queued (``anyio.EndOfStream`` once closed)."""
        try:
            entry = self._items.popleft()
        except IndexError:
            raise anyio.EndOfStream if self._closed else anyio.WouldBlock from None
        space = self._space
        if space is not None and len(self._items) < self._capacity:
            space.set()
        return entry

    async def get(self) -> Entry:
        """The next entry, waiting for one; ``anyio.EndOfStream`` once closed and empty."""
        while True:
            try:
                return self.get_nowait()
            except anyio.WouldBlock:
                pass
            if self._space is not None:  # emptied by :attr:`take`: the waiting put may go on
                self._space.set()
            woken = anyio.Event()
            self._getters.append(woken)
            try:
                await woken.wait()
            except BaseException:
                if not woken.is_set():
                    self._getters.remove(woken)
                elif self._items:  # woken for an entry this worker will not take now: pass it on
                    self._wake(1)
                raise

    def close(self) -> None:
        """No more entries: idle workers wake up, take what is left, then end."""
        self._closed = True
        self._wake(len(self._getters))
        if self._space is not None:
            self._space.set()
