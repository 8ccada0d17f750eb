"""The two wire envelopes: the bus event in a per-type stream, and the flat workflow event.

Bus event (field ``event`` of a per-type stream entry), compact JSON in this key order::

    {"id":"<uuid>","eventType":"TICKET_CREATED","timestamp":"2026-01-23T10:11:12.345Z","payload":{...}}

Workflow event (``workflow:events:global``): flat string fields, ``""`` for an absent value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ._errors import EventValidationError
from ._registry import translate_validation_error
from ._types import IsoDateTime, Uuid, is_uuid

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "WORKFLOW_FIELDS",
    "BusEvent",
    "WorkflowEvent",
    "decode_bus_event",
    "encode_bus_event",
    "split_bus_event",
]


class BusEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The envelope of a per-type stream entry. ``payload`` stays raw JSON bytes."""

    id: Uuid
    event_type: str = msgspec.field(name="eventType")
    timestamp: IsoDateTime
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


_BUS_DECODER = msgspec.json.Decoder(BusEvent)
_OPEN_BRACE = ord("{")
_BUS_ENCODER = msgspec.json.Encoder()


def encode_bus_event(event_id: str, event_type: str, timestamp: str, payload: bytes) -> bytes:
    """Encode an envelope around already-encoded payload bytes (no re-encoding of the payload)."""
    return _BUS_ENCODER.encode(
        BusEvent(id=event_id, event_type=event_type, timestamp=timestamp, payload=msgspec.Raw(payload))
    )


def decode_bus_event(data: bytes | str) -> BusEvent:
    """Decode and check an envelope; the payload is left raw for the registry to validate."""
    try:
        event = _BUS_DECODER.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise translate_validation_error(exc, "", "$") from None
    # A decoded Raw holds exactly the value's bytes (no leading blanks): its first byte tells an
    # object, checked in place (no copy of the payload).
    if memoryview(event.payload)[0] != _OPEN_BRACE:
        raise EventValidationError(event.event_type, "$.payload", "Expected `object`")
    return event


def split_bus_event(data: bytes | str) -> tuple[BusEvent, bytes]:
    """:func:`decode_bus_event`, plus the payload's JSON bytes (the one copy a consumer keeps)."""
    try:
        event = _BUS_DECODER.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise translate_validation_error(exc, "", "$") from None
    payload = bytes(event.payload)
    if payload[:1] != b"{":
        raise EventValidationError(event.event_type, "$.payload", "Expected `object`")
    return event, payload


#: Field names of a workflow stream entry, in the order the reference writes them.
WORKFLOW_FIELDS = (
    "event_id",
    "execution_id",
    "workflow_correlation_key",
    "event_name",
    "event_type",
    "tenant",
    "timestamp",
    "user_id",
    "from_state",
    "to_state",
    "payload_json",
)


class WorkflowEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A flat workflow stream entry; ``None`` is written as ``""``."""

    event_id: Uuid
    event_type: str
    event_name: str
    tenant: str
    timestamp: IsoDateTime
    payload_json: bytes = b"{}"
    execution_id: Uuid | None = None
    workflow_correlation_key: str | None = None
    user_id: Uuid | None = None
    from_state: str | None = None
    to_state: str | None = None

    @classmethod
    def from_bus_event(
        cls,
        event_id: str,
        event_type: str,
        timestamp: str,
        payload: Mapping[str, Any],
        payload_json: bytes,
        *,
        execution_id: str | None = None,
        correlation_key: str | None = None,
        event_name: str | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
    ) -> WorkflowEvent:
        """Derive the flat entry the reference writes for a global publish (hooks override)."""
        tenant = payload.get("tenantId") or payload.get("tenant") or ""
        user = payload.get("actorUserId") or payload.get("userId") or None
        name = event_name or payload.get("eventName") or event_type
        event = cls(
            event_id=event_id,
            event_type=event_type,
            event_name=str(name),
            tenant=str(tenant),
            timestamp=timestamp,
            payload_json=payload_json,
            execution_id=execution_id or None,
            workflow_correlation_key=correlation_key or None,
            user_id=user if isinstance(user, str) else None,
            from_state=from_state or None,
            to_state=to_state or None,
        )
        event.check()
        if user is not None and not isinstance(user, str):
            raise EventValidationError(event_type, "$.user_id", "Expected a uuid (8-4-4-4-12 hex digits)")
        return event

    def check(self) -> None:
        """Apply the reference's rules: event_id, execution_id and user_id are uuids when present."""
        for name in ("event_id", "execution_id", "user_id"):
            value = getattr(self, name)
            if value is not None and not is_uuid(value):
                raise EventValidationError(self.event_type, f"$.{name}", "Expected a uuid (8-4-4-4-12 hex digits)")

    def to_fields(self) -> dict[str, bytes]:
        """The stream entry's fields in wire order (absent values as empty strings)."""
        out: dict[str, bytes] = {}
        for name in WORKFLOW_FIELDS:
            value = getattr(self, name)
            out[name] = value if isinstance(value, bytes) else (value or "").encode()
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> WorkflowEvent:
        """Parse a stream entry (bytes or str keys and values); ``""`` maps back to absent."""
        norm: dict[str, Any] = {}
        for key, value in fields.items():
            k = key.decode() if isinstance(key, bytes) else str(key)
            norm[k] = value if isinstance(value, bytes) else str(value).encode()
        missing = [f for f in ("event_id", "event_type", "timestamp") if not norm.get(f)]
        if missing:
            raise EventValidationError(
                (norm.get("event_type") or b"").decode(errors="replace"), f"$.{missing[0]}", "required field is missing"
            )
        text = {k: v.decode() for k, v in norm.items() if k != "payload_json"}
        try:
            event = msgspec.convert(
                {
                    "event_id": text["event_id"],
                    "event_type": text["event_type"],
                    "event_name": text.get("event_name") or text["event_type"],
                    "tenant": text.get("tenant", ""),
                    "timestamp": text["timestamp"],
                    "payload_json": norm.get("payload_json") or b"{}",
                    "execution_id": text.get("execution_id") or None,
                    "workflow_correlation_key": text.get("workflow_correlation_key") or None,
                    "user_id": text.get("user_id") or None,
                    "from_state": text.get("from_state") or None,
                    "to_state": text.get("to_state") or None,
                },
                cls,
            )
        except msgspec.ValidationError as exc:
            raise translate_validation_error(exc, text["event_type"], "$") from None
        return event

    def payload(self) -> dict[str, Any]:
        """The parsed ``payload_json`` (an object)."""
        value = msgspec.json.decode(self.payload_json)
        if not isinstance(value, dict):
            raise EventValidationError(self.event_type, "$.payload_json", "Expected `object`")
        return value
