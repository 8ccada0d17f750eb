"""The consume loop: reader, dispatcher, N workers and one acker per bus, in one anyio task group.

Data flow::

    reader (XREADGROUP; own pending first) --+                 dispatcher: decode, poison,
                                             +--[1 batch]-->   marker lookup  --[bounded]--> N workers
    maintenance (reclaim, keep-alive, trim) -+                                                   |
                                                                                                 v
                              acker: one MULTI/EXEC per flush (XADD dead letters, XACK, SADD markers)

- The reader blocks on its own connection, under a hard timeout that resets it; the next read
  overlaps the dispatcher's marker lookup of the previous batch, and so does the decoding of the
  next batch (the dispatcher decodes while its hand-off task waits for the lookup).
- Every batch is decoded once (one reusable decoder per Struct); poison input is dead-lettered
  with the reason; processed markers of the whole batch are looked up in one round trip.
- Workers run the handlers of one entry in order, each under ``handler_timeout_s``, retrying a
  failure in-process (tenacity, short capped backoff) before leaving the entry pending.
- The acker flushes whatever finished since its last flush (group commit): one XACK per stream
  per flush, the event markers and dead letters in the same transaction.
- Shutdown (cancel or :meth:`Consumer.stop`): stop reading, let in-flight handlers finish within
  ``shutdown_grace_s``, flush the acks (shielded, time-boxed), leave the rest pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import msgspec
import redis.asyncio as aioredis
from anyio.abc import TaskStatus
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from schemas import Registry, SchemaError
from schemas._envelope import split_bus_event

from ._deadletter import DeadLetterReason, dead_letter_fields
from ._delivery import Delivery, Handler, Subscription, handler_key_of
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeoutError,
    BusError,
    ConfigurationError,
    GroupMissingError,
    Reject,
    RetryLater,
)
from ._inspect import group_trimmed_unread
from ._jsoncheck import event_problem
from ._keys import Keys
from ._markers import Markers
from ._reclaim import PendingEntry, claim_idle, keep_alive, read_own_pending, trim_safely
from ._redis import redis_errors, translate_error
from ._tenant import tenant_id_problem
from .wire import EXEC, MULTI, Fields, GroupReader, RawEntry, event_of, fields_dict, pack, pack_command, round_trip

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._settings import BusSettings

__all__ = ["Consumer", "ConsumerStats", "make_subscription", "single_error"]

log = logging.getLogger(__name__)

#: Claim rounds per reclaim pass: up to this many batches per stream are taken over at once.
_RECLAIM_ROUNDS = 20

T = TypeVar("T")

#: Time box of the final, shielded ack flush at shutdown.
FINAL_FLUSH_TIMEOUT_S = 5.0
#: Reconnect backoff of the reader, the acker and the maintenance loop (tenacity, with jitter).
RECONNECT_INITIAL_S = 0.05
RECONNECT_MAX_S = 2.0


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


def make_subscription(
    registry: Registry,
    keys: Keys,
    existing: Sequence[Subscription],
    event_type: str,
    handler: Handler,
    channel: str,
    subscriber_id: str | None,
) -> Subscription:
    """Validate one subscription: a known event type and a handler key unique on its stream."""
    spec = registry.get(event_type)  # unknown types raise with suggestions
    if not channel:
        raise ConfigurationError("channel", "must be a non-empty channel name")
    key = subscriber_id or handler_key_of(handler)
    stream = keys.stream(channel, spec.event_type)
    if any(s.stream == stream and s.handler_key == key for s in existing):
        raise ConfigurationError(
            "subscriber_id", f"{key!r} already handles {spec.event_type} on {channel}; pass a distinct subscriber_id"
        )
    return Subscription(event_type=spec.event_type, channel=channel, stream=stream, handler_key=key, handler=handler)


class _Entry(msgspec.Struct, eq=False, gc=False):
    """One stream entry on its way from the reader to the acker.

    A Struct without GC tracking (compared and hashed by identity): a batch of 1,000 entries in
    flight no longer feeds the cyclic GC's young generation, which otherwise ran full collections
    over the whole heap every few batches. It must never be part of a reference cycle: nothing it
    refers to refers back to it.
    """

    stream: str
    entry_id: bytes
    fields: Fields | None
    deliveries: int
    delivery: Delivery | None = None
    subs: tuple[Subscription, ...] = ()
    done: frozenset[str] = frozenset()
    event_member: bytes = b""


class _Resume:
    """Awaits a coroutine that already ran up to its first suspension (``first`` is what it yielded).

    Handlers are started eagerly (``coro.send(None)`` runs one to its first await, in the worker
    task and inside its cancel scope); one that suspends is driven on from here, in the same task,
    exactly as ``await coro`` would.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation included: hand it to the handler
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return


def _leaves(exc: BaseException) -> Iterable[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def single_error(group: BaseExceptionGroup[BaseException]) -> Exception | None:
    """The one real error in a (nested) exception group, ignoring cancellations; else None."""
    errors = [e for e in _leaves(group) if not isinstance(e, anyio.get_cancelled_exc_class())]
    return errors[0] if len(errors) == 1 and isinstance(errors[0], Exception) else None


class Consumer:
    """One run of the consume loop for a fixed set of subscriptions (see the module docstring)."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: BusSettings,
        keys: Keys,
        registry: Registry,
        consumer_name: str,
        subscriptions: Sequence[Subscription],
        stats: ConsumerStats | None = None,
    ) -> None:
        if not subscriptions:
            raise ConfigurationError("subscriptions", "nothing is subscribed: call bus.subscribe(...) before run()")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigurationError("client", "a redis client with decode_responses=True cannot read entries")
        self.client = client
        self.settings = settings
        self.keys = keys
        self.registry = registry
        self.name = consumer_name
        self.group = settings.consumer_group
        self.stats = stats if stats is not None else ConsumerStats()
        self.markers = Markers(keys, self.group, settings.marker_ttl_s, settings.socket_timeout_s)
        by_stream: dict[str, list[Subscription]] = {}
        for sub in subscriptions:
            by_stream.setdefault(sub.stream, []).append(sub)
        self._subs = {stream: tuple(subs) for stream, subs in by_stream.items()}
        #: Per stream: event type, channel, handlers, and the event-marker prefix ``{group}|{channel}|``.
        self._stream_info = {
            stream: (subs[0].event_type, subs[0].channel, subs, self.markers.event_member(subs[0].channel, ""))
            for stream, subs in self._subs.items()
        }
        self._stream_of: dict[bytes | str, str] = {}
        for stream in self._subs:
            self._stream_of[stream] = stream
            self._stream_of[stream.encode()] = stream
        self.streams = tuple(self._subs)
        self._xread = GroupReader(self.group, consumer_name, self.streams, settings.batch_size, settings.block_ms)
        #: Per stream: entry id -> when it was read or last kept alive (no tuple key per entry).
        self._inflight: dict[str, dict[bytes, float]] = {stream: {} for stream in self.streams}
        #: Event marker member -> the entry handling that event here (until its ack or release).
        self._inflight_events: dict[bytes, _Entry] = {}
        # Acker buffers (appended by workers/reader, flushed by the acker).
        self._acks: list[_Entry] = []
        self._dups: list[_Entry] = []
        self._dead: list[tuple[_Entry, str, DeadLetterReason, int]] = []
        self._marks: list[tuple[_Entry, list[bytes]]] = []
        #: Handler markers of handlers that succeeded while later handlers of the entry still run.
        self._progress: list[tuple[str, bytes]] = []
        self._drops: list[_Entry] = []
        self._ack_wakeup = anyio.Event()
        self._changed = anyio.Event()
        self._waiters = 0
        self._workers_done = False
        self._stopping = False
        self._stop_requested = False
        self._feed_scope: anyio.CancelScope | None = None
        self._pool_scope: anyio.CancelScope | None = None
        self._own_read_client: aioredis.Redis | None = None
        self._trim_seen: dict[str, int] = {}
        self._last_nogroup_log = 0.0
        self._timeout = settings.handler_timeout_s
        self._max_deliveries = settings.max_deliveries
        if settings.retry_backoff_max_s > 0:
            self._retry_wait: Any = wait_exponential_jitter(
                multiplier=settings.retry_backoff_s, max=settings.retry_backoff_max_s, jitter=settings.retry_backoff_s
            )
        else:
            self._retry_wait = None

    # ----------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Ask for a graceful stop: :meth:`run` drains and returns."""
        self._stop_requested = True
        if self._feed_scope is not None:
            self._feed_scope.cancel()

    async def wait_until(self, predicate: Callable[[ConsumerStats], bool]) -> ConsumerStats:
        """Wait until ``predicate(stats)`` holds (re-checked whenever the counters change)."""
        self._waiters += 1
        try:
            while not predicate(self.stats):
                await self._changed.wait()
        finally:
            self._waiters -= 1
        return self.stats

    def _notify(self) -> None:
        if self._waiters:  # an Event per notification only when someone waits
            changed, self._changed = self._changed, anyio.Event()
            changed.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Create the groups, signal ``task_status``, then consume until cancelled or stopped."""
        await self.ensure_groups()
        send, recv = anyio.create_memory_object_stream[_Entry](max_buffer_size=self.settings.batch_size)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pool, recv)
                task_status.started()
                # In this task, not a child: its ``finally`` (close the workers' stream, start the
                # drain) must run even when the cancellation arrives before a child would start.
                await self._feed(send)
        except BaseExceptionGroup as group:
            error = single_error(group)
            if error is not None:
                raise error from None
            raise

    async def ensure_groups(self) -> list[str]:
        """XGROUP CREATE ... 0 MKSTREAM on every subscribed stream (BUSYGROUP ignored); returns the
        streams on which this call created the group (the others had it already)."""
        with redis_errors("XGROUP CREATE"):
            pipe = self.client.pipeline(transaction=False)
            for stream in self.streams:
                pipe.xgroup_create(stream, self.group, id="0", mkstream=True)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        created: list[str] = []
        for stream, reply in zip(self.streams, replies, strict=True):
            if not isinstance(reply, Exception):
                created.append(stream)
            elif not str(reply).startswith("BUSYGROUP"):
                raise translate_error(reply, f"XGROUP CREATE {stream} {self.group}") from reply
        return created

    async def _feed(self, send: MemoryObjectSendStream[_Entry]) -> None:
        """Reader, dispatcher and maintenance; their end (cancel, stop, error) starts the drain.

        The reader hands whole batches to the dispatcher (decode, marker lookup, hand-off to the
        workers) through a one-batch buffer, so the next XREADGROUP overlaps the marker lookup.
        """
        batches, batches_out = anyio.create_memory_object_stream[list[_Entry]](max_buffer_size=1)
        try:
            with send, batches_out, anyio.CancelScope() as self._feed_scope:
                if self._stop_requested:
                    self._feed_scope.cancel()
                await self._check_trimming_safely()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._dispatcher, batches_out, send)
                    async with batches:
                        await self._drain_own_pending(batches)
                        tg.start_soon(self._maintain, batches.clone())
                        await self._read_loop(batches)
        finally:
            self._begin_drain()
            await self._close_read_client()

    def _begin_drain(self) -> None:
        self._stopping = True
        if self._pool_scope is not None:
            self._pool_scope.deadline = min(
                self._pool_scope.deadline, anyio.current_time() + self.settings.shutdown_grace_s
            )

    async def _pool(self, recv: MemoryObjectReceiveStream[_Entry]) -> None:
        """Workers and acker, shielded from outside cancellation: shutdown is time-boxed instead."""
        with anyio.CancelScope(shield=True) as self._pool_scope:
            if self._stopping:
                self._begin_drain()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._acker)
                async with recv, anyio.create_task_group() as workers:
                    for _ in range(self.settings.concurrency):
                        workers.start_soon(self._worker, recv.clone())
                self._workers_done = True
                self._ack_wakeup.set()
        with anyio.CancelScope(shield=True) as final:
            final.deadline = anyio.current_time() + FINAL_FLUSH_TIMEOUT_S
            try:
                while self._has_ops():
                    await self._flush()
            except BusError as exc:
                log.error("final ack flush failed; %d entries stay pending: %s", self._ops_count(), exc)
        for entries in (self._acks, self._dups, self._drops):
            for entry in entries:
                self._release(entry)
        for in_flight in self._inflight.values():
            in_flight.clear()
        self._inflight_events.clear()

    # ----------------------------------------------------------------- reading

    def _read_client(self) -> aioredis.Redis:
        """The dedicated connection for blocking reads (same server and options, no socket timeout:
        the hard read timeout governs it)."""
        if self._own_read_client is None:
            pool = self.client.connection_pool
            kwargs = dict(pool.connection_kwargs)
            kwargs["socket_timeout"] = None
            own = type(pool)(connection_class=pool.connection_class, **kwargs)
            self._own_read_client = aioredis.Redis(connection_pool=own, single_connection_client=True)
        return self._own_read_client

    async def _close_read_client(self) -> None:
        client, self._own_read_client = self._own_read_client, None
        if client is not None:
            with anyio.move_on_after(1.0, shield=True), contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)  # a broken socket may complain

    async def _read_once(self) -> list[tuple[bytes, list[RawEntry]]] | None:
        """One XREADGROUP (pre-packed, raw reply: see :mod:`bus.wire`) under the hard read timeout.

        A new connection connects and authenticates first, under the client's connect timeout:
        on a slow link the handshake plus a full BLOCK could exceed the read's hard timeout.
        """
        try:
            with redis_errors("connect for XREADGROUP"):
                conn = await self._xread.connection(self._read_client())
            with anyio.fail_after(self.settings.read_timeout_s), redis_errors("XREADGROUP"):
                return await self._xread.read(conn)
        except AuthenticationError:
            raise
        except GroupMissingError as exc:
            await self._on_nogroup(exc)
            return None
        except (TimeoutError, BackendError) as exc:
            await self._close_read_client()
            if isinstance(exc, BusError):
                raise
            raise BackendTimeoutError(
                f"XREADGROUP did not answer within {self.settings.read_timeout_s}s; the connection was reset"
            ) from exc

    def _retrying(self, what: str) -> AsyncRetrying:
        """Transport retries: forever, exponential backoff with jitter, never on auth errors."""

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, BackendError) and not isinstance(exc, AuthenticationError)

        def before_sleep(state: RetryCallState) -> None:
            self.stats.reconnects += 1
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s failed (attempt %d), retrying: %s", what, state.attempt_number, exc)

        return AsyncRetrying(
            retry=retry_if_exception(transient),
            wait=wait_exponential_jitter(
                multiplier=RECONNECT_INITIAL_S, max=RECONNECT_MAX_S, jitter=RECONNECT_INITIAL_S
            ),
            sleep=anyio.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, retrying transport failures with backoff until it works.

        The first try goes without tenacity (building a retry policy costs more than a flush);
        an AuthenticationError is never retried.
        """
        try:
            return await call()
        except AuthenticationError:
            raise
        except BackendError as exc:
            self.stats.reconnects += 1
            log.warning("%s failed, retrying: %s", what, exc)
        async for attempt in self._retrying(what):
            with attempt:
                return await call()
        raise AssertionError("unreachable: the transport retry policy never stops")

    async def _read_loop(self, batches: MemoryObjectSendStream[list[_Entry]]) -> None:
        early_s = self.settings.block_ms / 2000
        while True:
            started = anyio.current_time()
            reply = await self._retry("XREADGROUP", self._read_once)
            if reply:
                batch: list[_Entry] = []
                for key, entries in reply:
                    batch.extend(self._admit(self._stream_of[key], entries))
                self.stats.read += len(batch)
                self._notify()
                await self._send_batch(batches, batch)
                await anyio.lowlevel.checkpoint()  # let the dispatcher, workers and acker in between
            elif anyio.current_time() - started < early_s:
                # An empty BLOCK read that returned early (fakeredis ignores BLOCK when COUNT is
                # given; a recreated group) must not become a busy loop: poll gently instead.
                await anyio.sleep(min(0.01, early_s))

    def _log_nogroup(self, exc: BaseException) -> None:
        """One NOGROUP warning per second at most, whichever task met it."""
        now = time.monotonic()
        if now - self._last_nogroup_log >= 1.0:
            self._last_nogroup_log = now
            log.warning("consumer group %r missing (%s); recreating it", self.group, exc)

    async def _on_nogroup(self, exc: BaseException) -> None:
        """The group vanished (e.g. Redis restarted without persistence): recreate and carry on.

        The consumer whose XGROUP CREATE succeeds (the others get BUSYGROUP) reports the loss of
        that stream's state once, at error level, and counts it in ``stats.lost_groups``.
        """
        self._log_nogroup(exc)
        self.stats.group_recreations += 1
        for stream in await self.ensure_groups():
            self.stats.lost_groups += 1
            log.error(
                "consumer group %r of %s was lost (Redis restarted without persistence, or the stream or "
                "group was deleted) and has been recreated at 0: entries that were unread or pending in "
                "the lost state, and their delivery counts, are gone; entries still in the stream are read again",
                self.group,
                stream,
            )
            self._notify()

    async def _drain_own_pending(self, batches: MemoryObjectSendStream[list[_Entry]]) -> None:
        """Entries this consumer name read but never acked (a crash): first, before new ones."""
        after = dict.fromkeys(self.streams, b"0")
        while after:
            page, after = await self._retry("reading own pending entries", functools.partial(self._own_page, after))
            self.stats.read += len(page)
            await self._send_batch(batches, self._admit_pending(page))

    async def _own_page(self, after: dict[str, bytes]) -> tuple[list[PendingEntry], dict[str, bytes]]:
        try:
            return await read_own_pending(self.client, self.group, self.name, after, self.settings.batch_size)
        except GroupMissingError as exc:
            await self._on_nogroup(exc)
            return [], {}

    # ----------------------------------------------------------------- maintenance

    async def _maintain(self, batches: MemoryObjectSendStream[list[_Entry]]) -> None:
        """Keep-alive of in-flight entries, reclaim of idle ones, trimming checks."""
        keep_alive_s = self.settings.claim_idle_ms / 4000
        tick = min(self.settings.reclaim_interval_s, keep_alive_s)
        next_reclaim = anyio.current_time() + self.settings.reclaim_interval_s
        async with batches:
            while True:
                await anyio.sleep(tick)
                try:
                    await self._keep_alive(keep_alive_s * 2)
                    if anyio.current_time() >= next_reclaim:
                        next_reclaim = anyio.current_time() + self.settings.reclaim_interval_s
                        await self._reclaim(batches)
                        await self._check_trimming()
                        if self.settings.trim_policy == "safe":
                            removed = await trim_safely(self.client, self.streams, self.settings.max_len)
                            if removed:
                                self.stats.safely_trimmed += sum(removed.values())
                                self._notify()
                except AuthenticationError:
                    raise
                except BackendError as exc:
                    # A pipelined XPENDING/XCLAIM reports NOGROUP inside a wrapped message.
                    if isinstance(exc, GroupMissingError) or "NOGROUP" in str(exc):
                        await self._on_nogroup_safely(exc)
                    else:
                        log.warning("maintenance failed, retrying in %.2fs: %s", tick, exc)

    async def _on_nogroup_safely(self, exc: BaseException) -> None:
        try:
            await self._on_nogroup(exc)
        except AuthenticationError:
            raise
        except BackendError as again:
            log.warning("could not recreate consumer group %r: %s", self.group, again)

    async def _keep_alive(self, older_than_s: float) -> None:
        now = anyio.current_time()
        stale: dict[str, list[bytes]] = {}
        for stream, in_flight in self._inflight.items():
            old = [entry_id for entry_id, since in in_flight.items() if now - since >= older_than_s]
            if old:
                stale[stream] = old
        if not stale:
            return
        await keep_alive(self.client, self.group, self.name, stale, min_idle_ms=self.settings.claim_idle_ms // 4)
        for stream, ids in stale.items():
            in_flight = self._inflight[stream]
            for entry_id in ids:
                if entry_id in in_flight:
                    in_flight[entry_id] = now

    async def _reclaim(self, batches: MemoryObjectSendStream[list[_Entry]]) -> None:
        # A dead peer may leave far more than one batch behind: keep claiming (claimed entries
        # are no longer idle, so each round finds the next ones) while whole batches come back,
        # a bounded number of rounds per pass; the batch stream's backpressure paces us.
        for _ in range(_RECLAIM_ROUNDS):
            claimed = await claim_idle(
                self.client,
                self.group,
                self.name,
                self.streams,
                min_idle_ms=self.settings.claim_idle_ms,
                count=self.settings.batch_size,
                skip={(stream, entry_id) for stream, in_flight in self._inflight.items() for entry_id in in_flight},
            )
            if not claimed:
                return
            self.stats.reclaimed += sum(1 for c in claimed if c[2] is not None)
            log.info("claimed %d idle entries", len(claimed))
            await self._send_batch(batches, self._admit_pending(claimed))
            if len(claimed) < self.settings.batch_size:
                return

    async def _check_trimming_safely(self) -> None:
        try:
            await self._check_trimming()
        except AuthenticationError:
            raise
        except BackendError as exc:
            log.warning("trimming check failed: %s", exc)

    async def _check_trimming(self) -> None:
        """Count entries trimmed before this group read them (see :mod:`bus._inspect`)."""
        with redis_errors("XINFO (trimming check)"):
            pipe = self.client.pipeline(transaction=False)
            for stream in self.streams:
                pipe.xinfo_stream(stream)
                pipe.xinfo_groups(stream)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        for i, stream in enumerate(self.streams):
            sinfo, groups = replies[2 * i], replies[2 * i + 1]
            if isinstance(sinfo, Exception) or isinstance(groups, Exception):
                continue  # a missing stream or group: the reader recreates it
            mine = next((g for g in groups if _text(g.get("name")) == self.group), None)
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
            self.stats.trimmed_unread += lost - seen
            log.error(
                "%d entries of %s were trimmed before group %r read them (lost to this group; "
                "raise REDIS_STREAM_MAX_LENGTH or use trim_policy='safe')",
                lost - seen,
                stream,
                self.group,
            )
            self._notify()

    # ----------------------------------------------------------------- dispatch

    def _admit(self, stream: str, entries: Iterable[RawEntry]) -> list[_Entry]:
        """New entries (first delivery) become in-flight the moment they are read."""
        out = [_Entry(stream, entry_id, fields, 1) for entry_id, fields in entries]
        self._inflight[stream].update(dict.fromkeys([e.entry_id for e in out], anyio.current_time()))
        return out

    def _admit_pending(self, items: Iterable[PendingEntry]) -> list[_Entry]:
        """Entries from a pending list; one already in flight here (a race with a claim) is skipped."""
        now = anyio.current_time()
        out: list[_Entry] = []
        for stream, entry_id, fields, before in items:
            in_flight = self._inflight[stream]
            if entry_id not in in_flight:
                in_flight[entry_id] = now
                out.append(_Entry(stream, entry_id, fields, before + 1))
        return out

    async def _send_batch(self, batches: MemoryObjectSendStream[list[_Entry]], batch: list[_Entry]) -> None:
        if not batch:
            return
        try:
            await batches.send(batch)
        except BaseException:
            for entry in batch:
                self._release(entry)  # never handed on: stays pending in Redis
            raise

    async def _dispatcher(
        self, batches: MemoryObjectReceiveStream[list[_Entry]], send: MemoryObjectSendStream[_Entry]
    ) -> None:
        """Decode each batch, then hand it to :meth:`_handoff` (marker lookup, workers) without a buffer:
        batch n+1 is decoded while the marker lookup of batch n is in flight."""
        decoded, decoded_out = anyio.create_memory_object_stream[list[_Entry]](max_buffer_size=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._handoff, decoded_out, send)
            async with decoded:
                async for batch in batches:
                    await self._send_batch(decoded, self._decode_batch(batch))

    async def _handoff(
        self, decoded: MemoryObjectReceiveStream[list[_Entry]], send: MemoryObjectSendStream[_Entry]
    ) -> None:
        async with decoded:
            async for ready in decoded:
                await self._dispatch(ready, send)

    async def _dispatch(self, ready: list[_Entry], send: MemoryObjectSendStream[_Entry]) -> None:
        """Look up the markers of decoded entries, hand the rest to the workers."""
        sent = 0
        try:
            ready = await self._skip_processed(self._skip_in_flight(ready))
            send_nowait = send.send_nowait
            for entry in ready:
                try:
                    send_nowait(entry)
                except anyio.WouldBlock:
                    await send.send(entry)
                sent += 1
        finally:
            for entry in ready[sent:]:
                self._release(entry)  # stays pending in Redis: reclaimed or re-read later

    def _decode_batch(self, batch: list[_Entry]) -> list[_Entry]:
        """Build the deliveries of a batch; poison entries (and dropped or exhausted ones) go to the
        acker. One loop for the batch, with the stream's type, channel and handlers looked up once
        per run of entries from the same stream."""
        ready: list[_Entry] = []
        dead = self._dead
        max_deliveries = self._max_deliveries
        max_bytes = self.settings.max_payload_bytes
        strict_json = self.settings.strict_json
        decode_payload = self.registry.decode_payload
        group = self.group
        stream_info = self._stream_info
        current = ""
        expected = channel = member_prefix = handler_key = ""
        subs: tuple[Subscription, ...] = ()
        wake = False
        for entry in batch:
            fields = entry.fields
            if fields is None:
                self._drops.append(entry)
                wake = True
                continue
            deliveries = entry.deliveries
            if deliveries > max_deliveries:
                before = deliveries - 1
                reason = f"pending with {before} deliveries (max {max_deliveries})"
                dead.append((entry, reason, "max-deliveries", before))
                wake = True
                continue
            # The bus's own entries (event, channel) without a dict; anything else as its pairs' dict.
            if type(fields) is list and len(fields) == 4 and fields[0] == b"event" and fields[2] == b"channel":
                raw: bytes | None = fields[1]
                forced = False
            else:
                raw, forced = event_of(fields)
            stream = entry.stream
            if stream != current:
                current = stream
                expected, channel, subs, member_prefix = stream_info[stream]
                handler_key = subs[0].handler_key
            if raw is None:
                dead.append((entry, "the entry has no `event` field", "invalid", deliveries))
                wake = True
                continue
            problem = event_problem(raw, max_bytes, strict=strict_json)  # size, JSON, duplicate keys
            if problem is not None:
                dead.append((entry, problem, "invalid", deliveries))
                wake = True
                continue
            try:
                envelope, payload_json = split_bus_event(raw)
                if envelope.event_type != expected:
                    dead.append((entry, self._type_mismatch(envelope.event_type, expected), "invalid", deliveries))
                    wake = True
                    continue
                typed = decode_payload(expected, payload_json)
            except (SchemaError, RecursionError) as exc:  # hostile input never stops the loop
                dead.append((entry, str(exc), "invalid", deliveries))
                wake = True
                continue
            tenant = getattr(typed.value, "tenant_id", None)
            if not isinstance(tenant, str) or not tenant:
                tenant = _tenant_of(payload_json)
            problem = tenant_id_problem(tenant)
            if problem is not None:  # it would be built into marker keys (and widen ACL patterns)
                dead.append((entry, f"invalid tenant id {tenant[:64]!r}: {problem}", "invalid", deliveries))
                wake = True
                continue
            event_id = envelope.id
            entry.subs = subs
            entry.delivery = Delivery(
                event_id=event_id,
                event_type=expected,
                timestamp=envelope.timestamp,
                tenant_id=tenant,
                channel=channel,
                stream=stream,
                entry_id=entry.entry_id.decode(),
                delivery_count=deliveries,
                forced=forced,
                payload=typed,
                payload_json=payload_json,
                group=group,
                handler_key=handler_key,
            )
            entry.event_member = (member_prefix + event_id).encode()
            ready.append(entry)
        if wake:
            self._ack_wakeup.set()
        return ready

    def _type_mismatch(self, event_type: str, expected: str) -> str:
        if event_type not in self.registry:
            return f"unknown event type {event_type!r} (stream of {expected})"
        return f"eventType {event_type!r} does not match the stream's event type {expected}"

    async def _skip_processed(self, entries: list[_Entry]) -> list[_Entry]:
        """One round trip: drop entries whose event is marked processed, note handlers already done."""
        events: dict[str, list[bytes]] = {}
        handlers: dict[str, list[bytes]] = {}
        tenant = ""
        members: list[bytes] = []
        for entry in entries:
            d = entry.delivery
            assert d is not None
            if d.forced:
                continue
            if d.tenant_id != tenant:  # runs of one tenant: one dict lookup per run
                tenant = d.tenant_id
                members = events.setdefault(tenant, [])
            members.append(entry.event_member)
            if len(entry.subs) > 1:
                handlers.setdefault(tenant, []).extend(self._handler_members(d, entry.subs))
        if not events:
            return entries
        check = await self._retry("processed-marker lookup", lambda: self.markers.lookup(self.client, events, handlers))
        if not check.events and not check.handlers:
            return entries
        out: list[_Entry] = []
        for entry in entries:
            d = entry.delivery
            assert d is not None
            if not d.forced and entry.event_member in check.events:
                self._dups.append(entry)
                self._ack_wakeup.set()
                continue
            if check.handlers and len(entry.subs) > 1:
                members = self._handler_members(d, entry.subs)
                done = zip(entry.subs, members, strict=True)
                entry.done = frozenset(s.handler_key for s, m in done if m in check.handlers)
            out.append(entry)
        return out

    def _handler_members(self, delivery: Delivery, subs: Iterable[Subscription]) -> list[bytes]:
        member = self.markers.handler_member
        return [member(delivery.channel, delivery.event_id, s.handler_key).encode() for s in subs]

    def _skip_in_flight(self, entries: list[_Entry]) -> list[_Entry]:
        """Ack as duplicates the entries whose event another entry is handling here right now.

        The same event id written twice (a republish after an unknown outcome) is often read in
        one batch, before either copy is marked: the marker lookup cannot see it. The first copy
        stays responsible for the event (handled, left pending or dead-lettered). Runs before the
        marker lookup: a holder is released only after its marker was written, so a copy that
        finds no holder here finds the marker in the lookup that follows.
        """
        holders = self._inflight_events
        out: list[_Entry] = []
        for entry in entries:
            holder = holders.setdefault(entry.event_member, entry)
            if holder is entry or entry.delivery is None or entry.delivery.forced:
                out.append(entry)
            else:
                self._dups.append(entry)
                self._ack_wakeup.set()
        return out

    def _release(self, entry: _Entry) -> None:
        self._inflight[entry.stream].pop(entry.entry_id, None)
        if self._inflight_events.get(entry.event_member) is entry:
            del self._inflight_events[entry.event_member]

    def _release_all(self, entries: list[_Entry]) -> None:
        """:meth:`_release` of each entry, in one loop."""
        inflight = self._inflight
        holders = self._inflight_events
        for entry in entries:
            inflight[entry.stream].pop(entry.entry_id, None)
            if holders.get(entry.event_member) is entry:
                del holders[entry.event_member]

    # ----------------------------------------------------------------- workers

    async def _worker(self, recv: MemoryObjectReceiveStream[_Entry]) -> None:
        async with recv:
            while True:
                try:
                    entry = recv.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        entry = await recv.receive()
                    except anyio.EndOfStream:
                        return
                except anyio.EndOfStream:
                    return
                if self._stopping:
                    self._release(entry)  # not started: leave it pending
                    continue
                await self._process(entry)

    async def _process(self, entry: _Entry) -> None:
        shared = entry.delivery
        assert shared is not None
        delivery = shared
        succeeded: list[str] = []
        subs = entry.subs
        many = len(subs) > 1
        marked = 0  # handlers in ``succeeded`` whose success markers are queued already
        for sub in subs:
            if entry.done and sub.handler_key in entry.done:
                continue
            if many:  # each handler gets its own handler_key (effect_key); a lone one's is preset
                delivery = msgspec.structs.replace(shared, handler_key=sub.handler_key)
            # Fast path, inlined: a handler that finishes without suspending needs nothing else.
            started: Awaitable[None]
            try:
                started = awaitable = sub.handler(delivery)
                if type(awaitable) is types.CoroutineType:
                    started = _Resume(awaitable, awaitable.send(None))
            except StopIteration:
                error = None  # done without suspending
            except Exception as exc:  # raised before its first await: retried like any failure
                if len(succeeded) > marked:
                    marked = self._mark_progress(shared, succeeded, marked)
                error = await self._call(sub, delivery, None, exc)
            else:
                if len(succeeded) > marked:
                    # This handler takes time: the earlier ones' markers ride the next flush now,
                    # so a crash while it runs does not repeat them (not only when it fails).
                    marked = self._mark_progress(shared, succeeded, marked)
                error = await self._call(sub, delivery, started)
            if error is not None:
                self._on_failure(entry, sub, error, succeeded)
                return
            if many:
                succeeded.append(sub.handler_key)
        self._acks.append(entry)
        if not self._ack_wakeup.is_set():
            self._ack_wakeup.set()

    def _mark_progress(self, delivery: Delivery, succeeded: list[str], marked: int) -> int:
        """Queue the success markers of ``succeeded[marked:]``; returns how many are queued now."""
        member = self.markers.handler_member
        for key in succeeded[marked:]:
            self._progress.append((delivery.tenant_id, member(delivery.channel, delivery.event_id, key).encode()))
        self._ack_wakeup.set()
        return len(succeeded)

    def _on_failure(self, entry: _Entry, sub: Subscription, error: BaseException, succeeded: list[str]) -> None:
        delivery = entry.delivery
        assert delivery is not None
        self.stats.failed += 1
        text = f"{sub.handler_key}: {type(error).__name__}: {error}"
        where = f"{delivery.event_type} {delivery.event_id} ({entry.stream} {delivery.entry_id})"
        if isinstance(error, Reject):
            log.error("handler rejected %s: %s", where, text)
            self._dead.append((entry, text, "rejected", entry.deliveries))
        elif entry.deliveries >= self._max_deliveries:
            log.error("dead-lettering %s after %d deliveries: %s", where, entry.deliveries, text)
            self._dead.append((entry, text, "max-deliveries", entry.deliveries))
        else:
            log.warning("handler failed on %s, delivery %d; left pending: %s", where, entry.deliveries, text)
            if succeeded:
                done = [s for s in entry.subs if s.handler_key in succeeded]
                self._marks.append((entry, self._handler_members(delivery, done)))
            else:
                self._release(entry)
                self._notify()
                return
        self._ack_wakeup.set()

    async def _call(
        self, sub: Subscription, delivery: Delivery, started: Awaitable[None] | None, failed: Exception | None = None
    ) -> BaseException | None:
        """Finish a handler call that suspended (``started``) or failed at once (``failed``), with its
        timeout and in-process retries; the last error, or None."""
        if failed is None:
            assert started is not None
            try:
                await self._bounded(sub, started)
                return None
            except Exception as exc:
                failed = exc
        if isinstance(failed, (RetryLater, Reject)):
            return failed
        first: Exception = failed
        if self.settings.handler_retries == 0 or self._stopping:
            return first
        replay = [first]  # attempt 1 already failed: tenacity sees it, then waits before attempt 2

        def retryable(exc: BaseException) -> bool:
            # Never a cancellation (tenacity's attempt context catches BaseException).
            return isinstance(exc, Exception) and not isinstance(exc, (RetryLater, Reject)) and not self._stopping

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.info("retrying %s on %s after: %r", sub.handler_key, delivery.event_id, exc)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.handler_retries + 1),
            retry=retry_if_exception(retryable),
            sleep=anyio.sleep,
            before_sleep=before_sleep,
            reraise=True,
            **({"wait": self._retry_wait} if self._retry_wait is not None else {}),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if replay:
                        raise replay.pop()
                    self.stats.retries += 1
                    await self._attempt(sub, delivery)
            return None
        except Exception as exc:
            return exc

    async def _attempt(self, sub: Subscription, delivery: Delivery) -> None:
        """One handler call under ``handler_timeout_s`` (a timeout raises TimeoutError).

        The handler is started eagerly (``coro.send(None)`` runs it to its first await): one that
        finishes without suspending (a no-op, a cache write) costs neither a timer nor a scope.
        """
        awaitable = sub.handler(delivery)
        if type(awaitable) is types.CoroutineType:
            coro = cast("Coroutine[Any, Any, None]", awaitable)
            try:
                first = coro.send(None)
            except StopIteration:
                return
            awaitable = _Resume(coro, first)
        await self._bounded(sub, awaitable)

    async def _bounded(self, sub: Subscription, awaitable: Awaitable[None]) -> None:
        """Await a started handler under ``handler_timeout_s``.

        ``asyncio.timeout`` is entered only now, after the eager first step: unlike an anyio cancel
        scope it need not enclose the scopes the handler already opened, and it turns only its own
        expiry into TimeoutError (an outer cancellation, e.g. the end of the shutdown grace
        period, passes through as cancellation).
        """
        timeout = asyncio.timeout(self._timeout)
        try:
            async with timeout:
                await awaitable
        except TimeoutError:
            if not timeout.expired():
                raise  # the handler's own TimeoutError
            self.stats.timeouts += 1
            raise TimeoutError(f"handler {sub.handler_key} timed out after {self._timeout}s") from None

    # ----------------------------------------------------------------- acker

    def _has_ops(self) -> bool:
        return bool(self._acks or self._dups or self._dead or self._marks or self._drops or self._progress)

    def _ops_count(self) -> int:
        return len(self._acks) + len(self._dups) + len(self._dead) + len(self._marks) + len(self._drops)

    async def _acker(self) -> None:
        while True:
            if not self._has_ops():
                if self._workers_done:
                    return
                await self._ack_wakeup.wait()
                self._ack_wakeup = anyio.Event()
                continue
            await self._retry("ack flush", self._flush)

    async def _flush(self) -> None:
        """One MULTI/EXEC: dead letters, one XACK per stream, markers with their TTL."""
        acks, dups, dead, marks, drops = self._acks[:], self._dups[:], self._dead[:], self._marks[:], self._drops[:]
        progress = self._progress[:]
        ids: dict[str, list[bytes]] = {}
        event_members: dict[str, list[bytes]] = {}
        handler_members: dict[str, list[bytes]] = {}
        commands: list[bytes] = [MULTI]
        for entry, error, reason, deliveries in dead:
            assert entry.fields is not None
            fields = dead_letter_fields(
                fields_dict(entry.fields),
                stream=entry.stream,
                entry_id=entry.entry_id.decode(),
                deliveries=deliveries,
                error=error,
                reason=reason,
            )
            commands.append(pack("XADD", Keys.dead_letter(entry.stream), "*", *itertools.chain(*fields.items())))
            ids.setdefault(entry.stream, []).append(entry.entry_id)
        stream, tenant = "", ""
        stream_ids: list[bytes] = []
        members: list[bytes] = []
        for entry in acks:  # runs of one stream and of one tenant: one dict lookup per run
            if entry.stream != stream:
                stream = entry.stream
                stream_ids = ids.setdefault(stream, [])
            stream_ids.append(entry.entry_id)
            if entry.delivery.tenant_id != tenant:  # type: ignore[union-attr]
                tenant = entry.delivery.tenant_id  # type: ignore[union-attr]
                members = event_members.setdefault(tenant, [])
            members.append(entry.event_member)
        for entry in dups:
            ids.setdefault(entry.stream, []).append(entry.entry_id)
        for entry in drops:
            ids.setdefault(entry.stream, []).append(entry.entry_id)
        for entry, members in marks:
            handler_members.setdefault(entry.delivery.tenant_id, []).extend(members)  # type: ignore[union-attr]
        for tenant, member in progress:
            handler_members.setdefault(tenant, []).append(member)
        for stream, stream_ids in ids.items():
            commands.append(pack_command((b"XACK", stream, self.group), stream_ids))
        for members_by_tenant, key_of in (
            (event_members, self.markers.events_key),
            (handler_members, self.markers.handlers_key),
        ):
            for tenant, members in members_by_tenant.items():
                commands.append(self.markers.add_command(key_of(tenant), members))
        commands.append(EXEC)
        what = "ack flush (MULTI/EXEC)"
        with redis_errors(what):
            replies = await round_trip(self.client, b"".join(commands), len(commands), self.settings.socket_timeout_s)
        results = replies[-1]
        if not isinstance(results, list):  # EXECABORT (a command was refused: nothing ran) or an error
            refused = next((r for r in replies if isinstance(r, Exception)), None)
            if refused is None:
                raise BackendError(f"{what}: unexpected EXEC reply {results!r}")
            raise translate_error(refused, what) from refused
        for reply in results:
            if isinstance(reply, Exception):
                failure = translate_error(reply, "ack flush")
                if isinstance(failure, AuthenticationError):
                    raise failure from reply
                if isinstance(failure, GroupMissingError):
                    self._log_nogroup(failure)  # after a restart without persistence: nothing left to ack
                else:
                    log.warning("ack flush: %s", failure)
        # Done: drop exactly what was flushed (workers may have appended meanwhile).
        del self._acks[: len(acks)], self._dups[: len(dups)], self._dead[: len(dead)]
        del self._marks[: len(marks)], self._drops[: len(drops)], self._progress[: len(progress)]
        stats = self.stats
        stats.handled += len(acks)
        stats.duplicates += len(dups)
        stats.dead_lettered += len(dead)
        stats.invalid += sum(1 for _, _, reason, _ in dead if reason == "invalid")
        stats.trimmed_pending += len(drops)
        stats.acked += len(acks) + len(dups) + len(dead) + len(drops)
        if drops:
            log.error("%d pending entries were trimmed or deleted before they were processed", len(drops))
        self._release_all(acks)
        self._release_all(dups)
        self._release_all(drops)
        for entry, _, _, _ in dead:
            self._release(entry)
        for entry, _ in marks:
            self._release(entry)
        self._notify()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _tenant_of(payload_json: bytes) -> str:
    """``tenantId`` (else ``tenant``) of a raw payload, for payload Structs without one."""
    try:
        data = msgspec.json.decode(payload_json)
    except msgspec.DecodeError:
        return "unknown"
    value = data.get("tenantId") or data.get("tenant") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else "unknown"
