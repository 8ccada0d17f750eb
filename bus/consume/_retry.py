"""Transport retries of the consume loop (tenacity: exponential backoff with jitter and a cap),
and the one-real-error helper for exception groups."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from .._errors import AuthenticationError, BackendError

if TYPE_CHECKING:
    from ..observability._metrics import BusMetrics
    from ._stats import ConsumerStats

__all__ = ["RECONNECT_INITIAL_S", "RECONNECT_MAX_S", "TransportRetry", "single_error"]

log = logging.getLogger("bus.consume")

T = TypeVar("T")

#: Reconnect backoff of the reader, the acker and the maintenance loop (tenacity, with jitter).
RECONNECT_INITIAL_S = 0.05
RECONNECT_MAX_S = 2.0


class TransportRetry:
    """``await retry(what, call)``: retries transport failures with backoff until the call works."""

    __slots__ = ("metrics", "stats")

    def __init__(self, stats: ConsumerStats, metrics: BusMetrics | None = None) -> None:
        self.stats = stats
        self.metrics = metrics

    def _reconnect(self) -> None:
        self.stats.reconnects += 1
        if self.metrics is not None:
            self.metrics.inc("reconnects", ("consume",))

    def policy(self, what: str) -> AsyncRetrying:
        """Forever, exponential backoff with jitter up to :data:`RECONNECT_MAX_S`, never on auth errors."""

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, BackendError) and not isinstance(exc, AuthenticationError)

        def before_sleep(state: RetryCallState) -> None:
            self._reconnect()
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

    async def __call__(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, retried on transport failures.

        The first try goes without tenacity (building a retry policy costs more than a flush);
        an AuthenticationError is never retried.
        """
        try:
            return await call()
        except AuthenticationError:
            raise
        except BackendError as exc:
            self._reconnect()
            log.warning("%s failed, retrying: %s", what, exc)
        async for attempt in self.policy(what):
            with attempt:
                return await call()
        raise AssertionError("unreachable: the transport retry policy never stops")


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
