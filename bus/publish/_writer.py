"""Write prepared events in one round trip (:class:`Writer`): MULTI/EXEC (a lone command bare),
the streamed form of ``publish_many``, EVALSHA with an EVAL fallback, and the outcome of every
event (a result, an error, or :class:`PartialWriteError` when Redis ran only some commands).

A connection that fails after the bytes went out raises ``PublishOutcomeUnknownError`` with the
event ids; nothing is retried then (a blind retry could write twice). Failures to connect
(nothing sent) are retried with tenacity.

On Redis Cluster the write goes through :func:`bus.publish._slots.write_per_slot` (one
MULTI/EXEC per hash slot, in the reference's order) instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import redis.exceptions as rex
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from .._errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BusError,
    PayloadTooLargeError,
    PayloadValidationError,
    PublishOutcomeUnknownError,
)
from .._keys import Keys
from .._redis import redis_errors, translate_error
from .._settings import BusSettings
from .._text import text
from ..wire import DISCARD, EXEC, MULTI, drop, exchange, is_cluster, pack, read_replies, release, send_packed
from ._results import Outcome, PartialWriteError, PreparedEvent, PublishResult, TracedEvent, results_or_raise
from ._slots import PhaseHook, write_per_slot

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ..observability._metrics import BusMetrics
    from ..observability._tracing import Tracing

__all__ = ["Writer"]


class Writer:
    """The I/O half of publishing for one bus: one round trip per write, outcomes per event."""

    def __init__(self, client: aioredis.Redis, settings: BusSettings, keys: Keys, *, connect_attempts: int = 3) -> None:
        self._client = client
        self._settings = settings
        self._keys = keys
        self._script_loaded = False
        self._connect_attempts = connect_attempts
        self._retrying = AsyncRetrying(  # the attempts after the first
            stop=stop_after_attempt(max(connect_attempts - 1, 1)),
            wait=wait_random_exponential(multiplier=settings.retry_backoff_s, max=settings.retry_backoff_max_s),
            retry=retry_if_exception_type((BackendUnavailableError, BackendTimeoutError)),
            sleep=anyio.sleep,
            reraise=True,
        )
        #: Round trips made (for tests and metrics).
        self.round_trips = 0
        #: Prometheus metrics when the process exports them (set by the bus; None skips them).
        self.metrics: BusMetrics | None = None
        #: OpenTelemetry spans (set by the bus): the writer ends the producer spans of what it wrote.
        self.tracing: Tracing | None = None
        self._channel_of: dict[str, str] = {}
        #: ``WAIT n timeout`` sent after every write when ``publish_min_replicas`` asks for it.
        self._wait = (
            pack("WAIT", settings.publish_min_replicas, settings.publish_replicas_timeout_ms)
            if settings.publish_min_replicas
            else b""
        )
        self._in_flight = 0
        self._idle: anyio.Event | None = None
        self._cluster = is_cluster(client)
        #: Cluster only: awaited after each confirmed phase (fault injection in tests).
        self.after_phase: PhaseHook | None = None

    async def write(self, prepared: Sequence[PreparedEvent]) -> list[PublishResult]:
        """Write prepared events in one round trip; raise if any was not fully written."""
        return results_or_raise(prepared, await self.write_outcomes(prepared))

    async def write_outcomes(self, prepared: Sequence[PreparedEvent]) -> list[Outcome]:
        """Write in one round trip and return a result or an error per event (never partial silently).

        Raises only for the round trip as a whole: ``PublishOutcomeUnknownError`` (sent, no
        reply), a translated backend error when nothing could be sent or Redis refused the
        transaction at queue time (nothing written).
        """
        if not prepared:
            return []
        if self._cluster:
            return await self._write_cluster(prepared)
        use_sha = self._script_loaded
        try:
            outcomes = await self._exchange(prepared, use_sha=use_sha)
        except BaseException as exc:
            if self.tracing is not None:
                self._end_spans(prepared, [exc] * len(prepared))
            raise
        return await self._settle(prepared, outcomes, use_sha=use_sha)

    async def write_chunks(self, chunks: Iterable[Sequence[PreparedEvent]]) -> list[PublishResult]:
        """Write events while they are being prepared, in ONE MULTI/EXEC; raise if any was not written.

        ``chunks`` yields lists of prepared events, preparing each list when asked for it. MULTI
        and each chunk are sent as soon as they are ready, so Redis parses and queues chunk *n*
        while the next one is prepared; EXEC follows the last chunk and every reply is read
        once, at the end. All or none still holds: an exception raised by ``chunks`` (an
        invalid event) sends DISCARD instead of EXEC (nothing is written) and propagates; the
        connection failing before EXEC went out writes nothing either (a backend error); after
        it, ``PublishOutcomeUnknownError`` as for :meth:`write`.
        """
        if self._cluster:  # every chunk prepared (validated) first: an invalid one writes nothing
            everything = [p for chunk in chunks for p in chunk]
            return results_or_raise(everything, await self._write_cluster(everything))
        use_sha = self._script_loaded
        prepared, outcomes = await self._exchange_chunks(chunks, use_sha=use_sha)
        return results_or_raise(prepared, await self._settle(prepared, outcomes, use_sha=use_sha))

    async def _write_cluster(self, prepared: Sequence[PreparedEvent]) -> list[Outcome]:
        """One MULTI/EXEC per hash slot, phase by phase (see :mod:`bus.publish._slots`)."""
        self._in_flight += 1
        try:
            outcomes, phases = await write_per_slot(
                self._client, prepared, self._settings.socket_timeout_s, self.after_phase
            )
        finally:
            self._done()
        self.round_trips += phases
        if self.metrics is not None:
            self._count(prepared, outcomes)
        return outcomes

    async def _settle(self, prepared: Sequence[PreparedEvent], outcomes: list[Any], *, use_sha: bool) -> list[Outcome]:
        """Resend with EVAL the idempotent events whose EVALSHA met NOSCRIPT; the others' outcomes stand."""
        retry = [i for i, o in enumerate(outcomes) if o is _NOSCRIPT]
        if retry:
            # The server lost (or never had) the script; EVALSHA did not run. Send those with EVAL.
            try:
                again = await self._exchange([prepared[i] for i in retry], use_sha=False)
            except BusError as exc:  # the first trip's outcomes stand; only the resent events failed
                again = [exc] * len(retry)
            for i, o in zip(retry, again, strict=True):
                outcomes[i] = (
                    o if o is not _NOSCRIPT else BackendError("Redis refused the idempotency script (NOSCRIPT)")
                )
        if not use_sha and any(p.script is not None for p in prepared):
            self._script_loaded = True
        if self.metrics is not None:
            self._count(prepared, outcomes)
        if self.tracing is not None:
            self._end_spans(prepared, outcomes)
        return outcomes

    def _end_spans(self, prepared: Sequence[PreparedEvent], outcomes: Sequence[Any]) -> None:
        """End the producer span of each traced event with its outcome."""
        assert self.tracing is not None
        for p, outcome in zip(prepared, outcomes, strict=True):
            if isinstance(p, TracedEvent):
                self.tracing.end_send(p.span, outcome)

    def _count(self, prepared: Sequence[PreparedEvent], outcomes: Sequence[Any]) -> None:
        """Written entries into ``published`` by event type and channel (workflow: "workflow");
        events not written into ``publish_failed`` by event type."""
        metrics, channel_of = self.metrics, self._channel_of
        assert metrics is not None
        for p, outcome in zip(prepared, outcomes, strict=True):
            if isinstance(outcome, PublishResult) and not outcome.duplicate:
                for stream in outcome.entries:
                    channel = channel_of.get(stream)
                    if channel is None:
                        parsed = self._keys.parse_stream(stream)
                        channel = channel_of[stream] = parsed[0] if parsed else "workflow"
                    metrics.inc("published", (outcome.event_type, channel))
            elif isinstance(outcome, BusError):
                metrics.inc("publish_failed", (p.event_type,))

    async def _exchange(self, prepared: Sequence[PreparedEvent], *, use_sha: bool) -> list[Any]:
        n_commands = 0
        parts: list[bytes] = [MULTI]
        append = parts.append
        for p in prepared:
            n_commands += p.n_commands
            append(p.command if p.script is None else p.packed(use_sha=use_sha))
        transaction = n_commands > 1
        if transaction:
            append(EXEC)
        else:
            del parts[0]
        wait = self._wait
        if wait:
            append(wait)
        n_replies = (n_commands + 2 if transaction else 1) + (1 if wait else 0)
        replies = await self._round_trip(b"".join(parts), n_replies, prepared)
        if not wait:
            return self._outcomes(prepared, replies, transaction=transaction)
        confirmed = replies.pop()
        return self._confirmed(prepared, self._outcomes(prepared, replies, transaction=transaction), confirmed)

    def _confirmed(self, prepared: Sequence[PreparedEvent], outcomes: list[Any], replicas: Any) -> list[Any]:
        """The outcomes, once ``WAIT``'s reply says enough replicas have every write; else
        ``PublishOutcomeUnknownError`` for the events written (on the master only, as far as we know)."""
        wanted = self._settings.publish_min_replicas
        if isinstance(replicas, int) and replicas >= wanted:
            return outcomes
        written = [
            p for p, o in zip(prepared, outcomes, strict=True) if isinstance(o, PublishResult | PartialWriteError)
        ]
        if not written:
            return outcomes
        ids = tuple(e for p in written for e in (p.event_ids or (p.event_id,)))
        got = f"{replicas} replica(s)" if isinstance(replicas, int) else f"an error ({replicas})"
        raise PublishOutcomeUnknownError(
            f"{len(written)} event(s) were written on the master but WAIT {wanted} confirmed {got} within "
            f"{self._settings.publish_replicas_timeout_ms} ms (BUS_PUBLISH_MIN_REPLICAS): a failover now may lose "
            "them. Publish again with the same event_id or idempotency key (consumers dedupe on it).",
            ids,
        )

    async def _exchange_chunks(
        self, chunks: Iterable[Sequence[PreparedEvent]], *, use_sha: bool
    ) -> tuple[list[PreparedEvent], list[Any]]:
        """MULTI, each chunk as it comes, EXEC; then every reply. See :meth:`write_chunks`."""
        prepared: list[PreparedEvent] = []
        timeout = self._settings.socket_timeout_s
        conn = await self._acquire()
        self._in_flight += 1
        n_commands = 0
        executing = False  # EXEC went to the socket: from then on a failure leaves the outcome unknown
        try:
            try:
                self.round_trips += 1
                it = iter(chunks)
                head: bytes = MULTI
                while True:
                    try:
                        chunk = next(it)  # prepares (validates) the chunk: Redis queues the last one meanwhile
                    except StopIteration:
                        break
                    except (PayloadValidationError, PayloadTooLargeError):
                        if not head:  # MULTI went out: drop what was queued
                            await self._discard(conn, n_commands, timeout)
                        raise
                    parts = [head]
                    head = b""
                    for p in chunk:
                        n_commands += p.n_commands
                        parts.append(p.command if p.script is None else p.packed(use_sha=use_sha))
                    prepared += chunk
                    await send_packed(conn, b"".join(parts), timeout)
                if head:  # nothing to write at all
                    return prepared, []
                executing = True
                await send_packed(conn, EXEC + self._wait, timeout)
                replies = await read_replies(conn, n_commands + 2 + (1 if self._wait else 0), timeout)
            except BaseException as exc:
                if self.tracing is not None:
                    self._end_spans(prepared, [exc] * len(prepared))
                if not isinstance(exc, PayloadValidationError | PayloadTooLargeError):  # (those were discarded)
                    await drop(conn)  # it may hold unread replies or a half-queued transaction
                if isinstance(exc, rex.RedisError | OSError | TimeoutError):
                    if executing:
                        raise self._outcome_unknown(prepared, exc) from exc
                    error = translate_error(exc, "publish (the connection failed before EXEC; nothing was written)")
                    raise error from exc
                raise
        finally:
            await release(self._client, conn)
            self._done()
        if not self._wait:
            return prepared, self._outcomes(prepared, replies, transaction=True)
        confirmed = replies.pop()
        return prepared, self._confirmed(prepared, self._outcomes(prepared, replies, transaction=True), confirmed)

    @staticmethod
    async def _discard(conn: Any, n_queued: int, timeout_s: float | None) -> None:
        """DISCARD the open transaction and read its replies; a connection that fails at it is dropped."""
        try:
            await send_packed(conn, DISCARD, timeout_s)
            await read_replies(conn, n_queued + 2, timeout_s)  # MULTI's OK, each QUEUED, DISCARD's OK
        except BaseException as exc:
            await drop(conn)  # Redis drops the transaction with the connection
            if not isinstance(exc, Exception):
                raise  # a cancellation still propagates; otherwise the caller raises the invalid event's error

    def _outcomes(self, prepared: Sequence[PreparedEvent], replies: list[Any], *, transaction: bool) -> list[Any]:
        """A result, an error or ``_NOSCRIPT`` per event, from the replies of one exchange."""
        if not transaction:
            command_replies: list[Any] = replies
        else:
            exec_reply = replies[-1]
            if not isinstance(exec_reply, list):
                # EXECABORT: a command was refused at queue time; nothing ran.
                queued = [r for r in replies[1:-1] if isinstance(r, rex.ResponseError)]
                if queued and all(_is_noscript(r) for r in queued):
                    return [_NOSCRIPT] * len(prepared)
                cause = queued[0] if queued else exec_reply
                error = translate_error(cause, "publish (transaction refused, nothing was written)")
                raise error from (cause if isinstance(cause, BaseException) else None)
            command_replies = exec_reply
        out: list[Any] = []
        append = out.append
        pos = 0
        for p in prepared:
            n = p.n_commands
            first = command_replies[pos]
            if p.script is not None:
                append(self._script_outcome(p, first))
            elif n == 1 and type(first) is bytes:  # the common cases, no slicing
                append(PublishResult(p.event_id, p.event_type, {p.streams[0]: first.decode()}))
            elif (
                n == 2
                and p.event_ids is None
                and type(first) is bytes
                and type(second := command_replies[pos + 1]) is bytes
            ):
                streams = p.streams
                append(
                    PublishResult(p.event_id, p.event_type, {streams[0]: first.decode(), streams[1]: second.decode()})
                )
            else:
                append(self._xadd_outcome(p, command_replies[pos : pos + n]))
            pos += n
        return out

    def _xadd_outcome(self, p: PreparedEvent, replies: list[Any]) -> Outcome:
        entries: dict[str, str] = {}
        for stream, reply in zip(p.streams, replies, strict=True):
            if isinstance(reply, bytes):
                entries[stream] = reply.decode()
            elif isinstance(reply, str):  # a client built with decode_responses=True
                entries[stream] = reply
            else:
                break
        else:
            event_ids = dict(zip(p.streams, p.event_ids, strict=True)) if p.event_ids else None
            return PublishResult(p.event_id, p.event_type, entries, event_ids=event_ids)
        errors = [(s, r) for s, r in zip(p.streams, replies, strict=True) if isinstance(r, rex.ResponseError)]
        if len(errors) == len(replies):  # every XADD of this event was refused: nothing of it exists
            stream, error = errors[0]
            return translate_error(error, f"publish of {p.event_type} {p.event_id} to {stream} (nothing was written)")
        ids = p.event_ids or (p.event_id,) * len(p.streams)
        written = [
            (e, s, text(r))
            for e, s, r in zip(ids, p.streams, replies, strict=True)
            if not isinstance(r, rex.ResponseError)
        ]
        failed = [
            (e, s, str(r)) for e, s, r in zip(ids, p.streams, replies, strict=True) if isinstance(r, rex.ResponseError)
        ]
        return PartialWriteError(
            f"{p.event_type} {p.event_id}: Redis refused the write to {errors[0][0]}: {errors[0][1]} (written to "
            f"{', '.join(s for _, s, _ in written)}; MULTI/EXEC does not roll back)",
            written=written,
            failed=failed,
        )

    def _script_outcome(self, p: PreparedEvent, reply: Any) -> Any:
        if isinstance(reply, rex.ResponseError):
            if _is_noscript(reply):
                return _NOSCRIPT
            # The script checks before writing: an error means nothing of this event was written.
            return translate_error(reply, f"idempotent publish of {p.event_type} {p.event_id}")
        if not isinstance(reply, list) or not reply:
            return BackendError(f"unexpected reply to the idempotent publish of {p.event_type}: {reply!r}")
        if reply[0] == 0:
            first, *ids = text(reply[1]).split(",")
            first_ids = dict(zip(p.streams, ids, strict=True)) if len(ids) == len(p.streams) else None
            return PublishResult(first, p.event_type, {}, duplicate=True, event_ids=first_ids)
        entries = {s: text(r) for s, r in zip(p.streams, reply[1:], strict=True)}
        event_ids = dict(zip(p.streams, p.event_ids, strict=True)) if p.event_ids else None
        return PublishResult(p.event_id, p.event_type, entries, event_ids=event_ids)

    async def _round_trip(self, data: bytes, n_replies: int, prepared: Sequence[PreparedEvent]) -> list[Any]:
        conn = await self._acquire()
        self._in_flight += 1
        try:
            self.round_trips += 1
            if self.metrics is None:
                return await exchange(conn, data, n_replies, self._settings.socket_timeout_s)
            started = time.perf_counter()
            replies = await exchange(conn, data, n_replies, self._settings.socket_timeout_s)
            self.metrics.observe("publish_round_trip_seconds", (), time.perf_counter() - started)
            return replies
        except rex.BusyLoadingError as exc:  # a LOADING reply: Redis refused the commands, none ran
            raise translate_error(exc, "publish") from exc
        except (rex.RedisError, OSError, TimeoutError) as exc:  # (exchange dropped the connection)
            raise self._outcome_unknown(prepared, exc) from exc
        finally:
            await release(self._client, conn)
            self._done()

    @staticmethod
    def _outcome_unknown(prepared: Sequence[PreparedEvent], exc: BaseException) -> PublishOutcomeUnknownError:
        ids = tuple(e for p in prepared for e in (p.event_ids or (p.event_id,)))
        return PublishOutcomeUnknownError(
            f"the connection failed after {len(prepared)} event(s) were sent ({type(exc).__name__}: {exc}); they "
            "may or may not be written. Publish again with an idempotency key (a fan-out keeps its per-copy "
            "ids), or, for a single-channel publish, with the same event_id (consumers dedupe on it).",
            ids,
        )

    def _done(self) -> None:
        """One write less in flight; wake :meth:`wait_idle` at zero."""
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def _acquire(self) -> Any:
        """A connected connection from the client's pool; connect failures (nothing sent) are retried.

        The first attempt goes without tenacity (the common case costs nothing); retries use a
        fresh copy of the policy, since one retrying object must not be shared by concurrent tasks.
        """
        pool = self._client.connection_pool
        try:
            with redis_errors("connect for publish"):
                return await pool.get_connection()  # type: ignore[no-untyped-call]
        except (BackendUnavailableError, BackendTimeoutError):
            if self._connect_attempts <= 1:
                raise
        await anyio.sleep(random.uniform(0, self._settings.retry_backoff_s))  # full jitter, as tenacity's waits
        async for attempt in self._retrying.copy():
            with attempt, redis_errors("connect for publish"):
                return await pool.get_connection()  # type: ignore[no-untyped-call]
        raise AssertionError("unreachable")  # pragma: no cover

    async def wait_idle(self) -> None:
        """Return once no write is in flight (used by the bus on close)."""
        while self._in_flight:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()


def _is_noscript(reply: BaseException) -> bool:
    """EVALSHA of a script the server does not have (redis-py strips the NOSCRIPT code)."""
    return isinstance(reply, rex.NoScriptError) or str(reply).startswith("NOSCRIPT")


_NOSCRIPT: Any = object()
