"""Workers: run the handlers of one entry in order, each under ``handler_timeout_s``, retrying a
failure in-process (tenacity, short capped backoff) before leaving the entry pending.

A handler is started eagerly (:func:`start`: its coroutine runs to its first await at once):
one that finishes without suspending (a no-op, a cache write) costs neither a timer nor a
scope; one that suspends is awaited on through :class:`_Resume`, in the same task.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .._errors import Reject, RetryLater
from .._redact import redact_text
from ..wire import fields_dict
from ._entry import DEAD, MARKS, PROGRESS, Entry, Failure
from ._native import start as _c_start

if TYPE_CHECKING:
    from .._settings import BusSettings
    from ..observability._tracing import Tracing
    from ._acker import AckBuffer
    from ._delivery import Subscription
    from ._entry import InFlight
    from ._health import BackendHealth
    from ._markers import Markers
    from ._queue import EntryQueue
    from ._stats import StatsBoard

__all__ = ["Workers", "log_failure", "start"]

log = logging.getLogger("bus.consume")


class _Resume:
    """Awaits a coroutine that already ran up to its first suspension (``first`` is what it yielded),
    exactly as ``await coro`` would."""

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


def _start(fn: Callable[[Any], Any], arg: Any, done: Any, resume: Callable[[Any, Any], Any]) -> Any:
    """Python version of ``bus.consume._speedups.start``: call ``fn(arg)``; a coroutine runs to its first
    suspension: ``done`` when it finished, else ``resume(coro, yielded)``; any other result as it is."""
    awaitable = fn(arg)
    if type(awaitable) is not types.CoroutineType:
        return awaitable
    try:
        return resume(awaitable, awaitable.send(None))
    except StopIteration:
        return done


#: Call a handler and run it to its first suspension (see :func:`_start`); C when built.
start_call: Callable[[Callable[[Any], Any], Any, Any, Callable[[Any, Any], Any]], Any] = _c_start or _start

#: What :data:`start_call` returns for a handler that finished without suspending.
DONE: Any = object()


def start(fn: Callable[[Any], Any], arg: Any) -> Awaitable[None] | None:
    """Call ``fn(arg)`` and run it to its first suspension: None when it finished, else what to await.

    Raises what the handler raised before its first await. Other awaitables are returned as they are.
    """
    awaitable = start_call(fn, arg, DONE, _Resume)
    return None if awaitable is DONE else awaitable


class Workers:
    """The handler side of the loop: N tasks taking entries from one bounded stream."""

    def __init__(
        self,
        settings: BusSettings,
        handler_retries: int,
        max_deliveries: int,
        acks: AckBuffer,
        in_flight: InFlight,
        markers: Markers | None,
        board: StatsBoard,
        *,
        with_stack: bool = False,
        tracing: Tracing | None = None,
        health: BackendHealth | None = None,
    ) -> None:
        self.acks = acks
        self._tracing = tracing
        self.health = health
        self.in_flight = in_flight
        self.markers = markers
        self.board = board
        self.stopping = False
        self._with_stack = with_stack
        self._timeout = settings.handler_timeout_s
        self._retries = handler_retries
        self._max_deliveries = max_deliveries
        self._retry_wait: Any = None
        if settings.retry_backoff_max_s > 0:
            self._retry_wait = wait_exponential_jitter(
                multiplier=settings.retry_backoff_s, max=settings.retry_backoff_max_s, jitter=settings.retry_backoff_s
            )

    async def run(self, queue: EntryQueue) -> None:
        """One worker: entries until the queue ends; after the drain began, leave them pending."""
        try:
            await self._run(queue)
        finally:
            self.acks.wake()

    async def _run(self, queue: EntryQueue) -> None:
        """The loop of :meth:`run`. Entries whose handlers finish without suspending go straight to
        the acker's list; the acker is woken once per run of them, before the worker awaits
        anything, so none waits behind a slow handler or an empty queue."""
        process = self._process if self._tracing is None else self._traced  # chosen once, not per entry
        # A lone handler (most entries) is started right here, not in a coroutine of ours per entry;
        # with metrics or tracing on, every entry goes through ``process`` (timing, spans).
        lone = self._tracing is None and self.board.metrics is None
        acks = self.acks
        take = queue.take
        keep = acks.done.append
        kept = False  # entries appended since the last wake-up of the acker
        health = self.health
        call = start_call
        done, resume = DONE, _Resume
        failed: Exception | None
        while True:
            try:
                entry = take()
            except IndexError:
                if kept:
                    acks.wake()
                    kept = False
                try:
                    entry = await queue.get()
                except anyio.EndOfStream:
                    return
            if self.stopping:
                self.in_flight.release(entry)  # not started: leave it pending
                continue
            subs = entry.subs
            if lone and len(subs) == 1 and (health is None or not health.paused):
                sub = subs[0]
                try:  # the eager start of :meth:`_process`, inlined
                    awaitable = call(sub.handler, entry.delivery, done, resume)
                except StopIteration:  # a plain function's StopIteration: done, as a coroutine's return
                    keep(entry)
                    kept = True
                    continue
                except Exception as exc:
                    awaitable, failed = None, exc
                else:
                    if awaitable is done:  # finished without suspending
                        keep(entry)
                        kept = True
                        continue
                    failed = None
                if kept:  # about to await: the acker may flush what is done first
                    acks.wake()
                    kept = False
                error = await self._settle(sub, entry.delivery, awaitable, failed)
                if error is None:
                    acks.handled(entry)
                else:
                    self._on_failure(entry, sub, error, [])
                continue
            if kept:
                acks.wake()
                kept = False
            if health is not None and health.paused:
                await health.wait_resumed()  # health hook: start nothing while Redis refuses
            await process(entry)  # (only an entry with several handlers has some ``done``)

    async def _traced(self, entry: Entry) -> BaseException | None:
        """:meth:`_process` inside the delivery's consumer span (OpenTelemetry, only when tracing is on)."""
        tracing = self._tracing
        assert tracing is not None
        fields = fields_dict(entry.fields) if entry.fields is not None else {}
        with tracing.process(
            entry.stream, self.board.group, fields, entry.delivery, entry.deliveries, entry.entry_id
        ) as span:
            error = await self._process(entry)
            if error is not None:
                tracing.failed(span, error)
        return error

    async def _process(self, entry: Entry) -> BaseException | None:
        """Run the entry's handlers in order and queue its outcome; the error that failed it, or None."""
        # With metrics on, how long the handlers took rides on the entry to the acker's flush.
        started_at = time.perf_counter() if self.board.metrics is not None else 0.0
        shared = entry.delivery
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
            try:
                started = start_call(sub.handler, delivery, DONE, _Resume)
            except StopIteration:
                error = None  # a plain function's StopIteration: done, as a coroutine's return
            except Exception as exc:  # raised before its first await: retried like any failure
                if len(succeeded) > marked:
                    marked = self._mark_progress(entry, succeeded, marked)
                error = await self._settle(sub, delivery, None, exc)
            else:
                if started is DONE:  # finished without suspending
                    error = None
                else:
                    if len(succeeded) > marked:
                        # This handler takes time: the earlier ones' markers ride the next flush now,
                        # so a crash while it runs does not repeat them (not only when it fails).
                        marked = self._mark_progress(entry, succeeded, marked)
                    error = await self._settle(sub, delivery, started)
            if error is not None:
                self._on_failure(entry, sub, error, succeeded)
                return error
            if many:
                succeeded.append(sub.handler_key)
        if started_at:
            entry.took = time.perf_counter() - started_at
        self.acks.handled(entry)
        return None

    async def _settle(
        self, sub: Subscription, delivery: Any, started: Awaitable[None] | None, failed: Exception | None = None
    ) -> BaseException | None:
        """A handler call that did not finish at once, to its end: :meth:`_call` (timeout, retries),
        then, for a failure caused by a Redis-wide outage, :meth:`_ride_out`; the error, or None."""
        error = await self._call(sub, delivery, started, failed)
        if error is not None and self.health is not None and not isinstance(error, Reject):
            error = await self._ride_out(sub, delivery, error)  # health hook: an outage is no delivery attempt
        return error

    async def _ride_out(self, sub: Subscription, delivery: Any, error: BaseException) -> BaseException | None:
        """A failure caused by a Redis-wide outage: the entry stays in flight, the handler runs again
        once Redis writes (see :mod:`bus.consume._health`); the error it ends with, or None."""
        assert self.health is not None
        return await self.health.ride_out(error, lambda: self._again(sub, delivery), f"handler {sub.handler_key}")

    async def _again(self, sub: Subscription, delivery: Any) -> BaseException | None:
        """One more call of ``sub``'s handler on ``delivery``, with its timeout and in-process retries."""
        try:
            started = start(sub.handler, delivery)
        except Exception as exc:
            return await self._call(sub, delivery, None, exc)
        return None if started is None else await self._call(sub, delivery, started)

    def _mark_progress(self, entry: Entry, succeeded: list[str], marked: int) -> int:
        """Queue the success markers of ``succeeded[marked:]``; returns how many are queued now."""
        done = [s for s in entry.subs if s.handler_key in succeeded[marked:]]
        progress = Entry(entry.stream, entry.entry_id, None, entry.deliveries, entry.delivery)
        progress.members = self._handler_members(entry.delivery, done)
        self.acks.put(progress, PROGRESS)
        return len(succeeded)

    def _handler_members(self, delivery: Any, subs: list[Subscription]) -> list[bytes]:
        assert self.markers is not None
        return self.markers.handler_members(delivery, subs)

    def _on_failure(self, entry: Entry, sub: Subscription, error: BaseException, succeeded: list[str]) -> None:
        self.board.stats.failed += 1
        if self.board.metrics is not None:
            self.board.metrics.inc("failed", self.board.labels(entry.delivery))
        text = f"{sub.handler_key}: {type(error).__name__}: {error}"
        where = _where(entry)
        group = self.board.group
        if isinstance(error, Reject):
            log_failure(entry, group, f"handler rejected {where}: {text}", error, logging.ERROR)
            entry.failure = self._failure("rejected", text, error)
            self.acks.put(entry, DEAD)
        elif entry.deliveries >= self._max_deliveries:
            what = f"dead-lettering {where} after {entry.deliveries} deliveries: {text}"
            log_failure(entry, group, what, error, logging.ERROR)
            entry.failure = self._failure("max-deliveries", text, error)
            self.acks.put(entry, DEAD)
        else:
            what = f"handler failed on {where}, delivery {entry.deliveries}; left pending: {text}"
            log_failure(entry, group, what, error, logging.WARNING)
            if succeeded:
                done = [s for s in entry.subs if s.handler_key in succeeded]
                entry.members = self._handler_members(entry.delivery, done)
                self.acks.put(entry, MARKS)
            else:
                self.in_flight.release(entry)
                self.board.notify()

    def _failure(self, reason: str, text: str, error: BaseException) -> Failure:
        message = str(error) or type(error).__name__
        stack = "".join(traceback.format_exception(error)) if self._with_stack else ""
        return Failure(reason, text, message, stack)

    async def _call(
        self, sub: Subscription, delivery: Any, started: Awaitable[None] | None, failed: Exception | None = None
    ) -> BaseException | None:
        """Finish a handler call that suspended (``started``) or failed at once (``failed``), with its
        timeout and in-process retries; the last error, or None."""
        if failed is None:
            assert started is not None
            try:
                await self._bounded(sub, started, delivery)
                return None
            except Exception as exc:
                failed = exc
        if isinstance(failed, (RetryLater, Reject)):
            return failed
        first: Exception = failed
        if self._retries == 0 or self.stopping:
            return first
        replay = [first]  # attempt 1 already failed: tenacity sees it, then waits before attempt 2

        def retryable(exc: BaseException) -> bool:
            # Never a cancellation (tenacity's attempt context catches BaseException).
            if self.health is not None and self.health.paused:
                return False  # health hook: Redis refuses writes; the failure is ridden out instead
            return isinstance(exc, Exception) and not isinstance(exc, (RetryLater, Reject)) and not self.stopping

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.info("retrying %s on %s after: %r", sub.handler_key, getattr(delivery, "event_id", "?"), exc)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
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
                    self.board.stats.retries += 1
                    if self.board.metrics is not None:
                        self.board.metrics.inc("retried", self.board.labels(delivery))
                    started = start(sub.handler, delivery)
                    if started is not None:
                        await self._bounded(sub, started, delivery)
            return None
        except Exception as exc:
            return exc

    async def _bounded(self, sub: Subscription, awaitable: Awaitable[None], delivery: Any = None) -> None:
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
            self.board.stats.timeouts += 1
            if self.board.metrics is not None:
                self.board.metrics.inc("handler_timeouts", self.board.labels(delivery))
            raise TimeoutError(f"handler {sub.handler_key} timed out after {self._timeout}s") from None


def log_failure(entry: Entry, group: str, message: str, error: BaseException, level: int = logging.WARNING) -> None:
    """The one log line of a failed delivery attempt: ``message`` (it names the handler) at ``level``,
    the handler's traceback, and as extras the fields an operator filters on: ``event_type``,
    ``event_id``, ``stream``, ``group``, ``delivery_count``, ``entry_id``.

    The traceback goes in as the record's ``exc_text``, redacted, with no ``exc_info``: a handler's
    exception may carry secrets (a URL with its password, a header) and the record must not hand
    the raw object to whatever formats it. None for RetryLater and Reject, which are decisions.
    """
    if not log.isEnabledFor(level):
        return
    d = entry.delivery
    extra = {
        "event_type": getattr(d, "event_type", None) or "",
        "event_id": getattr(d, "event_id", None) or "",
        "stream": entry.stream,
        "group": group,
        "delivery_count": entry.deliveries,
        "entry_id": entry.entry_id.decode(),
    }
    record = log.makeRecord(log.name, level, __file__, 0, message, (), None, "log_failure", extra)
    if not isinstance(error, Reject | RetryLater):
        record.exc_text = redact_text("".join(traceback.format_exception(error)).rstrip("\n"))
    log.handle(record)


def _where(entry: Entry) -> str:
    d = entry.delivery
    at = f"{entry.stream} {entry.entry_id.decode()}"
    event_type = getattr(d, "event_type", None)
    return f"{event_type} {d.event_id} ({at})" if event_type else f"entry {at}"
