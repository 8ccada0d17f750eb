"""Auto-batching: concurrent publishers share one round trip per event-loop tick (group commit).

No background task: the first caller of a tick becomes the group's *leader*. It yields once
(``anyio.lowlevel.checkpoint()``) so that every caller that is ready in the same tick joins
the group, then writes the group in one MULTI/EXEC; the others wait on one future shared by the
group, which the writer resolves once the group is written; each caller then takes its own slice of
the outcomes (or the group's error) from the group. A group that reaches ``max_batch`` events
is closed and written at once by the caller that filled it (not at the end of the tick): the
callers still to come in this tick prepare their events and form the next group while the full
one is in flight. A new group is written concurrently with groups still in flight (up to
``max_in_flight`` at once; beyond that a closed group waits for a slot, which is backpressure,
not added latency for an idle bus). So batching adds at most one tick of latency, and every
caller's ``await`` returns only once its own entries are written.

Many callers in lockstep (each publishing again as soon as its previous publish returned) would
otherwise form one group per tick, and nothing would overlap its round trip. So a group opened
while no other group is unwritten (*solo*) is capped at half the fan-in of the last solo tick:
the caller that fills that half writes it at once, the tick's other callers form a second group
written while the first is in flight, and from then on the two halves alternate, each formed
while the other's reply is outstanding. At most two groups per tick this way (a large fan-in is
never cut into many round trips), none when a half would be under :data:`MIN_SPLIT` events or
with one write slot. The fan-in is learnt by the solo group's leader after its tick-wait, when
every caller of the tick has joined; the first such tick is never split.

Each caller gets its own outcome: validation happens in the caller before it joins (a bad
event never reaches the group), and per-event write errors are reported to their caller only.
A connection failure after sending fails every caller of that group with its own
``PublishOutcomeUnknownError`` (carrying that caller's event ids).

The leader's tick-wait and the write run shielded from cancellation (the write is time-boxed by
the socket timeout): a cancelled leader or writer still writes its group, then raises.
A cancelled follower stops waiting; its events are written with the group.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.lowlevel

from ._errors import BusError, PublishOutcomeUnknownError
from .publish import Outcome, PreparedEvent, PublishResult, results_or_raise

__all__ = ["AutoBatcher"]

WriteOutcomes = Callable[[Sequence[PreparedEvent]], Awaitable[list[Outcome]]]


#: The smallest half worth a round trip of its own when a tick's callers are split in two groups.
MIN_SPLIT = 16


class _Group:
    """The events of one group and the callers waiting for them."""

    __slots__ = ("cap", "done", "error", "items", "loop", "outcomes", "solo", "writing", "written")

    def __init__(self, cap: int, *, solo: bool) -> None:
        #: Closed and written at once, by the caller that fills it, when it holds this many events.
        self.cap = cap
        #: Opened while no other group was unwritten: its cap may split the tick's callers in two.
        self.solo = solo
        #: Looked up once per group: the first waiting caller makes the shared future from it.
        self.loop = asyncio.get_running_loop()
        self.items: list[PreparedEvent] = []
        #: The one future every waiting caller awaits, resolved (with None) once the group is
        #: written; each caller then reads its own slice of the outcomes (or the error) from the
        #: group. A caller's cancellation cancels it for all: the others wait on a new one.
        self.written: asyncio.Future[None] | None = None
        self.writing = False
        self.done = False
        self.outcomes: list[Outcome] = []
        self.error: BaseException | None = None


class AutoBatcher:
    """Coalesces concurrent :meth:`submit` calls into one write per loop tick (or per full group)."""

    def __init__(self, write_outcomes: WriteOutcomes, *, max_batch: int = 1000, max_in_flight: int = 8) -> None:
        self._write = write_outcomes
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        #: The cap of a solo group: half the fan-in of the last solo tick, or ``max_batch`` (no split).
        self._split_at = max_batch
        self._in_flight = 0  # groups being written
        self._slot_waiters: deque[asyncio.Future[None]] = deque()  # closed groups waiting for a write slot
        self._open: _Group | None = None
        self._unwritten = 0  # groups opened and not written yet
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
            solo = self._unwritten == 0
            group = self._open = _Group(self._split_at if solo else self._max_batch, solo=solo)
            self._unwritten += 1
        start = len(group.items)
        group.items.extend(items)
        end = len(group.items)
        full = end >= group.cap
        if full:
            self._open = None  # the next caller starts a new group
        if leader or full:
            # One shield per group: a cancelled leader or filler still writes its group, then raises.
            with anyio.CancelScope(shield=True):
                if not full:
                    await self._gather(group)
                if not group.writing:  # (a filler may have written it while the leader waited)
                    await self._write_group(group)  # a full group at once: the tick's later callers form the next
        while not group.done:  # not written by this caller: wait for it with the group's other callers
            written = group.written
            if written is None or written.cancelled():
                written = group.written = group.loop.create_future()
            try:
                await written
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():  # this caller was cancelled: it stops waiting
                    raise
                # Another caller of the group was cancelled, and with it the future they shared.
        if group.error is not None:
            raise _error_for(group.error, group.items[start:end])
        return group.outcomes[start:end]

    async def _gather(self, group: _Group) -> None:
        """Let this tick's callers join the leader's group (the caller holds a shield), then close it."""
        await anyio.lowlevel.checkpoint()
        if group.solo and self._max_in_flight > 1:  # (one write slot: two halves could not overlap)
            self._learn_split(group)
        if self._open is group:
            self._open = None

    def _learn_split(self, group: _Group) -> None:
        """Set the next solo group's cap to half this tick's fan-in (every caller of the tick has
        joined by now: this group, or the group opened when a split closed it), or no split when
        a half would be under :data:`MIN_SPLIT`."""
        after = self._open
        fan_in = len(group.items) + (len(after.items) if after is not None and after is not group else 0)
        half = fan_in // 2
        self._split_at = min(half, self._max_batch) if half >= MIN_SPLIT else self._max_batch

    async def _write_group(self, group: _Group) -> None:
        """Write the group once (the caller holds a shield: others wait for it), then resolve every
        waiting caller."""
        group.writing = True
        try:
            if self._in_flight < self._max_in_flight:
                self._in_flight += 1  # a free slot: no yield before the write starts
            else:
                slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._slot_waiters.append(slot)
                await slot  # the slot is handed over by the write that frees it
            try:
                group.outcomes = await self._write(group.items)
            except Exception as exc:
                group.error = exc
            finally:
                if self._slot_waiters:
                    self._slot_waiters.popleft().set_result(None)  # hand the slot to the next group
                else:
                    self._in_flight -= 1
        finally:
            if group.error is None and len(group.outcomes) != len(group.items):  # interrupted (not an Exception)
                group.error = BusError("the batched write was interrupted; its outcome is not known")
            group.done = True
            self.groups_written += 1
            self._resolve(group)
            self._unwritten -= 1
            if self._unwritten == 0 and self._drained is not None:
                self._drained.set()
                self._drained = None

    @staticmethod
    def _resolve(group: _Group) -> None:
        written = group.written
        if written is not None and not written.done():  # (done: cancelled; its callers look at group.done)
            written.set_result(None)

    async def drain(self) -> None:
        """Return once every group that was submitted has been written (used on close)."""
        while self._unwritten:
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
