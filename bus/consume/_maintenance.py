"""Maintenance beside the reader: keep-alive of in-flight entries, reclaim of idle ones, trimming
checks, safe trimming, and NOGROUP recovery when any of those meets a lost group."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from .._errors import AuthenticationError, BackendError, GroupMissingError
from .._inspect import group_trimmed_unread
from .._redis import redis_errors
from ._dispatch import send_batch
from ._pending import claim_idle, keep_alive, trim_safely

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from anyio.streams.memory import MemoryObjectSendStream

    from .._settings import BusSettings
    from ._entry import Entry, InFlight
    from ._groups import Groups
    from ._health import BackendHealth
    from ._stats import StatsBoard
    from ._subscription import StreamSubscription

__all__ = ["Maintenance"]

log = logging.getLogger("bus.consume")

#: Claim rounds per reclaim pass: up to this many batches per stream are taken over at once.
_RECLAIM_ROUNDS = 20


class Maintenance:
    """The periodic work of one consume loop (see the module docstring)."""

    def __init__(
        self,
        client: aioredis.Redis,
        spec: StreamSubscription,
        settings: BusSettings,
        groups: Groups,
        in_flight: InFlight,
        board: StatsBoard,
        health: BackendHealth | None = None,
    ) -> None:
        self.client = client
        self.health = health
        self.spec = spec
        self.settings = settings
        self.groups = groups
        self.in_flight = in_flight
        self.board = board
        self._trim_seen: dict[str, int] = {}

    async def run(self, batches: MemoryObjectSendStream[list[Entry]]) -> None:
        """Keep-alive every tick; reclaim, trimming checks and safe trimming every reclaim interval."""
        spec = self.spec
        keep_alive_s = spec.timing.claim_idle_ms / 4000
        tick = min(spec.timing.reclaim_interval_s, keep_alive_s)
        next_reclaim = anyio.current_time() + spec.timing.reclaim_interval_s
        async with batches:
            while True:
                await anyio.sleep(tick)
                if self.health is not None and self.health.paused:
                    continue  # no claims (nor keep-alives, nor trims) while Redis refuses
                try:
                    await self.keep_alive(keep_alive_s * 2)
                    if anyio.current_time() >= next_reclaim:
                        next_reclaim = anyio.current_time() + spec.timing.reclaim_interval_s
                        await self.reclaim(batches)
                        await self.check_trimming()
                        if self.settings.trim_policy == "safe":
                            removed = await trim_safely(self.client, spec.streams, self.settings.max_len)
                            if removed:
                                self.board.stats.safely_trimmed += sum(removed.values())
                                self.board.notify()
                except AuthenticationError:
                    raise
                except BackendError as exc:
                    # A pipelined XPENDING/XCLAIM reports NOGROUP inside a wrapped message.
                    if isinstance(exc, GroupMissingError) or "NOGROUP" in str(exc):
                        await self._recover(exc)
                    elif self.health is not None and await self.health.confirm(exc, "maintenance"):
                        pass  # paused: the outage is logged once, by the health
                    else:
                        log.warning("maintenance failed, retrying in %.2fs: %s", tick, exc)

    async def _recover(self, exc: BaseException) -> None:
        try:
            await self.groups.recover(exc)
        except AuthenticationError:
            raise
        except BackendError as again:
            log.warning("could not recreate consumer group %r: %s", self.spec.group, again)

    async def keep_alive(self, older_than_s: float) -> None:
        """Reset the idle time of entries in flight here for ``older_than_s`` (XCLAIM JUSTID)."""
        stale = self.in_flight.stale(older_than_s)
        if not stale:
            return
        now = anyio.current_time()
        spec = self.spec
        await keep_alive(self.client, spec.group, spec.consumer, stale, min_idle_ms=spec.timing.claim_idle_ms // 4)
        self.in_flight.touch(stale, now)

    async def reclaim(self, batches: MemoryObjectSendStream[list[Entry]]) -> None:
        """Claim idle entries (a dead peer's, or ours after a failure) and feed them to the dispatcher."""
        # A dead peer may leave far more than one batch behind: keep claiming (claimed entries
        # are no longer idle, so each round finds the next ones) while whole batches come back,
        # a bounded number of rounds per pass; the batch stream's backpressure paces us.
        spec = self.spec
        for _ in range(_RECLAIM_ROUNDS):
            claimed = await claim_idle(
                self.client,
                spec.group,
                spec.consumer,
                spec.streams,
                min_idle_ms=spec.timing.claim_idle_ms,
                count=spec.count,
                skip=self.in_flight.keys(),
            )
            if not claimed:
                return
            self.board.stats.reclaimed += sum(1 for c in claimed if c[2] is not None)
            if self.board.metrics is not None:
                for c in claimed:
                    if c[2] is not None:  # (None: deleted while pending, not reclaimed)
                        self.board.metrics.inc("reclaimed", self.board.stream_labels(c[0]))
            log.info("claimed %d idle entries", len(claimed))
            await send_batch(batches, self.in_flight.admit_pending(claimed), self.in_flight)
            if len(claimed) < spec.count:
                return

    async def check_trimming_safely(self) -> None:
        """:meth:`check_trimming`, a transport failure only logged (at start-up)."""
        try:
            await self.check_trimming()
        except AuthenticationError:
            raise
        except BackendError as exc:
            log.warning("trimming check failed: %s", exc)

    async def check_trimming(self) -> None:
        """Count entries trimmed before this group read them (see :mod:`bus._inspect`)."""
        streams = self.spec.streams
        with redis_errors("XINFO (trimming check)"):
            pipe = self.client.pipeline(transaction=False)
            for stream in streams:
                pipe.xinfo_stream(stream)
                pipe.xinfo_groups(stream)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        for i, stream in enumerate(streams):
            sinfo, groups = replies[2 * i], replies[2 * i + 1]
            if isinstance(sinfo, Exception) or isinstance(groups, Exception):
                continue  # a missing stream or group: the reader recreates it
            mine = next((g for g in groups if _text(g.get("name")) == self.spec.group), None)
            if mine is None:
                continue
            bound, is_exact = group_trimmed_unread(sinfo, mine)
            if bound is None:
                continue
            if is_exact:
                self._count_trimmed(stream, bound)
            else:
                # Behind, past any gap: no range scan on the hot path. Redis keeps the count in
                # entries-read, so it is exact the next time the group has a gap or catches up;
                # at most ``bound`` were lost (lets a re-based counter, fakeredis, count new gaps).
                self._trim_seen[stream] = min(self._trim_seen.get(stream, 0), bound)

    def _count_trimmed(self, stream: str, lost: int) -> None:
        seen = self._trim_seen.get(stream, 0)
        self._trim_seen[stream] = lost
        if lost > seen:
            self.board.stats.trimmed_unread += lost - seen
            if self.board.metrics is not None:
                self.board.metrics.inc("trimmed_unread", self.board.stream_labels(stream), lost - seen)
            log.error(
                "%d entries of %s were trimmed before group %r read them (lost to this group; "
                "raise REDIS_STREAM_MAX_LENGTH or use trim_policy='safe')",
                lost - seen,
                stream,
                self.spec.group,
            )
            self.board.notify()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
