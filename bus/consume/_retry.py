"""Transport retries of the consume loop (capped exponential backoff with jitter, as tenacity's
``wait_exponential_jitter``), and the one-real-error helper for exception groups.

With a :class:`~bus.consume._health.BackendHealth`, a failure that is a confirmed Redis-wide
refusal pauses the loop instead: the retry waits for the resume (one probe for the whole loop,
one log line for the whole outage) rather than logging every attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import anyio

from .._errors import AuthenticationError, BackendError
from ._health import capped_backoff

if TYPE_CHECKING:
    from ..observability._metrics import BusMetrics
    from ._health import BackendHealth
    from ._stats import ConsumerStats

__all__ = ["RECONNECT_INITIAL_S", "RECONNECT_MAX_S", "TransportRetry", "single_error"]

log = logging.getLogger("bus.consume")

T = TypeVar("T")

#: Reconnect backoff of the reader, the acker and the maintenance loop (with jitter).
RECONNECT_INITIAL_S = 0.05
RECONNECT_MAX_S = 2.0


class TransportRetry:
    """``await retry(what, call)``: retries transport failures with backoff until the call works."""

    __slots__ = ("health", "metrics", "stats")

    def __init__(
        self, stats: ConsumerStats, metrics: BusMetrics | None = None, health: BackendHealth | None = None
    ) -> None:
        self.stats = stats
        self.metrics = metrics
        self.health = health

    def _reconnect(self) -> None:
        self.stats.reconnects += 1
        if self.metrics is not None:
            self.metrics.inc("reconnects", ("consume",))

    async def __call__(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, retried on transport failures, forever; never on wrong credentials.

        While the loop is paused by an outage the call waits for the resume first; a failure
        that the health confirms as an outage pauses it (and is not logged here).
        """
        health = self.health
        attempt = 0
        while True:
            if health is not None and health.paused:
                await health.wait_resumed()
            try:
                return await call()
            except BackendError as exc:
                error = exc
            if health is not None and await health.confirm(error, what):
                self._reconnect()
                attempt = 0
                continue
            if isinstance(error, AuthenticationError):
                raise error
            self._reconnect()
            attempt += 1
            log.warning("%s failed (attempt %d), retrying: %s", what, attempt, error)
            await anyio.sleep(capped_backoff(attempt, RECONNECT_INITIAL_S, RECONNECT_MAX_S))


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
