"""Shared test helpers: deterministic ids, contexts, and the validation every event must pass."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from publishers._context import Actor, DomainEvent, PublishContext
from schemas import REGISTRY

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NOW_ISO = "2026-03-10T12:00:00.000Z"
_NS = uuid.UUID("6f0c6d2e-33a5-4d8e-9a53-0d8e8f1a2b3c")


def uid(name: str) -> str:
    """A stable uuid per name, so expected keys and payloads can be written down."""
    return str(uuid.uuid5(_NS, name))


TENANT = uid("tenant")
USER = uid("user")


def make_ctx(**overrides: Any) -> PublishContext:
    """A context at NOW for TENANT, acting as USER; override any field."""
    fields: dict[str, Any] = {"tenant_id": TENANT, "occurred_at": NOW_ISO, "actor": Actor.user(USER)}
    fields.update(overrides)
    return PublishContext(**fields)


def ctx_at(when: datetime, **overrides: Any) -> PublishContext:
    """A context at another time."""
    return make_ctx(**overrides).with_time(when)


def later(**delta: float) -> datetime:
    """NOW shifted by a timedelta."""
    return NOW + timedelta(**delta)


def wire(event: DomainEvent) -> dict[str, Any]:
    """The payload as it goes on the wire (unknown keys included)."""
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(event.payload))
    return out


def types(events: Sequence[DomainEvent]) -> list[str]:
    """Event types in order."""
    return [e.event_type for e in events]


def only(events: Sequence[DomainEvent], event_type: str) -> DomainEvent:
    """The single event of a type."""
    found = [e for e in events if e.event_type == event_type]
    assert len(found) == 1, f"expected one {event_type}, got {types(events)}"
    return found[0]


def check(events: Sequence[DomainEvent], ctx: PublishContext | None = None) -> list[DomainEvent]:
    """Assert every event is valid for the bus and the catalog, and carries the ctx envelope.

    - REGISTRY.validate: the shapes the bus accepts on publish (legacy first for unions);
    - the catalog shape (what the workflow side validates);
    - for legacy/domain unions, the domain variant too;
    - payload is (a subclass of) the catalog Struct, tenant/time from ctx, a non-empty key.
    """
    ctx = ctx or make_ctx()
    for ev in events:
        spec = REGISTRY.get(ev.event_type)
        data = REGISTRY.validate(ev.event_type, ev.payload)
        REGISTRY.decode_catalog_payload(ev.event_type, data)
        if spec.is_union:
            REGISTRY.decoder(dict(spec.variants)["domain"]).decode(data)
        assert isinstance(ev.payload, spec.catalog_type)
        doc = msgspec.json.decode(data)
        assert doc["tenantId"] == ctx.tenant_id
        assert doc["occurredAt"] == ctx.occurred_at
        assert ev.idempotency_key, f"{ev.event_type} has no idempotency key"
    return list(events)
