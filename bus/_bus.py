"""``EventBus``: the async context manager that owns the Redis client, publishing and consuming.

Publishing lives in ``publish/`` (Publisher: Preparer + Writer), consuming in ``consume/`` (Consumer); this
class owns the lifecycle and hands both the same settings, keys and client.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import anyio
import msgspec
import redis.asyncio as aioredis
import redis.exceptions as rex

from schemas import REGISTRY, Registry

from ._batch import AutoBatcher
from ._codec import new_event_id, now_iso
from ._consuming import EventConsuming
from ._errors import (
    BackendRefusedError,
    BusClosedError,
    BusError,
    ConfigurationError,
    PayloadTooLargeError,
    PayloadValidationError,
)
from ._keys import CHANNEL_GLOBAL, Keys
from ._options import PublishOptions, WorkflowHooks
from ._redact import register_secret
from ._redis import create_client, is_cluster_client, redis_errors, rotate_credentials
from ._settings import BusSettings
from .consume import Consumer, ConsumerStats, Subscription
from .publish import PreparedEvent, Publisher, PublishResult

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from schemas import Payload

    from .observability._metrics import BusMetrics
    from .observability._tracing import Tracing

__all__ = ["STREAM_CHUNK", "EventBus"]

#: Events per chunk when ``publish_many`` streams its transaction (sends while it prepares).
STREAM_CHUNK = 100


#: The option keywords of :meth:`EventBus.prepare` at their defaults (``options=`` excludes them).
_KEYWORD_DEFAULTS = (CHANNEL_GLOBAL, None, None, False, None, None, None, None)
#: Options of the plain keyword calls, by ``batch`` then channel (no key tuple per call). Keyed by
#: the channel as the caller gives it (a list is unhashable: looked up by its tuple instead).
_PLAIN: tuple[dict[object, PublishOptions], ...] = ({}, {None: PublishOptions.DEFAULT})


def _options(
    channel: str | Sequence[str] | None,
    event_id: str | None,
    timestamp: str | None,
    force: bool,
    workflow: bool | None,
    hooks: WorkflowHooks | None,
    idempotency_key: str | None,
    tenant: str | None,
    batch: bool,
) -> PublishOptions:
    """The keywords as one value; the common ones (only channel and batch) come from a cache."""
    if (
        event_id is None
        and timestamp is None
        and not force
        and workflow is None
        and hooks is None
        and idempotency_key is None
        and tenant is None
    ):
        try:
            return _PLAIN[batch][channel]
        except (KeyError, TypeError):  # a channel not seen yet, or channels given as a list
            return _plain_options(channel, batch)
    return PublishOptions(
        channels=_channels(channel),
        event_id=event_id,
        timestamp=timestamp,
        force=force,
        workflow=workflow,
        hooks=hooks,
        idempotency_key=idempotency_key,
        tenant=tenant,
        batch=batch,
    )


def _channels(channel: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    """The channel keyword as ``PublishOptions.channels`` holds it (a sequence as a tuple)."""
    return channel if channel is None or isinstance(channel, str | tuple) else tuple(channel)


def _plain_options(channel: str | Sequence[str] | None, batch: bool) -> PublishOptions:
    """The options of a plain call on ``channel``, cached by the channels (at most 1024 of them)."""
    channels = _channels(channel)
    cache = _PLAIN[batch]
    options = cache.get(channels)
    if options is None:
        if len(cache) >= 1024:
            cache.clear()
            cache[None] = PublishOptions.DEFAULT
        options = cache[channels] = PublishOptions(channels=channels, batch=batch)
    return options


log = logging.getLogger("bus")


class EventBus:
    """One connection to the bus: publish, subscribe and run the consume loop.

    ``async with EventBus(settings) as bus: ...``; pass ``client=`` to use an existing redis
    client (for example a fakeredis one). A closed bus raises :class:`BusClosedError`.
    """

    def __init__(
        self,
        settings: BusSettings | None = None,
        *,
        client: aioredis.Redis | None = None,
        registry: Registry = REGISTRY,
        metrics: BusMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings or BusSettings()
        register_secret(self.settings.password)  # masked in every log line, error and dead letter
        s = self.settings
        cluster = s.is_cluster or (client is not None and is_cluster_client(client))
        self.keys = Keys.tagged(s.prefix, s.stream_prefix, cluster=cluster, hashtag=s.key_hashtag)
        self.registry = registry
        self.consumer_name = self.settings.resolved_consumer_name
        self._owns_client = client is None
        self._client = client if client is not None else create_client(self.settings)
        self._open = False
        self._closed = False
        #: Server facts found at connect (e.g. ``{"xadd_idmp": False, "version": "7.0.15"}``).
        self.capabilities: dict[str, Any] = {}
        #: OpenTelemetry spans (``bus.observability.Tracing``, the ``otel`` extra), or None: no tracing.
        self.tracing = tracing
        self._publisher = Publisher(
            self._client, self.settings, self.keys, self.registry, self.capabilities, tracing=tracing
        )
        #: Prometheus metrics this bus updates (``bus.observability.BusMetrics``), or None.
        self.metrics = metrics
        self._publisher.metrics = metrics
        self._batcher = AutoBatcher(self._publisher.write_outcomes)
        #: The consuming half (subscriptions, the consume loop, status): see :class:`EventConsuming`.
        self.consuming = EventConsuming(
            self._client,
            self.settings,
            self.keys,
            self.registry,
            self.consumer_name,
            self._check_open,
            metrics,
            tracing,
        )
        self.subscribe = self.consuming.subscribe
        self.subscriber = self.consuming.subscriber
        self.run = self.consuming.run
        self.consume_loop = self.consuming.consume_loop
        self.stop = self.consuming.stop
        self.status = self.consuming.status
        self.dead_letters = self.consuming.dead_letters

    @property
    def settings(self) -> BusSettings:
        """The bus's settings."""
        return self._settings

    @settings.setter
    def settings(self, settings: BusSettings) -> None:
        # A service that owns its bus may re-group it before run() (App does): the consuming half follows.
        self._settings = settings
        self.consuming.settings = settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> EventBus:
        """A bus configured from REDIS_* / BUS_* variables."""
        return cls(BusSettings.from_env(environ, **overrides))

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> EventBus:
        """A bus configured from a ``redis://`` or ``rediss://`` URL."""
        return cls(BusSettings.from_url(url, **overrides))

    @property
    def client(self) -> aioredis.Redis:
        """The redis client; raises once the bus is closed."""
        self._check_open()
        return self._client

    @property
    def is_closed(self) -> bool:
        """True after :meth:`aclose`."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosedError("the EventBus is closed; create a new one")

    async def connect(self) -> None:
        """Check the connection and credentials, and record server capabilities."""
        self._check_open()
        try:
            with redis_errors("connect"):
                await self._client.ping()
        except BackendRefusedError as exc:
            # Reachable and authenticated, but refusing writes (Redis answers PING with MISCONF, for
            # one): the bus opens, and each write raises the typed error until Redis recovers.
            log.warning("connected to Redis, but it refuses writes for now: %s", exc)
        with redis_errors("connect"):
            try:
                info = await self._client.info("server")
            except rex.ResponseError:
                # fakeredis has no INFO and an ACL user may not run it: assume no optional features.
                info = {}
        version = str(info.get("redis_version", "0"))
        self.capabilities["version"] = version
        major = int(version.split(".")[0] or 0)
        # XADD IDMP (idempotent XADD) first shipped in Redis 8.6.
        self.capabilities["xadd_idmp"] = major > 8 or (major == 8 and int(version.split(".")[1]) >= 6)
        self._open = True

    async def rotate_credentials(self, username: str | None, password: str | None, *, verify: bool = True) -> None:
        """New connections authenticate with ``username``/``password`` from now on; nothing in flight fails.

        Rotation: ``ACL SETUSER svc >new`` (the user accepts both passwords), then this on every
        process, then ``ACL SETUSER svc <old``. With ``verify`` one probe connection
        authenticates with the new credentials first, and an ``AuthenticationError`` leaves the
        bus on the old ones. Idle connections reconnect at their next use, busy ones after their
        command; ``settings`` take the new credentials (the URL keeps only the host part).
        """
        self._check_open()
        if is_cluster_client(self._client):
            raise ConfigurationError(
                "rotate_credentials", "is not supported on Redis Cluster: restart the process with the new credentials"
            )
        await rotate_credentials(self._client, username, password, verify=verify)
        url = self.settings.redis_url
        if url is not None:
            parts = urlsplit(url)
            url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        self.settings = msgspec.structs.replace(self.settings, redis_url=url, username=username, password=password)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the bus (idempotent). A client passed in by the caller is left open."""
        if self._closed:
            return
        self._closed = True
        # Publishes already under way (auto-batched groups, round trips) finish first, time-boxed.
        with anyio.move_on_after(self.settings.shutdown_grace_s):
            await self._batcher.drain()
            await self._publisher.wait_idle()
        if self._owns_client:
            await self._client.aclose()

    # -- publishing (bus/publish/, bus/_batch.py) ------------------------------------

    def prepare(
        self,
        event_type: str,
        payload: Mapping[str, Any] | Payload,
        *,
        channel: str | Sequence[str] | None = CHANNEL_GLOBAL,
        event_id: str | None = None,
        timestamp: str | None = None,
        force: bool = False,
        workflow: bool | None = None,
        hooks: WorkflowHooks | None = None,
        idempotency_key: str | None = None,
        tenant: str | None = None,
        options: PublishOptions | None = None,
    ) -> PreparedEvent:
        """Validate and encode one publish without I/O (see :meth:`Preparer.prepare`).

        ``channel`` may name several channels: the envelope is written to each, every copy with
        its own fresh id unless ``event_id`` is given (the reference's behaviour, on which its
        consumers' dedupe depends); ``global`` adds the workflow entry, with the global copy's id.
        ``channel=None`` applies the reference's fan-out (:mod:`bus.routing`). ``options``: the
        same as one :class:`PublishOptions` value, instead of the keywords (not with them).
        """
        self._check_open()
        if options is None:
            options = _options(channel, event_id, timestamp, force, workflow, hooks, idempotency_key, tenant, True)
        elif (channel, event_id, timestamp, force, workflow, hooks, idempotency_key, tenant) != _KEYWORD_DEFAULTS:
            raise TypeError("pass either options= or the option keywords, not both")
        return self._publisher.prepare(event_type, payload, options)

    async def write(self, prepared: Sequence[PreparedEvent], *, batch: bool = False) -> list[PublishResult]:
        """Write prepared events in ONE round trip (MULTI/EXEC); all must be fully written or it raises.

        ``batch=True`` lets concurrent callers share the round trip (auto-batching, one tick).
        """
        self._check_open()
        if batch:
            return await self._batcher.submit(prepared)
        return await self._publisher.write(prepared)

    async def write_outcomes(
        self, prepared: Sequence[PreparedEvent], *, batch: bool = False
    ) -> list[PublishResult | BusError]:
        """Like :meth:`write`, but a result or an error per event (for best-effort callers).

        Raises only when the round trip as a whole failed (nothing sent, refused, outcome unknown).
        """
        self._check_open()
        if batch:
            return await self._batcher.submit_outcomes(prepared)
        return await self._publisher.write_outcomes(prepared)

    async def publish(
        self,
        event_type: str,
        payload: Mapping[str, Any] | Payload,
        *,
        channel: str | Sequence[str] | None = CHANNEL_GLOBAL,
        event_id: str | None = None,
        timestamp: str | None = None,
        force: bool = False,
        hooks: WorkflowHooks | None = None,
        idempotency_key: str | None = None,
        tenant: str | None = None,
        batch: bool = False,
        options: PublishOptions | None = None,
    ) -> PublishResult:
        """Validate, then XADD the event to its per-type stream (and the workflow stream on ``global``).

        Nothing is written when anything is invalid. Raises ``PayloadValidationError``,
        ``PayloadTooLargeError``, ``PublishOutcomeUnknownError`` (sent, no reply: publish again
        with the same ``event_id``) or a ``BackendError``. ``options`` replaces the keywords
        (see :meth:`prepare`); with ``options.strict`` False a failure is logged and returned as
        a result whose ``error`` is set instead of raised.
        """
        if self._closed:  # (the check inlined: the per-event path)
            self._check_open()
        if options is None:
            options = _options(channel, event_id, timestamp, force, None, hooks, idempotency_key, tenant, batch)
        elif (channel, event_id, timestamp, force, None, hooks, idempotency_key, tenant) != _KEYWORD_DEFAULTS or batch:
            raise TypeError("pass either options= or the option keywords, not both")
        prepared: PreparedEvent | None = None
        try:
            prepared = self._publisher.prepare(event_type, payload, options)
            if options.batch:  # straight to the outcome: one coroutine level less per caller on the hot path
                (outcome,) = await self._batcher.submit_outcomes((prepared,))
                if isinstance(outcome, BusError):
                    raise outcome
                return outcome
            return (await self._publisher.write((prepared,)))[0]
        except BusError as exc:
            if options.strict:
                raise
            failed_id = prepared.event_id if prepared is not None else options.event_id or new_event_id()
            return PublishResult.from_error(event_type, failed_id, exc)

    async def publish_many(
        self,
        events: Iterable[tuple[str, Mapping[str, Any] | Payload] | PreparedEvent],
        *,
        channel: str | Sequence[str] = CHANNEL_GLOBAL,
        force: bool = False,
    ) -> list[PublishResult]:
        """Publish N events in ONE MULTI/EXEC, all validated before anything is written.

        Items are ``(event_type, payload)`` pairs (published on ``channel``) or events from
        :meth:`prepare`. One invalid item raises ``PayloadValidationError`` whose path names its
        index (``$[3].payload.ticketId``) and nothing is written. The events of one call share
        one publish timestamp. Beyond :data:`STREAM_CHUNK` items, MULTI and every chunk of that
        many events go out as soon as they are prepared, so Redis queues one chunk while the
        next is validated; EXEC follows the last one (an invalid item sends DISCARD instead).
        """
        self._check_open()
        items = events if isinstance(events, Collection) else list(events)
        chunks = self._prepare_chunks(items, _options(channel, None, now_iso(), force, None, None, None, None, False))
        if len(items) <= STREAM_CHUNK:
            return await self._publisher.write([p for chunk in chunks for p in chunk])
        return await self._publisher.write_chunks(chunks)

    def _prepare_chunks(
        self, items: Iterable[tuple[str, Mapping[str, Any] | Payload] | PreparedEvent], options: PublishOptions
    ) -> Iterator[list[PreparedEvent]]:
        """The items prepared, :data:`STREAM_CHUNK` at a time (one publish time: ``options.timestamp``);
        an invalid one raises naming its index."""
        prepare = self._publisher.prepare
        chunk: list[PreparedEvent] = []
        for index, item in enumerate(items):
            if isinstance(item, PreparedEvent):
                chunk.append(item)
            else:
                try:
                    chunk.append(prepare(item[0], item[1], options))
                except PayloadValidationError as exc:
                    raise PayloadValidationError(exc.event_type, f"$[{index}]{exc.path[1:]}", exc.rule) from None
                except PayloadTooLargeError as exc:
                    raise PayloadTooLargeError(f"event [{index}]: {exc}") from None
            if len(chunk) >= STREAM_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    @property
    def publisher(self) -> Publisher:
        """The publish engine (round-trip counter, stream keys, idempotency marker keys)."""
        self._check_open()
        return self._publisher

    @property
    def batcher(self) -> AutoBatcher:
        """The auto-batcher behind ``batch=True`` (groups written so far)."""
        return self._batcher

    # -- consuming (bus/_consuming.py; the methods subscribe, subscriber, run, consume_loop, stop,
    # status and dead_letters are the EventConsuming's, bound in __init__) ------------------------

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """Everything subscribed so far, in registration order."""
        return self.consuming.subscriptions

    @property
    def consumer(self) -> Consumer | None:
        """The running consume loop, if any."""
        return self.consuming.consumer

    @property
    def stats(self) -> ConsumerStats:
        """A snapshot of the consume counters (handled, retries, dead-lettered, trimmed, ...)."""
        return self.consuming.stats

    @property
    def trimmed_unread(self) -> int:
        """Entries this bus found trimmed before its group read them (also logged at error level)."""
        return self.consuming.trimmed_unread
