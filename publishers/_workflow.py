"""``publishWorkflowEvent``: enrichment from the ctx, workflow hooks, then the fan-out.

Enrichment, in the reference's order: start from the payload; overlay the actor fields when
``ctx.actor`` is set; set ``tenantId`` and ``occurredAt`` from the ctx (they override the
payload; occurredAt defaults to now, ``...Z``); add ``idempotencyKey`` (the argument wins over
``ctx.idempotency_key``). Hooks shape only the workflow stream entry: executionId =
``ctx.correlation_id`` (a uuid), correlationKey, eventName, fromState, toState.

With an idempotency key the publish is also idempotent: a repeat of ``(ctx.tenant_id, key)``
within ``idempotency_window_s`` writes nothing and returns the first event id (see
``publishers._idempotency``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from bus import (
    BusError,
    EventBus,
    PayloadValidationError,
    PreparedEvent,
    PublishOptions,
    PublishResult,
    WorkflowHooks,
    new_event_id,
    now_iso,
)
from bus.routing import fanout_channels
from schemas import DATETIME_PATTERN, Payload, is_uuid

from ._context import DomainEvent, PublishContext

__all__ = [
    "enrich_payload",
    "prepare_workflow_event",
    "publish_domain_events",
    "publish_workflow_event",
]

_DATETIME_RE = re.compile(DATETIME_PATTERN)


def enrich_payload(
    bus: EventBus,
    event_type: str,
    payload: Mapping[str, Any] | Payload,
    ctx: PublishContext,
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The payload the reference publishes: payload, then actor, tenantId, occurredAt, idempotencyKey.

    A Struct payload must be of ``event_type``'s own Structs; its wire form (unknown keys
    impossible, UNSET omitted) is the starting point.
    """
    if isinstance(payload, Payload):
        owner = bus.registry.spec_for_struct(type(payload))
        if owner is not None and owner.event_type != event_type:
            raise PayloadValidationError(
                event_type, "$.payload", f"a {type(payload).__name__} is a {owner.event_type} payload"
            )
        data: dict[str, Any] = msgspec.to_builtins(payload)
    elif isinstance(payload, Mapping):
        data = dict(payload)
    else:
        raise PayloadValidationError(event_type, "$.payload", f"expected an object, got {type(payload).__name__}")
    if ctx.actor is not None:
        data.update(ctx.actor.fields())
    data["tenantId"] = ctx.tenant_id
    occurred_at = ctx.occurred_at
    if occurred_at is None:
        occurred_at = now_iso()
    elif not _DATETIME_RE.match(occurred_at):
        raise PayloadValidationError(
            event_type, "$.payload.occurredAt", "Expected an ISO-8601 UTC timestamp ending in Z (ctx.occurred_at)"
        )
    data["occurredAt"] = occurred_at
    key = idempotency_key if idempotency_key is not None else ctx.idempotency_key
    if key is not None:
        data["idempotencyKey"] = key
    return data


def _options(
    event_type: str,
    ctx: PublishContext,
    *,
    idempotency_key: str | None = None,
    event_name: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    correlation_key: str | None = None,
    channel: str | None = None,
    event_id: str | None = None,
    strict: bool = True,
    dedupe: bool = True,
    batch: bool = True,
) -> PublishOptions:
    """The keywords and the ctx as one value: the effective key (argument, else the ctx's), the hooks."""
    key = idempotency_key if idempotency_key is not None else ctx.idempotency_key
    hooks = None  # no hooks object when none is set: the bus packs the workflow entry on its fast path
    if ctx.correlation_id or correlation_key or event_name or from_state or to_state:
        hooks = WorkflowHooks(
            execution_id=ctx.correlation_id,
            correlation_key=correlation_key,
            event_name=event_name,
            from_state=from_state,
            to_state=to_state,
        )
    if hooks is None and key is None and channel is None and event_id is None and strict and dedupe and batch:
        return PublishOptions.DEFAULT
    return PublishOptions(
        channels=None if channel is None else fanout_channels(event_type, channel),
        event_id=event_id,
        hooks=hooks,
        idempotency_key=key,
        tenant=ctx.tenant_id if key is not None else None,
        dedupe=dedupe,
        strict=strict,
        batch=batch,
    )


def _enrich(
    bus: EventBus, event_type: str, payload: Mapping[str, Any] | Payload, ctx: PublishContext, options: PublishOptions
) -> dict[str, Any]:
    """:func:`enrich_payload` with the options' key, after checking the ctx's correlation id."""
    if ctx.correlation_id is not None and not is_uuid(ctx.correlation_id):
        raise PayloadValidationError(event_type, "$.ctx.correlationId", "Expected a uuid (8-4-4-4-12 hex digits)")
    return enrich_payload(bus, event_type, payload, ctx, idempotency_key=options.idempotency_key)


def prepare_workflow_event(
    bus: EventBus,
    event_type: str,
    payload: Mapping[str, Any] | Payload,
    ctx: PublishContext,
    *,
    idempotency_key: str | None = None,
    event_name: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    correlation_key: str | None = None,
    channel: str | None = None,
    event_id: str | None = None,
    dedupe: bool = True,
) -> PreparedEvent:
    """Enrich, validate and encode one workflow publish with its fan-out (no I/O)."""
    options = _options(
        event_type,
        ctx,
        idempotency_key=idempotency_key,
        event_name=event_name,
        from_state=from_state,
        to_state=to_state,
        correlation_key=correlation_key,
        channel=channel,
        event_id=event_id,
        dedupe=dedupe,
    )
    return bus.prepare(event_type, _enrich(bus, event_type, payload, ctx, options), options=options)


async def publish_workflow_event(
    bus: EventBus,
    event_type: str,
    payload: Mapping[str, Any] | Payload,
    ctx: PublishContext,
    *,
    idempotency_key: str | None = None,
    event_name: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    correlation_key: str | None = None,
    channel: str | None = None,
    event_id: str | None = None,
    strict: bool = True,
    dedupe: bool = True,
    batch: bool = True,
) -> PublishResult:
    """Enrich from ``ctx``, apply the hooks, and publish with the fan-out in one MULTI/EXEC.

    ``dedupe=False`` still puts the idempotency key in the payload but skips the marker check.
    ``strict=False``: failures are logged and returned (``result.error``), not raised.
    """
    options = _options(
        event_type,
        ctx,
        idempotency_key=idempotency_key,
        event_name=event_name,
        from_state=from_state,
        to_state=to_state,
        correlation_key=correlation_key,
        channel=channel,
        event_id=event_id,
        strict=strict,
        dedupe=dedupe,
        batch=batch,
    )
    try:
        data = _enrich(bus, event_type, payload, ctx, options)
    except BusError as exc:
        if strict:
            raise
        return PublishResult.from_error(event_type, event_id if event_id is not None else new_event_id(), exc)
    return await bus.publish(event_type, data, options=options)


async def publish_domain_events(
    bus: EventBus,
    events: Sequence[DomainEvent],
    ctx: PublishContext,
    *,
    channel: str | None = None,
    strict: bool = True,
    batch: bool = True,
) -> list[PublishResult]:
    """Publish a builder's events (each with its key and hooks) in ONE round trip.

    Strict: all are validated first; one invalid raises (its path names its index,
    ``$[2].payload...``) and nothing is written. Best effort: invalid events come back as
    failed results and the valid ones are written.
    """
    prepared: list[PreparedEvent] = []
    slots: list[PublishResult | int] = []
    for index, event in enumerate(events):
        try:
            options = _options(
                event.event_type,
                ctx,
                idempotency_key=event.idempotency_key,
                event_name=event.event_name,
                from_state=event.from_state,
                to_state=event.to_state,
                correlation_key=event.correlation_key,
                channel=channel,
            )
            data = _enrich(bus, event.event_type, event.payload, ctx, options)
            p = bus.prepare(event.event_type, data, options=options)
        except PayloadValidationError as exc:
            error = PayloadValidationError(exc.event_type, f"$[{index}]{exc.path[1:]}", exc.rule)
            if strict:
                raise error from None
            slots.append(PublishResult.from_error(event.event_type, new_event_id(), error))
            continue
        except BusError as exc:
            if strict:
                raise
            slots.append(PublishResult.from_error(event.event_type, new_event_id(), exc))
            continue
        slots.append(len(prepared))
        prepared.append(p)
    if not prepared:
        return [s for s in slots if isinstance(s, PublishResult)]
    written: list[PublishResult]
    try:
        if strict:
            written = await bus.write(prepared, batch=batch)
        else:  # best effort: each event's own outcome (one refused entry does not fail the others)
            outcomes = await bus.write_outcomes(prepared, batch=batch)
            written = [
                o if isinstance(o, PublishResult) else PublishResult.from_error(p.event_type, p.event_id, o)
                for p, o in zip(prepared, outcomes, strict=True)
            ]
    except BusError as exc:
        if strict:
            raise
        written = [PublishResult.from_error(p.event_type, p.event_id, exc) for p in prepared]
    return [written[s] if isinstance(s, int) else s for s in slots]
