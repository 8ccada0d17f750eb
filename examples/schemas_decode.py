"""Schemas: decode and validate a payload as a consumer does."""

from __future__ import annotations

import json

from schemas import REGISTRY, EventValidationError

raw_bytes = json.dumps(
    {
        "tenantId": "00000000-0000-4000-8000-0000000000aa",
        "ticketId": "00000000-0000-4000-8000-000000000001",
        "userId": "00000000-0000-4000-8000-000000000002",
    }
).encode()

typed = REGISTRY.decode_payload("TICKET_CREATED", raw_bytes)
print(typed.variant)  # "legacy" | "domain" | "catalog" | "bus"
print(typed.value)  # the Struct (unknown keys dropped); the raw bytes stay yours for the wire

try:
    REGISTRY.decode_payload("TICKET_CREATED", b'{"tenantId": "not-a-uuid"}')
except EventValidationError as exc:
    print(exc)  # names the event type, the JSON path and the rule
