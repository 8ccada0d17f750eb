"""Publishing: validate and encode (``prepare``, pure), then write in one round trip (``write``).

A :class:`PreparedEvent` is one logical publish: the envelope on one or more channels' per-type
streams plus, on ``global``, the workflow stream entry. Everything is validated and packed into
RESP bytes by :meth:`Publisher.prepare` before any I/O, so an invalid event never writes.

:meth:`Publisher.write` sends any number of prepared events as ONE round trip: the XADDs
between MULTI and EXEC (a lone command goes without them). Atomicity, precisely:

- MULTI/EXEC runs all queued XADDs or, when Redis refuses one at queue time (NOPERM, OOM,
  syntax), none (EXECABORT): nothing is written and the translated error is raised.
- A command that fails at run time inside EXEC (WRONGTYPE: some other program put a non-stream
  value at one of our stream names) does NOT roll back the others: Redis has no rollback. We
  raise :class:`PartialWriteError` listing exactly what was written and what was refused.
  Our own entries cannot fail that way otherwise: they are validated up front.
- The connection failing after the bytes went out raises ``PublishOutcomeUnknownError`` with
  the event ids; nothing is retried (a blind retry could write twice). A failure to connect
  (nothing sent) is retried with tenacity.

Idempotent publishes (``idempotency_key``) go through one Lua script per event, inside the
same MULTI/EXEC: it checks a marker key ``{prefix}idempotency:{tenant}:{key}``, writes every
entry, then sets the marker to the event id for ``idempotency_window_s``; a repeat within the
window writes nothing and returns the first event id. See :data:`IDEMPOTENT_PUBLISH_SCRIPT`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import redis.exceptions as rex
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from schemas import (
    DATETIME_PATTERN,
    EventValidationError,
    Payload,
    Registry,
    UnknownEventTypeError,
    is_uuid,
)

from ._codec import (
    Route,
    XaddPacker,
    encode_envelope,
    new_event_id,
    now_iso,
    payload_view,
    workflow_entry,
    workflow_pairs,
)
from ._errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BusError,
    PayloadTooLargeError,
    PayloadValidationError,
    PublishOutcomeUnknownError,
)
from ._keys import CHANNEL_GLOBAL, WORKFLOW_STREAM, Keys
from ._options import PublishOptions, WorkflowHooks
from ._redis import redis_errors, translate_error
from ._tenant import tenant_id_problem
from ._text import text
from .routing import fanout_channels
from .wire import DISCARD, EXEC, MULTI, bulk, drop, exchange, header, read_replies, release, send_packed

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ._settings import BusSettings
    from .observability import BusMetrics

__all__ = [
    "IDEMPOTENT_PUBLISH_SCRIPT",
    "PartialWriteError",
    "PreparedEvent",
    "PublishResult",
    "Publisher",
    "WorkflowHooks",
    "results_or_raise",
]

_DATETIME_RE = re.compile(DATETIME_PATTERN)

log = logging.getLogger(__name__)

#: Producer id used with ``XADD ... IDMP <pid> <iid>`` on servers that support it (Redis >= 8.6).
IDMP_PRODUCER = b"psa-event-bus"

#: KEYS[1] = marker key; KEYS[2..] = streams, in write order.
#: ARGV[1] = what the marker keeps (the event id, or ``event_id,id_per_stream...`` when the
#: copies carry their own ids); ARGV[2] = window (s); ARGV[3] = n XADD options, then the
#: options (``IDMP pid iid`` where supported, then ``MAXLEN ~ n``); then per stream: the number
#: of field/value arguments followed by them.
#: Returns ``{1, entry_id...}`` when written, ``{0, first_event_id}`` for a repeat. Every
#: stream's type is checked before the first write, so a WRONGTYPE key writes nothing.
IDEMPOTENT_PUBLISH_SCRIPT = """
local first = redis.call('GET', KEYS[1])
if first then return {0, first} end
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i])
  t = t['ok'] or t
  if t ~= 'stream' and t ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. ', not a stream; nothing was written')
  end
end
local nopts = tonumber(ARGV[3])
local pos = 4 + nopts
local out = {1}
for i = 2, #KEYS do
  local n = tonumber(ARGV[pos])
  local args = {'XADD', KEYS[i]}
  for j = 4, 3 + nopts do args[#args + 1] = ARGV[j] end
  args[#args + 1] = '*'
  for j = pos + 1, pos + n do args[#args + 1] = ARGV[j] end
  pos = pos + n + 1
  out[#out + 1] = redis.call(unpack(args))
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return out
"""
_SCRIPT_SHA = hashlib.sha1(IDEMPOTENT_PUBLISH_SCRIPT.encode()).hexdigest().encode()
_EVALSHA_HEAD = bulk(b"EVALSHA") + bulk(_SCRIPT_SHA)
_EVAL_HEAD = bulk(b"EVAL") + bulk(IDEMPOTENT_PUBLISH_SCRIPT.encode())


class PreparedEvent:
    """A validated, encoded publish: one envelope on one or more streams, ready to write.

    Built by :meth:`Publisher.prepare` (no I/O); written by :meth:`Publisher.write`.
    """

    __slots__ = ("command", "event_id", "event_ids", "event_type", "n_commands", "script", "size", "streams")

    def __init__(
        self,
        event_id: str,
        event_type: str,
        streams: tuple[str, ...],
        event_ids: tuple[str, ...] | None,
        command: bytes,
        n_commands: int,
        script: tuple[int, bytes] | None,
    ) -> None:
        self.event_id = event_id
        self.event_type = event_type
        #: Stream keys written, in order (the workflow stream first when present).
        self.streams = streams
        #: Envelope id per stream when the copies carry their own ids; None when all carry event_id.
        self.event_ids = event_ids
        #: RESP of the XADDs (empty for an idempotent publish, which uses ``script``).
        self.command = command
        self.n_commands = n_commands
        #: ``(argument count, packed arguments after the script/sha)`` of an idempotent publish.
        self.script = script
        self.size = len(command) if script is None else len(script[1])

    def __repr__(self) -> str:
        return f"PreparedEvent({self.event_type} {self.event_id} -> {', '.join(self.streams)})"

    @property
    def is_idempotent(self) -> bool:
        """True when written through the idempotency script."""
        return self.script is not None

    def packed(self, *, use_sha: bool) -> bytes:
        """The command bytes (EVALSHA or EVAL form for an idempotent publish)."""
        if self.script is None:
            return self.command
        count, tail = self.script
        return b"".join((header(count + 2), _EVALSHA_HEAD if use_sha else _EVAL_HEAD, tail))


class PublishResult(msgspec.Struct, frozen=True):
    """What a publish did: the event id and the stream entry id written per stream.

    ``duplicate`` is True when an idempotency key was seen within its window: nothing was
    written and ``event_id`` is the FIRST publish's id. ``error`` is set only by best-effort
    publishers (``strict=False``) that report a failure instead of raising.
    """

    event_id: str
    event_type: str
    entries: dict[str, str] = msgspec.field(default_factory=dict)
    duplicate: bool = False
    event_ids: dict[str, str] | None = None
    error: BusError | None = None

    @property
    def ok(self) -> bool:
        """True unless a best-effort publish failed."""
        return self.error is None

    @classmethod
    def from_error(cls, event_type: str, event_id: str, error: BusError) -> PublishResult:
        """A best-effort publish's failure as a result, logged at error level (never swallowed silently)."""
        log.error("publish of %s %s failed (best effort, not raised): %s", event_type, event_id, error)
        return cls(event_id, event_type, error=error)

    def event_id_of(self, stream: str) -> str:
        """The envelope id written on ``stream`` (each channel copy has its own unless the caller gave one)."""
        if self.event_ids is not None and stream in self.event_ids:
            return self.event_ids[stream]
        return self.event_id


class PartialWriteError(BackendError):
    """Redis ran the transaction but refused some commands at run time (e.g. WRONGTYPE).

    MULTI/EXEC has no rollback: ``written`` lists ``(event_id, stream, entry_id)`` that exist,
    ``failed`` lists ``(event_id, stream, error)`` that were refused.
    """

    def __init__(
        self,
        message: str,
        *,
        written: Sequence[tuple[str, str, str]] = (),
        failed: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        self.written = tuple(written)
        self.failed = tuple(failed)
        self.event_ids = tuple(dict.fromkeys(e for e, _, _ in (*self.failed, *self.written)))
        super().__init__(message)


Outcome = PublishResult | BusError


class Publisher:
    """Prepares and writes events for one bus (settings, keys, registry, redis client)."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: BusSettings,
        keys: Keys,
        registry: Registry,
        capabilities: Mapping[str, Any],
        *,
        connect_attempts: int = 3,
    ) -> None:
        self._client = client
        self._settings = settings
        self._keys = keys
        self._registry = registry
        self._capabilities = capabilities
        self._packer = XaddPacker(settings.max_len, settings.trim_policy)
        self._streams: dict[tuple[str, str], str] = {}
        self._chans: dict[str | tuple[str, ...], tuple[str, ...]] = {}
        self._routes: dict[tuple[str, str | Sequence[str] | None, bool, bool | None], Route] = {}
        self._validate = registry.validate
        self._checked_ts: str | None = None  # the last caller-given timestamp that passed the check
        self._max_bytes = settings.max_payload_bytes
        self._window = str(settings.idempotency_window_s).encode()
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
        self._channel_of: dict[str, str] = {}
        self._in_flight = 0
        self._idle: anyio.Event | None = None

    # -- prepare (pure) ------------------------------------------------------------------

    def stream(self, channel: str, event_type: str) -> str:
        """The per-type stream key of ``event_type`` on ``channel`` (cached)."""
        key = (channel, event_type)
        stream = self._streams.get(key)
        if stream is None:
            if len(self._streams) > 4096:
                self._streams.clear()
            stream = self._streams[key] = self._keys.stream(channel, event_type)
        return stream

    def marker_key(self, tenant: str, idempotency_key: str) -> str:
        """The idempotency marker key: ``{prefix}idempotency:{tenant}:{key}``."""
        return f"{self._keys.prefix}idempotency:{tenant}:{idempotency_key}"

    def prepare(
        self, event_type: str, payload: Mapping[str, Any] | Payload, options: PublishOptions = PublishOptions.DEFAULT
    ) -> PreparedEvent:
        """Validate and encode one publish; raises before any I/O if anything is invalid.

        ``options.channels``: one channel or several (duplicates are written once), or None for
        the reference's fan-out (:func:`bus.routing.fanout_channels`). Ids as the reference
        gives them: each channel copy gets its own fresh id, unless ``options.event_id`` is
        given (then every copy carries it); the ``global`` copy's id is the result's
        ``event_id`` and the workflow entry's. (The reference's consumers dedupe on tenant +
        event id across channels, so copies sharing a generated id would be skipped after the
        first.) ``options.workflow``: write the workflow entry too (default: when ``global`` is
        among the channels). ``options.idempotency_key``: write at most once per
        ``(tenant, key)`` within the window; ``tenant`` defaults to the payload's tenantId/tenant.
        """
        event_id = options.event_id
        timestamp = options.timestamp
        try:
            data = self._validate(event_type, payload)
        except UnknownEventTypeError as exc:
            raise PayloadValidationError(event_type, "$.eventType", str(exc)) from None
        except EventValidationError as exc:
            raise PayloadValidationError.from_schema_error(exc) from None
        except RecursionError:  # msgspec's encoder or decoder on a hostile, absurdly nested payload
            raise PayloadValidationError(
                event_type, "$.payload", "nested too deeply (more levels than the encoder's recursion limit)"
            ) from None
        fresh = event_id is None
        if event_id is None:
            event_id = new_event_id()
        elif not is_uuid(event_id):
            raise PayloadValidationError(event_type, "$.id", "Expected a uuid (8-4-4-4-12 hex digits)")
        if timestamp is None:
            timestamp = now_iso()
        elif timestamp is not self._checked_ts:  # a batch passes one string for all its events
            if not (isinstance(timestamp, str) and _DATETIME_RE.match(timestamp)):
                raise PayloadValidationError(
                    event_type, "$.timestamp", "Expected an ISO-8601 UTC timestamp ending in Z (no offset, not naive)"
                )
            self._checked_ts = timestamp
        eid = event_id.encode()
        ts = timestamp.encode()
        try:
            route: Route | None = self._routes[(event_type, options.channels, options.force, options.workflow)]
        except (KeyError, TypeError):  # not seen yet, or channels given as a list
            route = None
        envelope: bytes | None = None
        if route is not None and route.env_middle is not None:
            env_len = route.env_size + len(eid) + len(ts) + len(data)
        else:
            envelope = encode_envelope(event_id, event_type, timestamp, data)
            env_len = len(envelope)
        if env_len > self._max_bytes:
            raise PayloadTooLargeError(
                f"{event_type} {event_id}: the encoded event is {env_len} bytes, over max_payload_bytes "
                f"({self._max_bytes}); nothing was written (send a reference to large content instead)"
            )
        if route is None:
            route = self._route(event_type, options.channels, options.force, options.workflow)
        copy_ids: list[str] | None = None
        if fresh and len(route.chans) > 1:
            copy_ids = [new_event_id() for _ in route.chans]
            copy_ids[route.primary] = event_id
        hooks = options.hooks
        if (options.idempotency_key is not None and options.dedupe) or route.env_middle is None:
            if envelope is None:
                envelope = encode_envelope(event_id, event_type, timestamp, data)
            return self._prepare_general(payload, data, envelope, route, event_id, timestamp, copy_ids, options)
        cids = None if copy_ids is None else [c.encode() for c in copy_ids]
        if route.workflow and (type(payload) is not dict or (hooks is not None and hooks.is_set)):
            values = self._workflow_values(event_type, payload, data, event_id, timestamp, hooks)
            wf = self._packer.workflow(WORKFLOW_STREAM, values)
            command = route.pack(eid, ts, data, env_len, workflow=wf, copy_ids=cids)
        else:
            try:
                command = route.pack(eid, ts, data, env_len, payload, copy_ids=cids)  # type: ignore[arg-type]
            except EventValidationError as exc:
                raise PayloadValidationError(exc.event_type, "$.workflow" + exc.path[1:], exc.rule) from None
        event_ids = None if copy_ids is None else _stream_ids(route, event_id, copy_ids)
        return PreparedEvent(event_id, event_type, route.streams, event_ids, command, route.n_commands, None)

    def _route(
        self, event_type: str, channels: str | Sequence[str] | None, force: bool, workflow: bool | None
    ) -> Route:
        """The constant parts of publishing ``event_type`` on ``channels`` (cached when hashable)."""
        chans = fanout_channels(event_type) if channels is None else self._channels(event_type, channels)
        wf = bool(workflow) if workflow is not None else CHANNEL_GLOBAL in chans
        streams = tuple([self.stream(ch, event_type) for ch in chans])
        route = Route(self._packer, event_type, chans, streams, force=force, workflow=wf)
        if channels is None or isinstance(channels, str | tuple):
            if len(self._routes) >= 4096:
                self._routes.clear()
            self._routes[(event_type, channels, force, workflow)] = route
        return route

    def _workflow_values(
        self,
        event_type: str,
        payload: Mapping[str, Any] | Payload,
        data: bytes,
        event_id: str,
        timestamp: str,
        hooks: WorkflowHooks | None,
    ) -> tuple[bytes, ...]:
        """The workflow entry's values (hooks, Struct payloads); a rule it breaks is a ``$.workflow`` error."""
        h = hooks or _NO_HOOKS
        try:
            return workflow_entry(
                event_id,
                event_type,
                timestamp,
                payload if isinstance(payload, dict) else payload_view(payload),
                data,
                execution_id=h.execution_id,
                correlation_key=h.correlation_key,
                event_name=h.event_name,
                from_state=h.from_state,
                to_state=h.to_state,
            )
        except EventValidationError as exc:
            raise PayloadValidationError(exc.event_type, "$.workflow" + exc.path[1:], exc.rule) from None

    def _prepare_general(
        self,
        payload: Mapping[str, Any] | Payload,
        data: bytes,
        envelope: bytes,
        route: Route,
        event_id: str,
        timestamp: str,
        copy_ids: list[str] | None,
        options: PublishOptions,
    ) -> PreparedEvent:
        """The rarer publishes: idempotent ones, event types JSON escapes."""
        event_type = route.event_type
        idempotency_key = options.idempotency_key if options.dedupe else None
        chans = route.chans
        wf: tuple[bytes, ...] | None = None
        if route.workflow:
            wf = self._workflow_values(event_type, payload, data, event_id, timestamp, options.hooks)
        copies = [(ch, st, event_id, envelope) for ch, st in zip(chans, route.streams[-len(chans) :], strict=True)]
        event_ids: tuple[str, ...] | None = None
        if copy_ids is not None:
            for i, copy_id in enumerate(copy_ids):
                if copy_id is not event_id:
                    ch, key = copies[i][0], copies[i][1]
                    copies[i] = (ch, key, copy_id, encode_envelope(copy_id, event_type, timestamp, data))
            event_ids = _stream_ids(route, event_id, copy_ids)
        streams = route.streams
        if idempotency_key is not None:
            if not idempotency_key:
                raise PayloadValidationError(event_type, "$.idempotencyKey", "must not be empty")
            path = "$.tenant"
            tenant = options.tenant
            if tenant is None:
                view = payload_view(payload)
                tenant = str(view.get("tenantId") or view.get("tenant") or "")
                path = "$.payload.tenantId"
            problem = tenant_id_problem(tenant) if tenant else None
            if problem is not None:  # the tenant is part of the marker key
                raise PayloadValidationError(event_type, path, f"invalid tenant id {tenant[:64]!r}: {problem}")
            # The marker keeps every id written, so a repeat returns the first write's ids.
            remembered = event_id if event_ids is None else ",".join((event_id, *event_ids))
            return PreparedEvent(
                event_id,
                event_type,
                streams,
                event_ids,
                b"",
                1,
                self._script_args(remembered, tenant, idempotency_key, wf, copies, options.force),
            )
        packer = self._packer
        parts = [packer.per_type(key, ch, env, options.force) for ch, key, _, env in copies]
        if wf is not None:
            parts.insert(0, packer.workflow(WORKFLOW_STREAM, wf))
        return PreparedEvent(event_id, event_type, streams, event_ids, b"".join(parts), len(parts), None)

    def _channels(self, event_type: str, channels: str | Sequence[str]) -> tuple[str, ...]:
        """The channels as a checked tuple without duplicates (cached per argument)."""
        try:
            return self._chans[channels]  # type: ignore[index]
        except (KeyError, TypeError):
            pass
        chans = (channels,) if isinstance(channels, str) else tuple(dict.fromkeys(channels))
        if not chans:
            raise PayloadValidationError(event_type, "$.channel", "at least one channel is required")
        for ch in chans:
            if not ch or not isinstance(ch, str):
                raise PayloadValidationError(event_type, "$.channel", f"invalid channel {ch!r}")
        if isinstance(channels, str | tuple) and len(self._chans) < 1024:
            self._chans[channels] = chans
        return chans

    def _script_args(
        self,
        remembered: str,
        tenant: str,
        idempotency_key: str,
        wf: tuple[bytes, ...] | None,
        copies: list[tuple[str, str, str, bytes]],
        force: bool,
    ) -> tuple[int, bytes]:
        keys = [self.marker_key(tenant, idempotency_key).encode()]
        if wf is not None:
            keys.append(WORKFLOW_STREAM.encode())
        keys += [c[1].encode() for c in copies]
        opts: list[bytes] = []
        if self._capabilities.get("xadd_idmp"):
            # Redis >= 8.6: the server also remembers the id per stream (IDMP), a second guard
            # should the marker key be evicted. The marker stays authoritative for the window.
            opts += [b"IDMP", IDMP_PRODUCER, f"{tenant}:{idempotency_key}".encode()]
        opts += self._packer.trim
        argv: list[bytes] = [remembered.encode(), self._window, b"%d" % len(opts), *opts]
        if wf is not None:
            values = workflow_pairs(wf)
            argv.append(b"%d" % len(values))
            argv += values
        for ch, _, _, env in copies:
            fields = self._packer.per_type_fields(ch, env, force)
            argv.append(b"%d" % len(fields))
            argv += fields
        args = [b"%d" % len(keys), *keys, *argv]
        return len(args), b"".join(bulk(a) for a in args)

    # -- write (one round trip) ---------------------------------------------------------

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
        use_sha = self._script_loaded
        outcomes = await self._exchange(prepared, use_sha=use_sha)
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
        use_sha = self._script_loaded
        prepared, outcomes = await self._exchange_chunks(chunks, use_sha=use_sha)
        return results_or_raise(prepared, await self._settle(prepared, outcomes, use_sha=use_sha))

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
            self._count(outcomes)
        return outcomes

    def _count(self, outcomes: Sequence[Any]) -> None:
        """Written entries into the ``published`` counter, by event type and channel (workflow: "workflow")."""
        metrics, channel_of = self.metrics, self._channel_of
        assert metrics is not None
        for outcome in outcomes:
            if isinstance(outcome, PublishResult) and not outcome.duplicate:
                for stream in outcome.entries:
                    channel = channel_of.get(stream)
                    if channel is None:
                        parsed = self._keys.parse_stream(stream)
                        channel = channel_of[stream] = parsed[0] if parsed else "workflow"
                    metrics.inc("published", (outcome.event_type, channel))
            elif isinstance(outcome, BusError):
                metrics.inc("publish_failed", ("",))

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
        replies = await self._round_trip(b"".join(parts), n_commands + 2 if transaction else 1, prepared)
        return self._outcomes(prepared, replies, transaction=transaction)

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
                await send_packed(conn, EXEC, timeout)
                replies = await read_replies(conn, n_commands + 2, timeout)
            except BaseException as exc:
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
        return prepared, self._outcomes(prepared, replies, transaction=True)

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


def results_or_raise(prepared: Sequence[PreparedEvent], outcomes: Sequence[Outcome]) -> list[PublishResult]:
    """The results when every event was written; else raise its error (one event) or a
    :class:`PartialWriteError` saying which events were written and which were not."""
    errors = [o for o in outcomes if isinstance(o, BusError)]
    if not errors:
        return outcomes  # type: ignore[return-value]
    if len(outcomes) == 1:
        raise errors[0]
    written: list[tuple[str, str, str]] = []
    failed: list[tuple[str, str, str]] = []
    for p, o in zip(prepared, outcomes, strict=True):
        if isinstance(o, PublishResult):
            written += [(o.event_id_of(s), s, e) for s, e in o.entries.items()]
        elif isinstance(o, PartialWriteError):
            written += o.written
            failed += o.failed
        else:
            failed += [(p.event_id, s, str(o)) for s in p.streams]
    raise PartialWriteError(
        f"{len(errors)} of {len(outcomes)} events were not written (the others were): {errors[0]}",
        written=written,
        failed=failed,
    ) from errors[0]


def _stream_ids(route: Route, event_id: str, copy_ids: Sequence[str]) -> tuple[str, ...]:
    """The envelope id per stream of ``route``: the workflow entry's (= the global copy's), then each copy's."""
    return (event_id, *copy_ids) if route.workflow else tuple(copy_ids)


def _is_noscript(reply: BaseException) -> bool:
    """EVALSHA of a script the server does not have (redis-py strips the NOSCRIPT code)."""
    return isinstance(reply, rex.NoScriptError) or str(reply).startswith("NOSCRIPT")


_NO_HOOKS = WorkflowHooks()
_NOSCRIPT: Any = object()
