"""Auto-batching: concurrent publishers share one round trip per event-loop tick (group commit).

No background task: the first caller of a tick becomes the group's *leader*. It yields once
(``anyio.lowlevel.checkpoint()``) so that every caller that is ready in the same tick joins
the group, closes the group, and writes it in one MULTI/EXEC; the others wait for the leader.
A new tick opens a new group, which is written concurrently with groups still in flight (up to
``max_in_flight`` at once; beyond that the open group keeps filling until a slot frees, which
is backpressure, not added latency for an idle bus). So batching adds at most one tick of
latency, and every caller's ``await`` returns only once its own entries are written.

Each caller gets its own outcome: validation happens in the caller before it joins (a bad
event never reaches the group), and per-event write errors are reported to their caller only.
A connection failure after sending fails every caller of that group with its own
``PublishOutcomeUnknownError`` (carrying that caller's event ids).

The leader's tick-wait and write run shielded from cancellation (the write is time-boxed by
the socket timeout): a cancelled leader still writes its followers' events, then raises.
A cancelled follower stops waiting; its events are written with the group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.lowlevel

from ._errors import PublishOutcomeUnknownError
from ._publish import Outcome, PreparedEvent, PublishResult, results_or_raise

__all__ = ["AutoBatcher"]

WriteOutcomes = Callable[[Sequence[PreparedEvent]], Awaitable[list[Outcome]]]


class _Group:
    __slots__ = ("done", "error", "items", "outcomes")

    def __init__(self) -> None:
        self.items: list[PreparedEvent] = []
        self.done = anyio.Event()
        self.outcomes: list[Outcome] = []
        self.error: BaseException | None = None


class AutoBatcher:
    """Coalesces concurrent :meth:`submit` calls into one write per loop tick."""

    def __init__(self, write_outcomes: WriteOutcomes, *, max_batch: int = 1000, max_in_flight: int = 8) -> None:
        self._write = write_outcomes
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._limiter: anyio.CapacityLimiter | None = None
        self._open: _Group | None = None
        self._leaders = 0
        self._drained: anyio.Event | None = None
        #: Groups written so far (for tests and metrics).
        self.groups_written = 0

    async def submit(self, items: Sequence[PreparedEvent]) -> list[PublishResult]:
        """Write ``items`` with whatever else is submitted in this tick; return their results.

        Raises the error of an event that was not (fully) written, as ``EventBus.write`` does.
        """
        return results_or_raise(items, await self.submit_outcomes(items))

    async def submit_outcomes(self, items: Sequence[PreparedEvent]) -> list[Outcome]:
        """Like :meth:`submit`, but a result or an error per event (raises only for the whole trip)."""
        if not items:
            return []
        group = self._open
        leader = group is None
        if group is None:
            group = self._open = _Group()
        start = len(group.items)
        group.items.extend(items)
        end = len(group.items)
        if end >= self._max_batch and self._open is group:
            self._open = None  # full: the next caller starts a new group
        if leader:
            await self._lead(group)
        else:
            await group.done.wait()
        if group.error is not None:
            raise _error_for(group.error, group.items[start:end])
        return group.outcomes[start:end]

    async def _lead(self, group: _Group) -> None:
        self._leaders += 1
        try:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # let this tick's callers join
                if self._limiter is None:
                    self._limiter = anyio.CapacityLimiter(self._max_in_flight)
                async with self._limiter:
                    if self._open is group:
                        self._open = None
                    try:
                        group.outcomes = await self._write(group.items)
                    except Exception as exc:
                        group.error = exc
                    finally:
                        self.groups_written += 1
                        group.done.set()
        finally:
            self._leaders -= 1
            if self._leaders == 0 and self._drained is not None:
                self._drained.set()
                self._drained = None

    async def drain(self) -> None:
        """Return once every group that was submitted has been written (used on close)."""
        while self._leaders:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()


def _error_for(error: BaseException, items: Sequence[PreparedEvent]) -> BaseException:
    """The group's failure as seen by one caller: an unknown outcome names this caller's events."""
    if isinstance(error, PublishOutcomeUnknownError):
        ids = tuple(e for p in items for e in (p.event_ids or (p.event_id,)))
        own = PublishOutcomeUnknownError(f"{error} This call's events: {', '.join(ids)}.", ids)
        own.__cause__ = error.__cause__
        return own
    return error
