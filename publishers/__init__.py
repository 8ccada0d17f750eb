"""Publishing helpers on top of ``bus``: enrichment and workflow hooks, the reference's fan-out,
idempotent publish, auto-batching, and (in ``publishers.builders``) pure domain event builders.

```python
async with EventBus(settings) as bus:
    await publish_event(bus, "TICKET_CREATED", payload)                      # fan-out, one MULTI/EXEC
    await publish_workflow_event(bus, "TICKET_UPDATED", payload, ctx, from_state="open", to_state="closed")
    await publish_domain_events(bus, builders.ticket_changed(before, after, ctx), ctx)  # one round trip
```
"""

from __future__ import annotations

from ._context import Actor, DomainEvent, PublishContext
from ._fanout import EMAIL_EVENT_TYPES, NOTIFICATION_EVENT_TYPES, fanout_channels, prepare_event, publish_event
from ._idempotency import first_event_id, forget_idempotency_key, idempotency_marker_key
from ._workflow import enrich_payload, prepare_workflow_event, publish_domain_events, publish_workflow_event

__all__ = [
    "EMAIL_EVENT_TYPES",
    "NOTIFICATION_EVENT_TYPES",
    "Actor",
    "DomainEvent",
    "PublishContext",
    "enrich_payload",
    "fanout_channels",
    "first_event_id",
    "forget_idempotency_key",
    "idempotency_marker_key",
    "prepare_event",
    "prepare_workflow_event",
    "publish_domain_events",
    "publish_event",
    "publish_workflow_event",
]
