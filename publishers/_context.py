"""What a producer knows about the change it publishes: tenant, time, actor, correlation."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from schemas import Payload, to_iso

__all__ = ["Actor", "DomainEvent", "PublishContext"]


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who caused the change: a user, a contact, or the system."""

    type: Literal["USER", "CONTACT", "SYSTEM"]
    user_id: str | None = None
    contact_id: str | None = None

    @classmethod
    def user(cls, user_id: str) -> Actor:
        """An internal user."""
        return cls(type="USER", user_id=user_id)

    @classmethod
    def contact(cls, contact_id: str) -> Actor:
        """A client contact."""
        return cls(type="CONTACT", contact_id=contact_id)

    @classmethod
    def system(cls) -> Actor:
        """The platform itself."""
        return cls(type="SYSTEM")

    def fields(self) -> dict[str, Any]:
        """The payload fields the reference overlays for this actor."""
        if self.type == "USER":
            return {"actorType": "USER", "actorUserId": self.user_id}
        if self.type == "CONTACT":
            return {"actorType": "CONTACT", "actorContactId": self.contact_id}
        return {"actorType": "SYSTEM"}


class PublishContext(msgspec.Struct, frozen=True, kw_only=True):
    """The reference's ``ctx``: tenantId, occurredAt, actor, correlationId, idempotencyKey.

    ``occurred_at`` is a wire timestamp (``...Z``); ``None`` means "now" at publish time.
    ``correlation_id`` becomes the workflow entry's ``execution_id`` and must be a uuid.
    """

    tenant_id: str
    occurred_at: str | None = None
    actor: Actor | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None

    def with_time(self, when: Any) -> PublishContext:
        """A copy with ``occurred_at`` set from an aware UTC datetime or a wire string."""
        value = when if isinstance(when, str) else to_iso(when)
        return msgspec.structs.replace(self, occurred_at=value)


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event a builder says a change implies, ready for ``publish_workflow_event``.

    ``payload`` is the Struct of the event's type (already carrying tenantId/occurredAt/actor).
    ``idempotency_key`` is deterministic where the reference derives one; hooks shape the
    workflow stream entry (``from_state``/``to_state``/``event_name``/``correlation_key``).
    """

    event_type: str
    payload: Payload
    idempotency_key: str | None = None
    correlation_key: str | None = None
    event_name: str | None = None
    from_state: str | None = None
    to_state: str | None = None
