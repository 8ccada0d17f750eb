"""The consume engine: a :class:`StreamSubscription` says what to consume, :class:`Consumer` runs it.

Modules along the loop's seams: ``_reading`` (XREADGROUP, own pending), ``_dispatch`` (decode ->
delivery or dead-letter reason, marker lookup), ``_queue`` (the bounded hand-off to the
workers), ``_workers`` (handlers, timeouts, in-process retries), ``_acker`` (one ack buffer, one
MULTI/EXEC per flush), ``_maintenance`` (reclaim, keep-alive, trimming, NOGROUP), ``_markers``,
``_deadletter``, ``_health`` (pause and resume when Redis refuses writes); ``_engine`` wires them.
"""

from __future__ import annotations

from .._settings import LoopTiming
from ._deadletter import DeadLetter, DeadLetterFormat, PerTypeDeadLetters, WorkflowDeadLetters
from ._delivery import Delivery, Handler, Subscription
from ._engine import Consumer
from ._entry import Failure
from ._retry import single_error
from ._stats import ConsumerStats
from ._subscription import EntryHandler, StreamEntry, StreamSubscription

__all__ = [
    "Consumer",
    "ConsumerStats",
    "DeadLetter",
    "DeadLetterFormat",
    "Delivery",
    "EntryHandler",
    "Failure",
    "Handler",
    "LoopTiming",
    "PerTypeDeadLetters",
    "StreamEntry",
    "StreamSubscription",
    "Subscription",
    "WorkflowDeadLetters",
    "single_error",
]
