"""The consume loop: reader, dispatcher, N workers and one acker per subscription, in one anyio task group.

Data flow::

    reader (XREADGROUP; own pending first) --+                 dispatcher: decode, poison,
                                             +--[1 batch]-->   marker lookup  --[EntryQueue]--> N workers
    maintenance (reclaim, keep-alive, trim) -+                                                      |
                                                                                                    v
                              acker: one MULTI/EXEC per flush (XADD dead letters, XACK, markers)

Each piece is its own module (``_reading``, ``_dispatch``, ``_queue``, ``_workers``, ``_acker``,
``_maintenance``); this one wires them for a :class:`StreamSubscription` and owns the lifecycle.
Shutdown (cancel or :meth:`Consumer.stop`): stop reading, let in-flight handlers finish within
``shutdown_grace_s``, flush the acks (shielded, time-boxed), leave the rest pending.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from .._errors import BackendError, BusError, ConfigurationError
from ..wire import acquire, is_cluster, release
from ._acker import AckBuffer
from ._deadletter import DeadLetterCap
from ._dispatch import Dispatcher
from ._entry import Entry, InFlight
from ._groups import Groups
from ._health import BackendHealth
from ._maintenance import Maintenance
from ._markers import Markers
from ._queue import EntryQueue
from ._reading import Reader
from ._retry import TransportRetry, single_error
from ._stats import ConsumerStats, StatsBoard
from ._workers import Workers

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from schemas import Registry

    from .._keys import Keys
    from .._settings import BusSettings
    from ..observability._metrics import BusMetrics
    from ..observability._tracing import Tracing
    from ._subscription import StreamSubscription

__all__ = ["FINAL_FLUSH_TIMEOUT_S", "Consumer"]

log = logging.getLogger("bus.consume")

#: Time box of the final, shielded ack flush at shutdown.
FINAL_FLUSH_TIMEOUT_S = 5.0
#: Pool connections opened during start-up: a marker lookup and an ack flush in flight at once.
EARLY_POOL_CONNECTIONS = 2
#: A read connection still shaking hands after this long marks a slow link: only then are the pool's
#: connections opened during start-up (on a fast link their handshakes only compete with the first events).
SLOW_LINK_S = 0.02


class Consumer:
    """One run of the consume loop for one :class:`StreamSubscription` (see the module docstring)."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: BusSettings,
        keys: Keys,
        registry: Registry,
        subscription: StreamSubscription,
        stats: ConsumerStats | None = None,
        metrics: BusMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        if _decodes_responses(client):
            raise ConfigurationError("client", "a redis client with decode_responses=True cannot read entries")
        spec = subscription
        self.client = client
        self.settings = settings
        self.subscription = spec
        self.name = spec.consumer
        self.group = spec.group
        self.streams = spec.streams
        self.board = StatsBoard(stats, metrics, spec.group)
        self.board.streams = {s.stream: (s.event_type, s.channel, spec.group) for s in spec.handlers}
        self.stats = self.board.stats
        self.markers = Markers(keys, spec.group, settings.marker_ttl_s, settings.socket_timeout_s)
        markers = self.markers if spec.is_typed else None
        self.in_flight = InFlight(spec.streams)
        self.groups = Groups(client, spec.group, spec.streams, spec.start_id, self.board)
        #: Pause, probe and resume when Redis refuses writes (see :mod:`bus.consume._health`).
        self.health = BackendHealth(
            client,
            spec.consumer,
            probe_initial_s=settings.retry_backoff_s or 0.05,
            probe_max_s=settings.outage_probe_max_s,
            log_interval_s=settings.outage_log_interval_s,
            board=self.board,
        )
        retry = TransportRetry(self.stats, metrics, self.health)
        self._retry = retry
        self.acks = AckBuffer(
            client,
            spec.group,
            markers,
            spec.dead_letters,
            self.in_flight,
            self.board,
            settings.socket_timeout_s,
            DeadLetterCap(settings.dead_letter_max_len),
        )
        self.acks.on_nogroup = self.groups.log_missing
        self.reader = Reader(
            client,
            spec,
            self.groups,
            self.in_flight,
            retry,
            self.board,
            connect_timeout_s=settings.connect_timeout_s + settings.socket_timeout_s,
        )
        self.dispatcher = Dispatcher(spec, settings, registry, markers, self.acks, self.in_flight, retry, client)
        self.workers = Workers(
            settings,
            spec.handler_retries,
            spec.max_deliveries,
            self.acks,
            self.in_flight,
            markers,
            self.board,
            with_stack=spec.dead_letter_stack,
            tracing=tracing,
            health=self.health,
        )
        self.maintenance = Maintenance(client, spec, settings, self.groups, self.in_flight, self.board, self.health)
        self._workers_done = False
        self._stop_requested = False
        self._feed_scope: anyio.CancelScope | None = None
        self._pool_scope: anyio.CancelScope | None = None

    # ----------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Ask for a graceful stop: :meth:`run` drains and returns."""
        self._stop_requested = True
        if self._feed_scope is not None:
            self._feed_scope.cancel()

    async def wait_until(self, predicate: Callable[[ConsumerStats], bool]) -> ConsumerStats:
        """Wait until ``predicate(stats)`` holds (re-checked whenever the counters change)."""
        return await self.board.wait_until(predicate)

    async def ensure_groups(self) -> list[str]:
        """Create the group on every stream where it is missing; the streams where this call created it."""
        return await self.groups.ensure()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Create the groups, signal ``task_status``, then consume until cancelled or stopped.

        Started while Redis refuses writes (XGROUP CREATE is refused out of memory, too), it waits
        paused until Redis writes again, then starts.
        """
        try:
            await self.groups.ensure()
        except BackendError as exc:
            if not await self.health.confirm(exc, "XGROUP CREATE"):
                raise
            await self._retry("XGROUP CREATE", self.groups.ensure)
        queue = EntryQueue(self.subscription.count)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pool, queue)
                task_status.started()
                # In this task, not a child: its ``finally`` (close the workers' queue, start the
                # drain) must run even when the cancellation arrives before a child would start.
                await self._feed(queue)
        except BaseExceptionGroup as group:
            error = single_error(group)
            if error is not None:
                raise error from None
            raise
        finally:
            self.health.close()

    async def _feed(self, queue: EntryQueue) -> None:
        """Reader, dispatcher and maintenance; their end (cancel, stop, error) starts the drain.

        The reader hands whole batches to the dispatcher (decode, marker lookup, hand-off to the
        workers) through a one-batch buffer, so the next XREADGROUP overlaps the marker lookup.
        """
        batches, batches_out = anyio.create_memory_object_stream[list[Entry]](max_buffer_size=1)
        try:
            with batches_out, anyio.CancelScope() as self._feed_scope:
                if self._stop_requested:
                    self._feed_scope.cancel()
                async with anyio.create_task_group() as tg:
                    await tg.start(self.reader.open_early)  # its handshake overlaps the start-up work
                    tg.start_soon(self._open_pool_early)
                    await self.maintenance.check_trimming_safely()
                    tg.start_soon(self.dispatcher.run, batches_out, queue)
                    async with batches:
                        await self.reader.drain_own_pending(batches)
                        tg.start_soon(self.maintenance.run, batches.clone())
                        await self.reader.run(batches)
        finally:
            queue.close()
            self._begin_drain()
            await self.reader.aclose()

    async def _open_pool_early(self) -> None:
        """Open, during start-up, the shared pool's connections that the steady state uses at once
        (a batch's marker lookup while the previous batch's ack flush is in flight): on a slow
        link a connection opened in front of an event costs that event its handshake round trips.
        Only on a slow link (the read connection's handshake still runs after :data:`SLOW_LINK_S`):
        on a fast one the handshakes cost the CPU the first events need and save them next to nothing.
        A failure is left to the lookup or flush that meets it."""
        client = self.client
        if is_cluster(client):  # a connection per node, opened by the slot transactions
            return
        with anyio.move_on_after(SLOW_LINK_S):  # still shaking hands by then: a slow link, open now
            took = await self.reader.handshake_time()
            if took is None or took < SLOW_LINK_S:
                return  # a fast link (or a failed handshake, which the first read reports)

        async def one() -> None:
            conn = await acquire(client)
            await release(client, conn)  # at once: a lookup meanwhile takes it instead of opening another

        with anyio.move_on_after(self.settings.connect_timeout_s), contextlib.suppress(Exception):
            async with anyio.create_task_group() as tg:
                for _ in range(EARLY_POOL_CONNECTIONS):
                    tg.start_soon(one)

    def _begin_drain(self) -> None:
        self.workers.stopping = True
        if self._pool_scope is not None:
            self._pool_scope.deadline = min(
                self._pool_scope.deadline, anyio.current_time() + self.settings.shutdown_grace_s
            )

    async def _pool(self, queue: EntryQueue) -> None:
        """Workers and acker, shielded from outside cancellation: shutdown is time-boxed instead."""
        with anyio.CancelScope(shield=True) as self._pool_scope:
            if self.workers.stopping:
                self._begin_drain()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._acker)
                async with anyio.create_task_group() as workers:
                    for _ in range(self.subscription.concurrency):
                        workers.start_soon(self.workers.run, queue)
                self._workers_done = True
                self.acks.wake()
        with anyio.CancelScope(shield=True) as final:
            final.deadline = anyio.current_time() + FINAL_FLUSH_TIMEOUT_S
            try:
                while len(self.acks):
                    await self.acks.flush()
            except BusError as exc:
                log.error("final ack flush failed; %d entries stay pending: %s", self.acks.release_unflushed(), exc)
        self.acks.release_unflushed()
        self.in_flight.clear()

    async def _acker(self) -> None:
        acks = self.acks
        while True:
            if not len(acks):
                if self._workers_done:
                    return
                await acks.wait()
                continue
            await self._retry("ack flush", acks.flush)


def _decodes_responses(client: aioredis.Redis) -> bool:
    """Whether the client returns str (a single node's pool, or a cluster's connection kwargs)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = pool.connection_kwargs if pool is not None else getattr(client, "get_connection_kwargs", dict)()
    return bool(kwargs.get("decode_responses"))
