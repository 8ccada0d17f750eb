"""The acker: one buffer of finished entries, flushed as one MULTI/EXEC (group commit).

Workers, the dispatcher and the reader put entries whose outcome is known (``Entry.outcome``)
into the :class:`AckBuffer`; workers append the entries they handled to ``AckBuffer.done`` (a list
of its own: no outcome to store or test per entry) and wake the acker before they await. The acker
flushes whatever finished since its last flush: the dead letters, one XACK per stream, and the
event and handler markers with their TTL, in one transaction. Outcomes are counted once Redis
confirmed them. On Redis Cluster the flush is one transaction per slot, phase after phase (see
:meth:`AckBuffer._send_per_slot`).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from .._errors import AuthenticationError, BackendError, GroupMissingError
from .._redis import redis_errors, translate_error
from ..wire import (
    EXEC,
    MULTI,
    SlotBlock,
    fields_dict,
    is_cluster,
    pack,
    pack_command,
    round_trip,
    slot_of,
    slot_transactions,
)
from ._entry import DEAD, DROPPED, DUPLICATE, MARKS, PROGRESS, Entry
from ._health import outage_cause

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ._deadletter import DeadLetterCap, DeadLetterFormat
    from ._entry import InFlight
    from ._markers import Markers
    from ._stats import StatsBoard

__all__ = ["AckBuffer"]

log = logging.getLogger("bus.consume")


class AckBuffer:
    """Entries with a known outcome, waiting for the next flush, and the flush itself."""

    def __init__(
        self,
        client: aioredis.Redis,
        group: str,
        markers: Markers | None,
        dead_letters: DeadLetterFormat,
        in_flight: InFlight,
        board: StatsBoard,
        timeout_s: float,
        cap: DeadLetterCap | None = None,
    ) -> None:
        self.client = client
        self.group = group
        self.markers = markers
        self.dead_letters = dead_letters
        self.in_flight = in_flight
        self.board = board
        self.timeout_s = timeout_s
        #: BUS_DEAD_LETTER_MAXLEN: each flush that dead-letters reads the targets' lengths (XLEN).
        self.cap = cap
        #: Entries with another outcome than handled, as :meth:`put` queued them.
        self.entries: list[Entry] = []
        #: Entries whose handlers all succeeded (their ``outcome`` is not set): workers append to this
        #: very list (a flush never replaces it) and call :meth:`wake`; :meth:`handled` does both.
        self.done: list[Entry] = []
        self.wakeup = anyio.Event()
        self._woken = False  # ``wakeup.is_set()`` without two calls per entry put
        #: Called with a GroupMissingError met in a flush (the entries' group is gone: nothing to ack).
        self.on_nogroup: Callable[[BaseException], None] = _ignore
        self._cluster = is_cluster(client)

    def put(self, entry: Entry, outcome: int) -> None:
        """Queue ``entry`` with its outcome (a handled one: :meth:`handled`) and wake the acker."""
        entry.outcome = outcome
        self.entries.append(entry)
        if not self._woken:
            self.wake()

    def handled(self, entry: Entry) -> None:
        """Queue an entry whose handlers all succeeded (XACK and the event marker) and wake the acker."""
        self.done.append(entry)
        if not self._woken:
            self.wake()

    def put_all(self, entries: list[Entry], outcome: int) -> None:
        """:meth:`put` of several entries."""
        if entries:
            for entry in entries:
                entry.outcome = outcome
            self.entries += entries
            self.wake()

    def wake(self) -> None:
        """Wake the acker (something was queued, or the workers are done)."""
        self._woken = True
        self.wakeup.set()

    def __len__(self) -> int:
        """Entries waiting for the next flush."""
        return len(self.entries) + len(self.done)

    async def wait(self) -> None:
        """Until something was queued."""
        await self.wakeup.wait()
        self.wakeup = anyio.Event()
        self._woken = False

    async def flush(self) -> None:
        """One MULTI/EXEC: dead letters, one XACK per stream, markers with their TTL."""
        batch = self.entries[:]
        done = self.done[:]
        n_handled = len(done)
        ids: dict[str, list[bytes]] = {}
        event_members: dict[str, list[bytes]] = {}
        handler_members: dict[str, list[bytes]] = {}
        dead: list[tuple[str, bytes]] = []
        stream, tenant = "", ""
        stream_ids: list[bytes] = []
        members: list[bytes] = []
        n_dead = n_invalid = n_dups = n_dropped = n_marks = 0
        all_hold = True  # every handled entry holds its event member (else: released one by one)
        targets: dict[str, list[Entry]] = {}
        for entry in done:  # runs of one stream and of one tenant: one dict lookup per run
            if entry.stream != stream:
                stream = entry.stream
                stream_ids = ids.setdefault(stream, [])
            stream_ids.append(entry.entry_id)
            member = entry.event_member
            if member:
                if entry.delivery.tenant_id != tenant:
                    tenant = entry.delivery.tenant_id
                    members = event_members.setdefault(tenant, [])
                members.append(member)
                if not entry.holds:
                    all_hold = False
        for entry in batch:
            outcome = entry.outcome
            if outcome == DEAD:
                n_dead += 1
                failure = entry.failure
                assert entry.fields is not None and failure is not None
                n_invalid += failure.reason == "invalid"
                target, fields = self.dead_letters.build(
                    entry.stream, entry.entry_id.decode(), fields_dict(entry.fields), entry.deliveries, failure
                )
                dead.append((target, pack("XADD", target, "*", *itertools.chain(*fields.items()))))
                targets.setdefault(target, []).append(entry)
            elif outcome in (MARKS, PROGRESS):
                n_marks += 1
                handler_members.setdefault(entry.delivery.tenant_id, []).extend(entry.members or ())
                continue
            elif outcome == DUPLICATE:
                n_dups += 1
            else:
                n_dropped += 1
            ids.setdefault(entry.stream, []).append(entry.entry_id)
        acks = [
            (stream, pack_command((b"XACK", stream, self.group), sids, ordered=False)) for stream, sids in ids.items()
        ]
        marks: list[tuple[str, bytes]] = []
        if self.markers is not None:
            for members_by_tenant, key_of in (
                (event_members, self.markers.events_key),
                (handler_members, self.markers.handlers_key),
            ):
                for tenant, members in members_by_tenant.items():
                    key = key_of(tenant)
                    marks.append((key, self.markers.add_command(key, members)))
        if self._cluster:  # the cap's XLEN rides in each dead-letter stream's own slot transaction
            cap = self.cap
            xlens = [(target, pack("XLEN", target)) for target in targets] if cap is not None else []
            dead_results, *_ = await self._send_per_slot((dead + xlens, marks, acks), retry_safe=not n_dead)
            if cap is not None and xlens:
                for (target, added), length in zip(targets.items(), dead_results[len(dead) :], strict=True):
                    if isinstance(length, int):
                        cap.seen(target, length, added, self.board)
        else:
            lens = [pack("XLEN", target) for target in targets] if self.cap is not None else []
            commands = [MULTI, *(c for _, c in (*dead, *acks, *marks)), *lens, EXEC]
            results = await self._send(commands, retry_safe=not n_dead)
            if self.cap is not None and targets:
                lengths = results[len(results) - len(targets) :]
                for (target, added), length in zip(targets.items(), lengths, strict=True):
                    if isinstance(length, int):
                        self.cap.seen(target, length, added, self.board)
        # Done: drop exactly what was flushed (workers may have appended meanwhile).
        del self.entries[: len(batch)]
        del self.done[:n_handled]
        stats = self.board.stats
        stats.handled += n_handled
        stats.duplicates += n_dups
        stats.dead_lettered += n_dead
        stats.invalid += n_invalid
        stats.trimmed_pending += n_dropped
        stats.acked += n_handled + n_dups + n_dead + n_dropped
        if self.board.metrics is not None:
            self._count(done, batch, ids)
        if n_dropped:
            log.error("%d pending entries were trimmed or deleted before they were processed", n_dropped)
        if all_hold:
            self.in_flight.release_held(ids, event_members.values())
        else:
            self.in_flight.release_all(done)
        if batch:
            self.in_flight.release_all(e for e in batch if e.outcome != PROGRESS)
        self.board.notify()

    def _count(self, done: list[Entry], others: list[Entry], ids: dict[str, list[bytes]]) -> None:
        """The flushed outcomes into the Prometheus metrics, once per batch and stream: one add per
        counter, each histogram fed the batch's values at once (:meth:`BusMetrics.observe_many`).
        ``done`` are the handled entries, ``others`` the rest; with no others (the common case)
        ``ids`` (the acked entry ids by stream) are exactly the handled ones."""
        metrics, board = self.board.metrics, self.board
        assert metrics is not None
        now = time.time()
        if not others and len(ids) == 1:
            handled = ids
            took_by = {done[0].stream: [e.took for e in done]}
        else:
            handled, took_by = {}, {}
            for entry in done:
                stream = entry.stream
                if stream not in handled:
                    handled[stream], took_by[stream] = [], []
                handled[stream].append(entry.entry_id)
                took_by[stream].append(entry.took)
            for entry in others:
                outcome = entry.outcome
                if outcome == DUPLICATE:
                    metrics.inc("duplicates_skipped", board.labels(entry.delivery))
                elif outcome == DEAD:
                    reason = entry.failure.reason if entry.failure is not None else ""
                    metrics.inc("dead_lettered", (*board.labels(entry.delivery), reason))
                elif outcome == DROPPED:
                    metrics.inc("trimmed_pending", board.stream_labels(entry.stream))
        for stream, entry_ids in handled.items():
            key = board.stream_labels(stream)
            metrics.inc("handled", key, len(entry_ids))
            metrics.observe_many("handler_duration_seconds", key, took_by[stream])
            # When Redis wrote each entry: the milliseconds part of its id ("<ms>-<seq>").
            stamps = list(map(int, b"-".join(entry_ids).split(b"-")[::2]))
            metrics.observe_ages("end_to_end_latency_seconds", key, now, stamps)

    async def _send(self, commands: list[bytes], *, retry_safe: bool = True) -> list[Any]:
        """Send the transaction; its replies. A Redis-wide refusal of a command inside it (a marker
        script refused for OOM) is raised when the whole flush can be sent again (no dead letters
        in it: XACK and marker adds repeat harmlessly), so the loop pauses and retries it."""
        what = "ack flush (MULTI/EXEC)"
        with redis_errors(what):
            replies = await round_trip(self.client, b"".join(commands), len(commands), self.timeout_s)
        results = replies[-1]
        if not isinstance(results, list):  # EXECABORT (a command was refused: nothing ran) or an error
            refused = next((r for r in replies if isinstance(r, Exception)), None)
            if refused is None:
                raise BackendError(f"{what}: unexpected EXEC reply {results!r}")
            raise translate_error(refused, what) from refused
        return self._check(results, retry_safe)

    async def _send_per_slot(
        self, phases: tuple[list[tuple[str, bytes]], ...], *, retry_safe: bool = True
    ) -> list[list[Any]]:
        """Redis Cluster: one MULTI/EXEC per slot, phase after phase: the dead letters (and the
        cap's XLEN of their streams), then the markers, then the XACKs. A flush cut off between
        phases leaves entries dead-lettered or marked but still pending: redelivered, they are
        skipped as duplicates, never lost. The results of each phase, in the order of its commands."""
        what = "ack flush (MULTI/EXEC per slot)"
        out: list[list[Any]] = []
        for phase in phases:
            by_slot: dict[int, tuple[SlotBlock, set[str], list[int]]] = {}
            for i, (key, command) in enumerate(phase):
                slot = slot_of(key)
                entry = by_slot.get(slot)
                if entry is None:
                    entry = by_slot[slot] = (SlotBlock(slot, []), set(), [])
                entry[0].commands.append(command)
                entry[1].add(key)
                entry[2].append(i)
            results: list[Any] = [None] * len(phase)
            out.append(results)
            if not by_slot:
                continue
            for block, keys, _ in by_slot.values():
                block.n_keys = len(keys)
            blocks = [b for b, _, _ in by_slot.values()]
            await slot_transactions(self.client, blocks, self.timeout_s)
            for block, _, positions in by_slot.values():
                if not isinstance(block.replies, list):
                    error = block.replies
                    raise translate_error(error, what) from (error if isinstance(error, BaseException) else None)
                for pos, reply in zip(positions, self._check(block.replies, retry_safe), strict=True):
                    results[pos] = reply
        return out

    def _check(self, results: list[Any], retry_safe: bool) -> list[Any]:
        """The run-time errors of one transaction's commands: auth raises, NOGROUP is reported, a
        Redis-wide refusal raises when ``retry_safe`` (the loop pauses, then sends it all again),
        others are logged; the results."""
        for reply in results:
            if isinstance(reply, Exception):
                failure = translate_error(reply, "ack flush")
                if isinstance(failure, AuthenticationError):
                    raise failure from reply
                if isinstance(failure, GroupMissingError):
                    self.on_nogroup(failure)  # after a restart without persistence: nothing left to ack
                elif retry_safe and outage_cause(failure) is not None:
                    raise failure from reply
                else:
                    log.warning("ack flush: %s", failure)
        return results

    def release_unflushed(self) -> int:
        """Forget what could not be flushed (it stays pending in Redis); how many entries that was."""
        left = [*self.done, *(e for e in self.entries if e.outcome != PROGRESS)]
        self.in_flight.release_all(left)
        self.entries.clear()
        self.done.clear()
        return len(left)


def _ignore(exc: BaseException) -> None:
    return None
