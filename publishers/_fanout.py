"""``publishEvent``: publish with the reference's fan-out.

Which channels get a copy is the table in :mod:`bus.routing` (``EMAIL_EVENT_TYPES``,
``NOTIFICATION_EVENT_TYPES`` and ``fanout_channels`` here are that table, re-exported):
``global`` always, the in-app notification and email sets their channels, an explicit channel
instead of the sets.

Ids as in the reference: every channel copy gets its own fresh event id unless the caller passes
``event_id`` (then every copy carries it). This is not a quirk: the reference's consumers mark
an event processed per tenant + event id across channels, so copies sharing a generated id
would be skipped after the first one. The workflow entry carries the ``global`` copy's id.

Fixed here (reference quirks): an explicit ``global`` writes once, not twice; the copies and the
workflow entry are written in ONE MULTI/EXEC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bus import EventBus, PreparedEvent, PublishOptions, PublishResult, WorkflowHooks
from bus.routing import EMAIL_EVENT_TYPES, NOTIFICATION_EVENT_TYPES, fanout_channels
from schemas import Payload

__all__ = [
    "EMAIL_EVENT_TYPES",
    "NOTIFICATION_EVENT_TYPES",
    "fanout_channels",
    "prepare_event",
    "publish_event",
]


def _fanout_options(
    event_type: str,
    channel: str | None,
    event_id: str | None,
    force: bool,
    hooks: WorkflowHooks | None,
    idempotency_key: str | None,
    tenant: str | None,
    strict: bool,
    batch: bool,
) -> PublishOptions:
    """The keywords of :func:`publish_event` as one value (the defaults: a shared constant)."""
    if (
        channel is None
        and event_id is None
        and not force
        and hooks is None
        and idempotency_key is None
        and tenant is None
        and strict
        and batch
    ):
        return PublishOptions.DEFAULT
    return PublishOptions(
        channels=None if channel is None else fanout_channels(event_type, channel),
        event_id=event_id,
        force=force,
        hooks=hooks,
        idempotency_key=idempotency_key,
        tenant=tenant,
        strict=strict,
        batch=batch,
    )


def prepare_event(
    bus: EventBus,
    event_type: str,
    payload: Mapping[str, Any] | Payload,
    *,
    channel: str | None = None,
    event_id: str | None = None,
    force: bool = False,
    hooks: WorkflowHooks | None = None,
    idempotency_key: str | None = None,
    tenant: str | None = None,
) -> PreparedEvent:
    """Validate and encode the whole fan-out of one publish (no I/O); raises when invalid."""
    options = _fanout_options(event_type, channel, event_id, force, hooks, idempotency_key, tenant, True, True)
    return bus.prepare(event_type, payload, options=options)


async def publish_event(
    bus: EventBus,
    event_type: str,
    payload: Mapping[str, Any] | Payload,
    *,
    channel: str | None = None,
    event_id: str | None = None,
    strict: bool = True,
    force: bool = False,
    hooks: WorkflowHooks | None = None,
    idempotency_key: str | None = None,
    tenant: str | None = None,
    batch: bool = True,
) -> PublishResult:
    """Publish with the reference's fan-out, every copy and the workflow entry in one MULTI/EXEC.

    ``strict=False`` (best effort): a failure is logged and returned as a result whose
    ``error`` is set (``ok`` False) instead of raised. ``batch`` (default on) shares the round
    trip with concurrent publishers (auto-batching: at most one loop tick later, each caller
    still returns only once its own entries are written); ``batch=False`` writes at once.
    """
    options = _fanout_options(event_type, channel, event_id, force, hooks, idempotency_key, tenant, strict, batch)
    return await bus.publish(event_type, payload, options=options)
