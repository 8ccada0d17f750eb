"""A stream subscription: everything one consume loop needs to know about what it consumes.

Like FastStream's ``StreamSub``, it owns its stream set, consumer group, consumer name, the id a
new group starts at, batch size, concurrency, retries, max deliveries, the decoder and the
dead-letter format; one engine (:class:`bus.Consumer`) runs any of them:

- typed bus events (``handlers``: per-type :class:`bus.Subscription`\\ s on channel streams):
  envelope and payload validated, processed markers, per-type dead letters. ``EventBus.run``
  builds this one from ``bus.subscribe(...)``;
- flat entries of any stream (``entry_handler``, e.g. ``workflow:events:global``): the handler
  gets a :class:`StreamEntry`; no bus markers (the handler dedupes as it needs), dead letters in
  the format given (:class:`bus.consume.WorkflowDeadLetters` for the reference's workflow DLQ).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta

from .._errors import ConfigurationError
from .._settings import LoopTiming
from ._deadletter import PerTypeDeadLetters

if TYPE_CHECKING:
    from .._settings import BusSettings
    from ._deadletter import DeadLetterFormat
    from ._delivery import Subscription

__all__ = ["EntryCheck", "EntryHandler", "StreamEntry", "StreamSubscription"]

PosInt = Annotated[int, Meta(gt=0)]
PosFloat = Annotated[float, Meta(gt=0)]


class StreamEntry(msgspec.Struct, frozen=True, gc=False):
    """One entry of a flat-entry subscription, as its handler receives it."""

    stream: str
    entry_id: str
    fields: Mapping[bytes, bytes]
    delivery_count: int


#: ``async def handle(entry: StreamEntry) -> None``: return to ack, raise to retry (the entry stays
#: pending and is redelivered), raise :class:`bus.Reject` to dead-letter it at once.
EntryHandler = Callable[[StreamEntry], Awaitable[None]]
#: ``check(fields) -> problem or None``: an entry with a problem is dead-lettered as ``invalid``
#: without calling the handler.
EntryCheck = Callable[[Mapping[bytes, bytes]], "str | None"]


#: The smallest derived COUNT per stream (the reference's COUNT).
MIN_COUNT = 10


class StreamSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """What one consume loop reads, as whom, how, and where its failures go (see the module docstring)."""

    streams: tuple[str, ...]
    group: Annotated[str, Meta(min_length=1)]
    consumer: Annotated[str, Meta(min_length=1)]
    start_id: str = "0"
    #: XREADGROUP COUNT per stream; None: ``max(10, read_budget // len(streams))``.
    batch_size: PosInt | None = None
    read_budget: PosInt = 1000
    #: Bytes one read should return at most: the count adapts to the entries' size (entries larger
    #: than a whole budget are still read, one at a time).
    read_bytes: PosInt = 4 * 1024 * 1024
    concurrency: PosInt = 16
    handler_retries: Annotated[int, Meta(ge=0)] = 2
    max_deliveries: PosInt = 10
    timing: LoopTiming = LoopTiming()
    #: Typed bus events: the per-type handlers (their streams are ``streams``).
    handlers: tuple[Subscription, ...] = ()
    #: Flat entries: the one handler, its key in logs, and an optional check before it.
    entry_handler: EntryHandler | None = None
    entry_handler_key: str = "entries"
    entry_check: EntryCheck | None = None
    dead_letters: DeadLetterFormat = PerTypeDeadLetters()
    #: Record the failure's stack in dead letters (the workflow DLQ has an ``error_stack`` field).
    dead_letter_stack: bool = False

    def __post_init__(self) -> None:
        if not self.streams:
            raise ConfigurationError("subscriptions", "nothing is subscribed: call bus.subscribe(...) before run()")
        if self.batch_size is None:
            msgspec.structs.force_setattr(self, "batch_size", max(MIN_COUNT, self.read_budget // len(self.streams)))
        if (self.entry_handler is None) == (not self.handlers):
            raise ConfigurationError("handlers", "give either per-type handlers or one entry handler")

    @property
    def count(self) -> int:
        """The XREADGROUP COUNT per stream (``batch_size``, derived when it was not given)."""
        assert self.batch_size is not None  # resolved in __post_init__
        return self.batch_size

    @property
    def is_typed(self) -> bool:
        """True for typed bus events, False for flat entries."""
        return bool(self.handlers)

    @classmethod
    def from_settings(cls, settings: BusSettings, **values: Any) -> StreamSubscription:
        """A subscription with the bus settings' read, claim and retry knobs (``values`` win)."""
        knobs: dict[str, Any] = {
            "group": settings.consumer_group,
            "consumer": settings.resolved_consumer_name,
            "batch_size": settings.batch_size,
            "read_budget": settings.read_budget,
            "read_bytes": settings.read_bytes,
            "concurrency": settings.concurrency,
            "handler_retries": settings.handler_retries,
            "max_deliveries": settings.max_deliveries,
            "timing": settings.loop_timing,
        }
        knobs.update(values)
        return cls(**knobs)

    @classmethod
    def for_events(cls, settings: BusSettings, handlers: tuple[Subscription, ...], **values: Any) -> StreamSubscription:
        """Typed bus events: the streams of ``handlers``, in the order first subscribed."""
        streams = tuple(dict.fromkeys(s.stream for s in handlers))
        return cls.from_settings(settings, streams=streams, handlers=handlers, **values)
