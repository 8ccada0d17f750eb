"""The consuming half of an :class:`~bus.EventBus`: typed subscriptions of per-type streams, the
consume loop that runs them (:class:`bus.consume.Consumer`), its counters, status and dead letters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, overload

import anyio
import msgspec

from schemas import Registry

from ._errors import ConfigurationError
from ._inspect import BusStatus, discover_streams, inspect_streams
from ._keys import CHANNEL_GLOBAL, Keys
from ._settings import BusSettings
from .consume import Consumer, ConsumerStats, DeadLetter, Handler, StreamSubscription, Subscription
from .consume._deadletter import read_dead_letters
from .consume._delivery import make_subscription

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from anyio.abc import TaskStatus

    from .observability._metrics import BusMetrics
    from .observability._tracing import Tracing

__all__ = ["EventConsuming"]

H = TypeVar("H", bound=Handler)


class EventConsuming:
    """Subscriptions and the consume loop of one bus (reached through the bus's methods)."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: BusSettings,
        keys: Keys,
        registry: Registry,
        consumer_name: str,
        check_open: Callable[[], None],
        metrics: BusMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._client = client
        self.settings = settings
        self.keys = keys
        self.registry = registry
        self.consumer_name = consumer_name
        self.metrics = metrics
        self.tracing = tracing
        self._check_open = check_open
        self._subscriptions: list[Subscription] = []
        self._consumer: Consumer | None = None
        self._stats = ConsumerStats()

    @overload
    def subscribe(
        self, event_type: str, handler: Handler, *, channel: str = ..., subscriber_id: str | None = ...
    ) -> Subscription: ...

    @overload
    def subscribe(
        self, event_type: str, handler: None = ..., *, channel: str = ..., subscriber_id: str | None = ...
    ) -> Callable[[H], H]: ...

    def subscribe(
        self,
        event_type: str,
        handler: Handler | None = None,
        *,
        channel: str = CHANNEL_GLOBAL,
        subscriber_id: str | None = None,
    ) -> Subscription | Callable[[H], H]:
        """Register ``async def handler(delivery: Delivery) -> None`` for an event type on a channel.

        Without ``handler`` it returns a decorator. ``subscriber_id`` names the handler's success
        markers (default ``module.qualname``); it must be unique per stream. Handlers of one
        entry run in registration order. Subscribe before :meth:`run`.
        """
        if handler is None:

            def decorator(fn: H) -> H:
                self.subscribe(event_type, fn, channel=channel, subscriber_id=subscriber_id)
                return fn

            return decorator
        if self._consumer is not None:
            raise ConfigurationError("subscribe", "the consume loop is running; subscribe before bus.run()")
        sub = make_subscription(
            self.registry, self.keys, self._subscriptions, event_type, handler, channel, subscriber_id
        )
        self._subscriptions.append(sub)
        return sub

    def subscriber(
        self, event_type: str, *, channel: str = CHANNEL_GLOBAL, subscriber_id: str | None = None
    ) -> Callable[[H], H]:
        """Decorator form of :meth:`subscribe`: ``@bus.subscriber("TICKET_CREATED")``."""
        return self.subscribe(event_type, channel=channel, subscriber_id=subscriber_id)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """Everything subscribed so far, in registration order."""
        return tuple(self._subscriptions)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Consume until cancelled or :meth:`stop`; ``await tg.start(bus.run)`` returns once the
        consumer groups exist. Cancelling drains gracefully (see :class:`bus.Consumer`).

        Raises ``AuthenticationError`` (fatal, never retried) or ``ConfigurationError``; transport
        errors are retried with backoff, a vanished group is recreated.
        """
        self._check_open()
        if self._consumer is not None:
            raise ConfigurationError("run", "the consume loop of this bus is already running")
        subscription = StreamSubscription.for_events(
            self.settings, tuple(self._subscriptions), consumer=self.consumer_name
        )
        consumer = self.consume_loop(subscription, stats=self._stats)
        self._consumer = consumer
        try:
            await consumer.run(task_status=task_status)
        finally:
            self._consumer = None

    def consume_loop(self, subscription: StreamSubscription, *, stats: ConsumerStats | None = None) -> Consumer:
        """A consume loop (not started) for ``subscription`` on this bus's client, settings, keys,
        registry, metrics and tracing; ``await loop.run()`` runs it.

        The loop counts into ``stats`` when given, else into counters of its own (``loop.stats``).
        For subscriptions beside the bus's own typed ones (:meth:`run`), such as the workflow
        consumer's; the caller runs and stops it. Raises ``BusClosedError`` once the bus is closed.
        """
        self._check_open()
        return Consumer(
            self._client, self.settings, self.keys, self.registry, subscription, stats, self.metrics, self.tracing
        )

    def stop(self) -> None:
        """Ask a running consume loop to stop gracefully (:meth:`run` then returns)."""
        if self._consumer is not None:
            self._consumer.stop()

    @property
    def consumer(self) -> Consumer | None:
        """The running consume loop, if any."""
        return self._consumer

    @property
    def stats(self) -> ConsumerStats:
        """A snapshot of the consume counters (handled, retries, dead-lettered, trimmed, ...)."""
        return msgspec.structs.replace(self._stats)

    @property
    def trimmed_unread(self) -> int:
        """Entries this bus found trimmed before its group read them (also logged at error level)."""
        return self._stats.trimmed_unread

    async def status(self, *, channel: str | None = None, group: str | None = None) -> BusStatus:
        """Length, lag, pending, oldest pending age, consumers and dead letters per stream and group.

        Streams are the subscribed ones plus every per-type stream found by SCAN (of ``channel``).
        """
        self._check_open()
        found = await discover_streams(self._client, self.keys, channel)
        subscribed = [s.stream for s in self._subscriptions if channel is None or s.channel == channel]
        return await inspect_streams(self._client, self.keys, sorted({*found, *subscribed}), group=group)

    async def dead_letters(
        self, event_type: str, *, channel: str = CHANNEL_GLOBAL, count: int = 100
    ) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of an event type on a channel."""
        self._check_open()
        return await read_dead_letters(self._client, self.keys.stream(channel, event_type), count=count)
