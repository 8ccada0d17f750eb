"""The reference's fan-out (``publishEvent``): which channels get a copy of an event.

1. Always ``global`` (only that copy writes the workflow stream entry).
2. In-app notification types: a copy on ``internal-notifications``.
3. Email types: a copy on ``emailservice::v7``.
4. An explicit channel: ``global`` plus that channel, skipping 2 and 3.

Ids as in the reference: every channel copy gets its own fresh event id unless the caller passes
``event_id`` (then every copy carries it). This is not a quirk: the reference's consumers mark
an event processed per tenant + event id across channels, so copies sharing a generated id
would be skipped after the first one. The workflow entry carries the ``global`` copy's id.

Fixed here (reference quirks): an explicit ``global`` writes once, not twice; the copies and the
workflow entry are written in ONE MULTI/EXEC.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bus import (
    CHANNEL_EMAIL,
    CHANNEL_GLOBAL,
    CHANNEL_NOTIFICATIONS,
    BusError,
    EventBus,
    PreparedEvent,
    PublishResult,
    WorkflowHooks,
    new_event_id,
)
from schemas import Payload

__all__ = [
    "EMAIL_EVENT_TYPES",
    "NOTIFICATION_EVENT_TYPES",
    "fanout_channels",
    "prepare_event",
    "publish_event",
]

logger = logging.getLogger("publishers")

#: Types copied to ``internal-notifications`` (in-app notifications).
NOTIFICATION_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "TICKET_CREATED",
        "TICKET_ASSIGNED",
        "TICKET_ADDITIONAL_AGENT_ASSIGNED",
        "TICKET_UPDATED",
        "TICKET_CLOSED",
        "TICKET_COMMENT_ADDED",
        "PROJECT_CREATED",
        "PROJECT_ASSIGNED",
        "PROJECT_TASK_ASSIGNED",
        "PROJECT_TASK_ADDITIONAL_AGENT_ASSIGNED",
        "PROJECT_MILESTONE_READY",
        "PROJECT_BUDGET_THRESHOLD_REACHED",
        "PROJECT_BUDGET_EXCEEDED",
        "TASK_COMMENT_ADDED",
        "INVOICE_GENERATED",
        "MESSAGE_SENT",
        "USER_MENTIONED_IN_DOCUMENT",
        "APPOINTMENT_REQUEST_CREATED",
        "APPOINTMENT_REQUEST_APPROVED",
        "APPOINTMENT_REQUEST_DECLINED",
        "APPOINTMENT_REQUEST_CANCELLED",
    }
)

#: Types copied to ``emailservice::v7`` (email notifications).
EMAIL_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "TICKET_CREATED",
        "TICKET_UPDATED",
        "TICKET_CLOSED",
        "TICKET_ASSIGNED",
        "TICKET_ADDITIONAL_AGENT_ASSIGNED",
        "TICKET_COMMENT_ADDED",
        "PROJECT_CREATED",
        "PROJECT_UPDATED",
        "PROJECT_CLOSED",
        "PROJECT_ASSIGNED",
        "PROJECT_TASK_ASSIGNED",
        "PROJECT_TASK_ADDITIONAL_AGENT_ASSIGNED",
        "PROJECT_MILESTONE_READY",
        "PROJECT_BUDGET_THRESHOLD_REACHED",
        "PROJECT_BUDGET_EXCEEDED",
        "APPOINTMENT_REQUEST_CREATED",
        "APPOINTMENT_REQUEST_APPROVED",
        "APPOINTMENT_REQUEST_DECLINED",
        "APPOINTMENT_REQUEST_CANCELLED",
    }
)

_CHANNELS: dict[str, tuple[str, ...]] = {}


def fanout_channels(event_type: str, channel: str | None = None) -> tuple[str, ...]:
    """The channels one publish writes to, ``global`` first."""
    if channel is not None:
        return (CHANNEL_GLOBAL,) if channel == CHANNEL_GLOBAL else (CHANNEL_GLOBAL, channel)
    out = _CHANNELS.get(event_type)
    if out is None:
        chans = [CHANNEL_GLOBAL]
        if event_type in NOTIFICATION_EVENT_TYPES:
            chans.append(CHANNEL_NOTIFICATIONS)
        if event_type in EMAIL_EVENT_TYPES:
            chans.append(CHANNEL_EMAIL)
        out = _CHANNELS[event_type] = tuple(chans)
    return out


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
    return bus.prepare(
        event_type,
        payload,
        channel=fanout_channels(event_type, channel),
        event_id=event_id,
        force=force,
        hooks=hooks,
        idempotency_key=idempotency_key,
        tenant=tenant,
    )


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
    prepared: PreparedEvent | None = None
    try:
        prepared = prepare_event(
            bus,
            event_type,
            payload,
            channel=channel,
            event_id=event_id,
            force=force,
            hooks=hooks,
            idempotency_key=idempotency_key,
            tenant=tenant,
        )
        return (await bus.write((prepared,), batch=batch))[0]
    except BusError as exc:
        if strict:
            raise
        failed_id = prepared.event_id if prepared is not None else event_id if event_id is not None else new_event_id()
        return failed_result(event_type, failed_id, exc)


def failed_result(event_type: str, event_id: str, exc: BusError) -> PublishResult:
    """Log a best-effort failure and return it as a result (never swallowed silently)."""
    logger.error("publish of %s %s failed (best effort, not raised): %s", event_type, event_id, exc)
    return PublishResult(event_id, event_type, error=exc)
