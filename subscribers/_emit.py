"""The one place subscribers publish their own events (OUTBOUND_EMAIL_*, NOTIFICATION_*).

Everything goes through :func:`publishers.publish_workflow_event`, so the events get the same
enrichment, validation, fan-out and workflow entry as any other producer's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bus import EventBus
from publishers import PublishContext, publish_workflow_event

__all__ = ["emit"]


async def emit(bus: EventBus, event_type: str, payload: Mapping[str, Any], ctx: PublishContext) -> None:
    """Publish one of the subscribers' own events for the context's tenant."""
    await publish_workflow_event(bus, event_type, dict(payload), ctx)
