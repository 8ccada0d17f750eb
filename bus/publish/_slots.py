"""Publishing on Redis Cluster: one MULTI/EXEC per hash slot, in the reference's order.

The reference's keys carry no hash tag, so one publish's entries (the workflow entry, the
``global`` copy, the ``internal-notifications`` and ``emailservice::v7`` copies) live in
different slots, and Redis refuses a transaction across slots (CROSSSLOT). A batch is
therefore written in *phases*: phase *k* writes the *k*-th stream of every event (the
workflow entry first, then the channel copies in the fan-out order), grouped by slot into one
MULTI/EXEC per slot; the slots of one node go out in one round trip, the nodes in parallel
(:func:`bus.wire.slot_transactions`). Phase *k+1* starts only when phase *k* was confirmed,
and an event whose phase-*k* write failed writes nothing more. So whatever stops a publish
(a crash, a lost node) leaves each event with a *prefix* of its entries: the workflow entry,
maybe some copies, in the order the reference itself writes them (its XADDs are not atomic
either). A retry with the same :class:`PreparedEvent` (the same event ids) rewrites the whole
event; the consumers' processed markers and the workflow converter's marker absorb the
entries that were already there.

An event whose keys all hash to one slot (every event with ``BUS_KEY_HASHTAG``, whose ``{tag}``
is in every key) is written whole in the first phase, in one MULTI/EXEC: the single-node
atomicity holds for it. Within a slot, a transaction is still all or nothing at queue time; Redis's run-time errors
(WRONGTYPE) do not roll back, as on a single node. An event partly written comes back as
:class:`PartialWriteError` listing what exists; one whose round trip failed after sending as
``PublishOutcomeUnknownError``.

Idempotent publishes run their script (marker check, every XADD, marker set) in one slot:
on a cluster that holds only when all of the event's keys hash to one slot, so an idempotent
publish whose keys span slots is refused before anything is written (use ``event_id``-based
retries, which the consumers dedupe, instead).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis.exceptions as rex

from .._errors import BackendError, BusError, PublishOutcomeUnknownError
from .._redis import translate_error
from .._text import text
from ..wire import SlotBlock, slot_of, slot_transactions, split_commands
from ._results import Outcome, PartialWriteError, PreparedEvent, PublishResult

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["write_per_slot"]

#: Awaited after each confirmed phase with its number (fault injection in tests: cancel here
#: to stop a publish between slots as a crash would).
PhaseHook = Callable[[int], Awaitable[None]]


class _Event:
    """One event's progress over the phases."""

    __slots__ = ("commands", "duplicate", "error", "failed", "ids", "p", "whole", "written")

    def __init__(self, p: PreparedEvent, commands: list[bytes]) -> None:
        self.p = p
        self.commands = commands
        #: Every key in one slot: all commands go in the first phase, in one transaction.
        self.whole = p.script is None and len({slot_of(s) for s in p.streams}) == 1
        self.ids = p.event_ids or (p.event_id,) * len(p.streams)
        self.written: list[tuple[str, str, str]] = []
        self.failed: list[tuple[str, str, str]] = []
        self.error: BusError | None = None
        #: An idempotent publish seen before: the first publish's result (nothing written).
        self.duplicate: PublishResult | None = None


async def write_per_slot(
    client: aioredis.Redis,
    prepared: Sequence[PreparedEvent],
    timeout_s: float | None,
    after_phase: PhaseHook | None = None,
) -> tuple[list[Outcome], int]:
    """Write ``prepared`` phase by phase (see the module docstring): an outcome per event, and
    how many phases (round trips per node) it took."""
    events: list[_Event] = []
    outcomes: list[Outcome | None] = [None] * len(prepared)
    for i, p in enumerate(prepared):
        if p.script is not None:
            keys = _script_keys(p)
            if len({slot_of(k) for k in keys}) > 1:
                outcomes[i] = BackendError(
                    f"idempotent publish of {p.event_type} {p.event_id}: its keys ({', '.join(keys)}) span "
                    "several hash slots of the Redis Cluster and its script needs one; nothing was written. "
                    "Retry with the same event_id instead (consumers dedupe on it)"
                )
                events.append(_Event(p, []))
            else:
                events.append(_Event(p, [p.packed(use_sha=False)]))
        else:
            events.append(_Event(p, split_commands(p.command, p.n_commands)))
    n_phases = max((1 if e.whole else len(e.commands) for e in events), default=0)
    for phase in range(n_phases):
        blocks: dict[int, tuple[SlotBlock, list[tuple[_Event, int]]]] = {}
        for i, event in enumerate(events):
            if outcomes[i] is not None or event.error is not None or phase >= len(event.commands):
                continue
            if event.whole and phase:
                continue
            for k in range(len(event.commands)) if event.whole else (phase,):
                stream = _stream_key(event.p, k)
                slot = slot_of(stream)
                entry = blocks.get(slot)
                if entry is None:
                    entry = blocks[slot] = (SlotBlock(slot, [], n_keys=0), [])
                block, members = entry
                block.commands.append(event.commands[k])
                if all(_stream_key(m.p, j) != stream for m, j in members):
                    block.n_keys += 1
                members.append((event, k))
        if not blocks:
            break
        await slot_transactions(client, [b for b, _ in blocks.values()], timeout_s)
        for block, members in blocks.values():
            _settle(block, members)
        if after_phase is not None:
            await after_phase(phase)
    for i, event in enumerate(events):
        if outcomes[i] is None:
            outcomes[i] = _outcome(event)
    return outcomes, n_phases  # type: ignore[return-value]


def _stream_key(p: PreparedEvent, phase: int) -> str:
    """The key phase ``phase`` of ``p`` writes (an idempotent publish: its marker key decides the slot)."""
    return _script_keys(p)[0] if p.script is not None else p.streams[phase]


def _script_keys(p: PreparedEvent) -> list[str]:
    """The KEYS of an idempotent publish's script: the marker, then the streams."""
    assert p.script is not None
    # The packed tail: $n numkeys, then each key as a bulk string (keys hold no CR LF), then argv.
    tail = p.script[1]
    n_keys = int(tail.split(b"\r\n", 2)[1])
    parts = tail.split(b"\r\n", 2 + 2 * n_keys)
    return [parts[3 + 2 * k].decode() for k in range(n_keys)]


def _settle(block: SlotBlock, members: list[tuple[_Event, int]]) -> None:
    """Record one slot's transaction outcome on each of its events (with the index of the stream written)."""
    replies = block.replies
    if isinstance(replies, list):
        for (event, phase), reply in zip(members, replies, strict=True):
            stream = _stream_key(event.p, phase)
            if event.p.script is not None:
                _script_reply(event, reply)
            elif isinstance(reply, rex.ResponseError):
                event.failed.append((event.ids[phase], stream, str(reply)))
                event.error = translate_error(reply, f"publish of {event.p.event_type} {event.p.event_id} to {stream}")
            else:
                event.written.append((event.ids[phase], stream, text(reply)))
        return
    unknown = not isinstance(replies, rex.ResponseError)  # a connection error or timeout after sending
    for event, phase in members:
        stream = _stream_key(event.p, phase)
        event.failed.append((event.ids[phase], stream, str(replies)))
        if unknown:
            event.error = PublishOutcomeUnknownError(
                f"the connection failed after {event.p.event_type} {event.p.event_id} was sent to {stream} "
                f"({type(replies).__name__}: {replies}); it may or may not be written. Write the same prepared "
                "event again (its ids are kept; consumers dedupe on them)",
                tuple(event.ids),
            )
        else:
            event.error = translate_error(replies, f"publish to {stream} (transaction refused, nothing was written)")


def _script_reply(event: _Event, reply: Any) -> None:
    """An idempotent publish's script reply (one slot: all of it or nothing)."""
    p = event.p
    if isinstance(reply, rex.ResponseError):
        event.error = translate_error(reply, f"idempotent publish of {p.event_type} {p.event_id}")
    elif not isinstance(reply, list) or not reply:
        event.error = BackendError(f"unexpected reply to the idempotent publish of {p.event_type}: {reply!r}")
    elif reply[0] == 0:
        first, *ids = text(reply[1]).split(",")
        first_ids = dict(zip(p.streams, ids, strict=True)) if len(ids) == len(p.streams) else None
        event.duplicate = PublishResult(first, p.event_type, {}, duplicate=True, event_ids=first_ids)
    else:
        event.written = [(i, s, text(r)) for i, s, r in zip(event.ids, p.streams, reply[1:], strict=True)]


def _outcome(event: _Event) -> Outcome:
    """The event's result, its error (nothing written), or a :class:`PartialWriteError`."""
    p = event.p
    if event.duplicate is not None:
        return event.duplicate
    if event.error is None:
        entries = {s: e for _, s, e in event.written}
        event_ids = dict(zip(p.streams, p.event_ids, strict=True)) if p.event_ids else None
        return PublishResult(p.event_id, p.event_type, entries, event_ids=event_ids)
    if not event.written:
        return event.error
    done = {s for _, s, _ in event.written} | {s for _, s, _ in event.failed}
    failed = event.failed + [
        (i, s, "not written: an earlier write of this event failed")
        for i, s in zip(event.ids, p.streams, strict=True)
        if s not in done
    ]
    return PartialWriteError(
        f"{p.event_type} {p.event_id}: written to {', '.join(s for _, s, _ in event.written)} only, on a Redis "
        f"Cluster (one transaction per slot): {event.error}. Write the same prepared event again to complete it",
        written=event.written,
        failed=failed,
    )
