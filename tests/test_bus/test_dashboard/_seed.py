"""A seeded bus for the dashboard tests: streams, a lagging group, a frozen consumer, dead letters."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from bus import EventBus, Keys
from bus.consume._deadletter import dead_letter_fields

SECRET = "hunter2-secret-value"
GROUP = "billing-app"


def _event(event_type: str, n: int, **extra: Any) -> bytes:
    payload = {
        "tenantId": "acme",
        "occurredAt": "2026-01-23T10:11:12.345Z",
        "ticketId": f"{n:08d}-0000-4000-8000-000000000000",
    }
    payload |= extra
    return json.dumps(
        {
            "id": f"{n:08d}-1111-4000-8000-000000000000",
            "eventType": event_type,
            "timestamp": "2026-01-23T10:11:12.345Z",
            "payload": payload,
        },
        separators=(",", ":"),
    ).encode()


async def seed(bus: EventBus) -> dict[str, Any]:
    """Write 5 entries on TICKET_CREATED (group read 2, acked 1: lag 3, pending 1), 2 dead letters, an empty stream."""
    client: aioredis.Redis = bus.client
    keys: Keys = bus.keys
    stream = keys.stream("global", "TICKET_CREATED")
    ids = [
        await client.xadd(stream, {"event": _event("TICKET_CREATED", i, password=SECRET), "channel": "global"})
        for i in range(5)
    ]
    await client.xgroup_create(stream, GROUP, id="0")
    read: Any = await client.xreadgroup(GROUP, "frozen-consumer", {stream: ">"}, count=2)
    await client.xack(stream, GROUP, read[0][1][0][0])  # one acked, one left pending (a frozen consumer)
    dead = keys.dead_letter(stream)
    originals = [{b"event": _event("TICKET_CREATED", 100 + i), b"channel": b"global"} for i in range(2)]
    dl_ids = [
        await client.xadd(
            dead,
            dead_letter_fields(
                original, stream=stream, entry_id=f"1-{i}", deliveries=10, error="boom", reason="max-deliveries"
            ),
        )
        for i, original in enumerate(originals)
    ]
    empty = keys.stream("global", "ASSET_CREATED")
    await client.xadd(empty, {"event": b"{}"})
    await client.xtrim(empty, maxlen=0)
    return {"stream": stream, "ids": ids, "dead": dead, "dead_ids": [i.decode() for i in dl_ids], "empty": empty}
