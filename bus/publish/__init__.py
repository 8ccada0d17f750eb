"""Publishing: validate and encode (``prepare``, pure), then write in one round trip (``write``).

A :class:`PreparedEvent` is one logical publish: the envelope on one or more channels' per-type
streams plus, on ``global``, the workflow stream entry. Everything is validated and packed into
RESP bytes by :meth:`Preparer.prepare` before any I/O, so an invalid event never writes.

:meth:`Publisher.write` sends any number of prepared events as ONE round trip: the XADDs
between MULTI and EXEC (a lone command goes without them). Atomicity, precisely:

- MULTI/EXEC runs all queued XADDs or, when Redis refuses one at queue time (NOPERM, OOM,
  syntax), none (EXECABORT): nothing is written and the translated error is raised.
- A command that fails at run time inside EXEC (WRONGTYPE: some other program put a non-stream
  value at one of our stream names) does NOT roll back the others: Redis has no rollback. We
  raise :class:`PartialWriteError` listing exactly what was written and what was refused.
  Our own entries cannot fail that way otherwise: they are validated up front.
- The connection failing after the bytes went out raises ``PublishOutcomeUnknownError`` with
  the event ids; nothing is retried (a blind retry could write twice). A failure to connect
  (nothing sent) is retried with tenacity.

Idempotent publishes (``idempotency_key``) go through one Lua script per event, inside the
same MULTI/EXEC: it checks a marker key ``{prefix}idempotency:{tenant}:{key}``, writes every
entry, then sets the marker to the event id for ``idempotency_window_s``; a repeat within the
window writes nothing and returns the first event id. See :data:`IDEMPOTENT_PUBLISH_SCRIPT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from schemas import Registry

from .._keys import Keys
from .._settings import BusSettings
from ..wire import count_connect_attempts
from ._prepare import Preparer
from ._results import Outcome, PartialWriteError, PreparedEvent, PublishResult, results_or_raise
from ._script import IDEMPOTENT_PUBLISH_SCRIPT, IDMP_PRODUCER
from ._writer import Writer

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ..observability._metrics import BusMetrics
    from ..observability._tracing import Tracing

__all__ = [
    "IDEMPOTENT_PUBLISH_SCRIPT",
    "IDMP_PRODUCER",
    "Outcome",
    "PartialWriteError",
    "PreparedEvent",
    "Preparer",
    "PublishResult",
    "Publisher",
    "Writer",
    "results_or_raise",
]


class Publisher:
    """Prepares (:class:`Preparer`, no I/O) and writes (:class:`Writer`, one round trip) for one bus."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: BusSettings,
        keys: Keys,
        registry: Registry,
        capabilities: Mapping[str, Any],
        *,
        connect_attempts: int = 3,
        tracing: Tracing | None = None,
    ) -> None:
        self._client = client
        self.preparer = Preparer(settings, keys, registry, capabilities, tracing)
        self.writer = Writer(client, settings, keys, connect_attempts=connect_attempts)
        self.writer.tracing = tracing
        #: Validate and encode one publish; raises before any I/O (see :meth:`Preparer.prepare`).
        #: Bound here: no forwarding frame on the publish path.
        self.prepare = self.preparer.prepare
        self.stream = self.preparer.stream
        self.marker_key = self.preparer.marker_key
        self.write = self.writer.write
        self.write_outcomes = self.writer.write_outcomes
        self.write_chunks = self.writer.write_chunks
        self.wait_idle = self.writer.wait_idle

    @property
    def round_trips(self) -> int:
        """Round trips made (for tests and metrics)."""
        return self.writer.round_trips

    @property
    def metrics(self) -> BusMetrics | None:
        """Prometheus metrics of the writes, or None."""
        return self.writer.metrics

    @metrics.setter
    def metrics(self, metrics: BusMetrics | None) -> None:
        self.writer.metrics = metrics
        pool = getattr(self._client, "connection_pool", None)  # (a cluster client has one per node: not counted)
        if metrics is not None and pool is not None:  # the bus's pool: publishes, acks, marker look-ups
            count_connect_attempts(pool, lambda: metrics.inc("connection_attempts", ("pool",)))
