"""Validate and encode a publish without I/O (:class:`Preparer`): payload, envelope, per-copy ids,
the route's packed XADDs, the workflow entry, or the idempotent publish's script arguments."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from schemas import (
    DATETIME_PATTERN,
    EventValidationError,
    Payload,
    Registry,
    UnknownEventTypeError,
    is_uuid,
)

from .._codec import (
    Route,
    XaddPacker,
    encode_envelope,
    new_event_id,
    now_iso,
    payload_view,
    workflow_entry,
    workflow_pairs,
)
from .._errors import PayloadTooLargeError, PayloadValidationError
from .._keys import CHANNEL_GLOBAL, Keys
from .._options import PublishOptions, WorkflowHooks
from .._settings import BusSettings
from .._tenant import tenant_id_problem
from ..routing import fanout_channels
from ..wire import bulk
from ._results import PreparedEvent
from ._script import IDMP_PRODUCER

__all__ = ["Preparer"]

_DATETIME_RE = re.compile(DATETIME_PATTERN)


class Preparer:
    """The pure half of publishing for one bus: settings, keys, registry, server capabilities."""

    def __init__(self, settings: BusSettings, keys: Keys, registry: Registry, capabilities: Mapping[str, Any]) -> None:
        self._keys = keys
        self._capabilities = capabilities
        self._packer = XaddPacker(settings.max_len, settings.trim_policy)
        self._streams: dict[tuple[str, str], str] = {}
        self._chans: dict[str | tuple[str, ...], tuple[str, ...]] = {}
        self._routes: dict[tuple[str, str | Sequence[str] | None, bool, bool | None], Route] = {}
        self._validate = registry.validate
        self._checked_ts: str | None = None  # the last caller-given timestamp that passed the check
        self._max_bytes = settings.max_payload_bytes
        self._window = str(settings.idempotency_window_s).encode()

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
            wf = self._packer.workflow(self._keys.workflow_stream, values)
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
        route = Route(
            self._packer,
            event_type,
            chans,
            streams,
            force=force,
            workflow=wf,
            workflow_stream=self._keys.workflow_stream,
        )
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
            parts.insert(0, packer.workflow(self._keys.workflow_stream, wf))
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
            keys.append(self._keys.workflow_stream.encode())
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


def _stream_ids(route: Route, event_id: str, copy_ids: Sequence[str]) -> tuple[str, ...]:
    """The envelope id per stream of ``route``: the workflow entry's (= the global copy's), then each copy's."""
    return (event_id, *copy_ids) if route.workflow else tuple(copy_ids)


_NO_HOOKS = WorkflowHooks()
