"""The consume loop's counters, and the signal that wakes whoever waits on them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

if TYPE_CHECKING:
    from ..observability._metrics import BusMetrics

__all__ = ["ConsumerStats", "StatsBoard"]


class ConsumerStats(msgspec.Struct, kw_only=True):
    """Counters of a consume loop. Outcomes (handled, duplicates, dead-lettered) count once Redis
    confirmed the ack, so a test or a health check can wait on them."""

    #: Entries read: new ones and, at start, this consumer's own pending ones.
    read: int = 0
    #: Entries claimed from idle consumers (or from ourselves after a failed delivery).
    reclaimed: int = 0
    #: Entries whose handlers all succeeded (acked and marked).
    handled: int = 0
    #: Entries whose event was already processed: acked without running handlers.
    duplicates: int = 0
    #: Deliveries that failed after their in-process retries (left pending or dead-lettered).
    failed: int = 0
    #: In-process handler retries, and handler calls that hit ``handler_timeout_s``.
    retries: int = 0
    timeouts: int = 0
    #: Entries moved to a dead-letter stream, of which ``invalid`` were poison input.
    dead_lettered: int = 0
    invalid: int = 0
    #: Of those, written to a dead-letter stream already past BUS_DEAD_LETTER_MAXLEN (kept, never trimmed).
    dead_lettered_over_cap: int = 0
    #: Outages that paused this loop (Redis refused writes), and handler failures they caused that
    #: were not counted as deliveries (the handler ran again after the resume).
    outages: int = 0
    outage_failures: int = 0
    #: Entries acked (handled + duplicates + dead-lettered + trimmed_pending).
    acked: int = 0
    #: Entries trimmed before the group read them; pending entries deleted before processing.
    trimmed_unread: int = 0
    trimmed_pending: int = 0
    #: Entries removed by ``trim_policy="safe"``.
    safely_trimmed: int = 0
    #: NOGROUP met (the groups were recreated), and transport failures retried.
    group_recreations: int = 0
    #: Streams whose group this consumer found lost and recreated (each loss counted by one consumer).
    lost_groups: int = 0
    reconnects: int = 0


class StatsBoard:
    """The counters plus a change signal: :meth:`notify` wakes :meth:`wait_until` callers."""

    __slots__ = ("_changed", "_waiters", "group", "metrics", "stats", "streams")

    def __init__(self, stats: ConsumerStats | None = None, metrics: BusMetrics | None = None, group: str = "") -> None:
        self.stats = stats if stats is not None else ConsumerStats()
        #: Prometheus metrics, when the process exports them (None: the hot paths skip them).
        self.metrics = metrics
        self.group = group
        #: ``(event_type, channel, group)`` per stream of typed events, for counts made per stream.
        self.streams: dict[str, tuple[str, str, str]] = {}
        self._changed = anyio.Event()
        self._waiters = 0

    def labels(self, delivery: Any) -> tuple[str, str, str]:
        """``(event_type, channel, group)`` of a delivery (a flat workflow entry: its type, channel "")."""
        return (getattr(delivery, "event_type", "") or "", getattr(delivery, "channel", "") or "", self.group)

    def stream_labels(self, stream: str) -> tuple[str, str, str]:
        """The metric labels of one of the loop's streams (a flat-entry stream: type and channel "")."""
        return self.streams.get(stream) or ("", "", self.group)

    def notify(self) -> None:
        """The counters changed."""
        if self._waiters:  # an Event per notification only when someone waits
            changed, self._changed = self._changed, anyio.Event()
            changed.set()

    async def wait_until(self, predicate: Callable[[ConsumerStats], bool]) -> ConsumerStats:
        """Wait until ``predicate(stats)`` holds (re-checked whenever the counters change)."""
        self._waiters += 1
        try:
            while not predicate(self.stats):
                await self._changed.wait()
        finally:
            self._waiters -= 1
        return self.stats
