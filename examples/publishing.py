"""Publishing: the bus's own calls, then the reference's helpers of ``publishers``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import anyio

from bus import BusSettings, EventBus, PublishOptions
from publishers import Actor, PublishContext, builders, publish_domain_events, publish_event, publish_workflow_event


def ticket(**overrides: str) -> dict[str, str]:
    """A valid TICKET_CREATED payload (the legacy shape) of one tenant."""
    return {"tenantId": tenant, "ticketId": str(uuid.uuid4()), "userId": user_id, **overrides}


tenant, user_id, run_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


async def main() -> None:
    payload, payloads = ticket(), [ticket() for _ in range(3)]
    async with EventBus(BusSettings.from_env()) as bus:
        # Low level: one event, global channel (+ the workflow entry), one round trip.
        result = await bus.publish("TICKET_CREATED", payload)  # PublishResult(event_id, entries={stream: id})
        print(result.event_id, result.entries)
        await bus.publish_many([("TICKET_CREATED", p) for p in payloads])  # N events, ONE MULTI/EXEC
        prepared = bus.prepare("TICKET_CREATED", payload, channel=("global", "internal-notifications"))
        await bus.write([prepared])  # validate first (pure), write later
        best_effort = await bus.publish("TICKET_CREATED", payload, options=PublishOptions(strict=False))
        print(best_effort.ok)  # False (and .error set) instead of an exception when it fails

        # The reference's helpers: fan-out, enrichment from ctx, hooks, idempotency, auto-batching.
        await publish_event(bus, "TICKET_CREATED", payload)  # global + notifications + email copies
        ctx = PublishContext(tenant_id=tenant, actor=Actor.user(user_id), correlation_id=run_id)
        ticket_id, version = payload["ticketId"], 7
        await publish_workflow_event(
            bus,
            "TICKET_UPDATED",
            {"tenantId": tenant, "ticketId": ticket_id, "userId": user_id, "changes": {"status": "closed"}},
            ctx,
            from_state="open",
            to_state="closed",
            idempotency_key=f"ticket-updated:{ticket_id}:{version}",
        )
        before = builders.TicketSnapshot(ticket_id=ticket_id, status_id="open")
        after = builders.TicketSnapshot(ticket_id=ticket_id, status_id="closed", is_closed=True)
        now = ctx.with_time(datetime.now(UTC))  # builders are pure: they take the time from ctx
        events = builders.ticket_changed(before, after, now)  # TICKET_STATUS_CHANGED, TICKET_UPDATED, ...
        results = await publish_domain_events(bus, events, now)  # all of them in one round trip
        print([r.event_id for r in results])


if __name__ == "__main__":
    anyio.run(main)
