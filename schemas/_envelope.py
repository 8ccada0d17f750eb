"""The two wire envelopes: the bus event in a per-type stream, and the flat workflow event.

Bus event (field ``event`` of a per-type stream entry), compact JSON in this key order::

    {"id":"<uuid>","eventType":"TICKET_CREATED","timestamp":"2026-01-23T10:11:12.345Z","payload":{...}}

Workflow event (``workflow:events:global``): flat string fields, ``""`` for an absent value.
Its rules live here once: the field names and order (:data:`WORKFLOW_FIELDS`), which fields are
optional, where tenant, user and event name come from (:func:`workflow_from_payload`) and the values
of a global publish (:func:`workflow_values`). The bus's byte-level packer takes them from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ._checks import checked
from ._errors import EventValidationError
from ._registry import translate_validation_error
from ._types import IsoDateTime, Uuid, is_uuid

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "WORKFLOW_FIELDS",
    "WORKFLOW_OPTIONAL_FIELDS",
    "WORKFLOW_PAYLOAD_KEYS",
    "BusEvent",
    "WorkflowEvent",
    "decode_bus_event",
    "encode_bus_event",
    "split_bus_event",
    "workflow_from_payload",
    "workflow_values",
]


class BusEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The envelope of a per-type stream entry. ``payload`` stays raw JSON bytes."""

    id: Uuid
    event_type: str = msgspec.field(name="eventType")
    timestamp: IsoDateTime
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


_BUS_DECODER = checked(BusEvent)
_OPEN_BRACE = ord("{")
_BUS_ENCODER = msgspec.json.Encoder()


def encode_bus_event(event_id: str, event_type: str, timestamp: str, payload: bytes) -> bytes:
    """Encode an envelope around already-encoded payload bytes (no re-encoding of the payload)."""
    return _BUS_ENCODER.encode(
        BusEvent(id=event_id, event_type=event_type, timestamp=timestamp, payload=msgspec.Raw(payload))
    )


def decode_bus_event(data: bytes | str) -> BusEvent:
    """Decode and check an envelope; the payload is left raw for the registry to validate."""
    event = _BUS_DECODER.attempt(data)
    if event is None:
        raise translate_validation_error(_BUS_DECODER.error(data), "", "$") from None
    # A decoded Raw holds exactly the value's bytes (no leading blanks): its first byte tells an
    # object, checked in place (no copy of the payload).
    if memoryview(event.payload)[0] != _OPEN_BRACE:
        raise EventValidationError(event.event_type, "$.payload", "Expected `object`")
    return event


def split_bus_event(data: bytes | str) -> tuple[BusEvent, bytes]:
    """:func:`decode_bus_event`, plus the payload's JSON bytes (the one copy a consumer keeps)."""
    event = _BUS_DECODER.attempt(data)
    if event is None:
        raise translate_validation_error(_BUS_DECODER.error(data), "", "$") from None
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
#: The fields written as ``""`` when absent, and read back as absent.
WORKFLOW_OPTIONAL_FIELDS = frozenset({"execution_id", "workflow_correlation_key", "user_id", "from_state", "to_state"})
#: The payload keys the entry reads, first present wins: tenant, user, event name.
_TENANT_KEYS = ("tenantId", "tenant")
_USER_KEYS = ("actorUserId", "userId")
_NAME_KEY = "eventName"
WORKFLOW_PAYLOAD_KEYS = (*_TENANT_KEYS, *_USER_KEYS, _NAME_KEY)

_UUID_RULE = "Expected a uuid (8-4-4-4-12 hex digits)"
_KNOWN_UUIDS: set[str] = set()


def workflow_from_payload(
    payload: Mapping[str, Any], event_type: str, event_name: str | None = None
) -> tuple[str, str | None, str]:
    """``(tenant, user_id, event_name)`` of the entry (one function: the packer's hot path calls it).

    tenant: payload tenantId, else tenant, else ``""``. user_id: payload actorUserId, else
    userId; a uuid when present, else :class:`EventValidationError` (``$.user_id``).
    event_name: the hook's, else payload eventName, else the event type.
    """
    get = payload.get
    tenant = get("tenantId") or get("tenant") or ""
    if type(tenant) is not str:
        tenant = str(tenant)
    name = event_name or get("eventName") or event_type
    if type(name) is not str:
        name = str(name)
    user = get("actorUserId") or get("userId") or None
    if user is None or (type(user) is str and user in _KNOWN_UUIDS):  # user ids repeat: a bounded memo
        return tenant, user, name
    if type(user) is str and is_uuid(user):
        if len(_KNOWN_UUIDS) >= 4096:
            _KNOWN_UUIDS.clear()
        _KNOWN_UUIDS.add(user)
        return tenant, user, name
    raise EventValidationError(event_type, "$.user_id", _UUID_RULE)


def _wire(value: str | None) -> bytes:
    """An optional field's value: ``""`` when absent."""
    return value.encode() if value else b""


def workflow_values(
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
) -> tuple[bytes, ...]:
    """The entry a global publish writes, its values in :data:`WORKFLOW_FIELDS` order (hooks override).

    Raises :class:`EventValidationError` when execution_id or the payload's user is not a uuid;
    ``event_id`` and ``timestamp`` are the caller's to check.
    """
    if execution_id and not is_uuid(execution_id):
        raise EventValidationError(event_type, "$.execution_id", _UUID_RULE)
    tenant, user, name = workflow_from_payload(payload, event_type, event_name)
    return (
        event_id.encode(),
        _wire(execution_id),
        _wire(correlation_key),
        name.encode(),
        event_type.encode(),
        tenant.encode(),
        timestamp.encode(),
        _wire(user),
        _wire(from_state),
        _wire(to_state),
        payload_json,
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
        if not is_uuid(event_id):
            raise EventValidationError(event_type, "$.event_id", _UUID_RULE)
        values = workflow_values(
            event_id,
            event_type,
            timestamp,
            payload,
            payload_json,
            execution_id=execution_id,
            correlation_key=correlation_key,
            event_name=event_name,
            from_state=from_state,
            to_state=to_state,
        )
        return cls._from_values(values)

    @classmethod
    def _from_values(cls, values: tuple[bytes, ...]) -> WorkflowEvent:
        """The Struct of :func:`workflow_values`' output (optional ``""`` -> None)."""
        fields: dict[str, Any] = {}
        for name, value in zip(WORKFLOW_FIELDS, values, strict=True):
            if name == "payload_json":
                fields[name] = value
            else:
                text = value.decode()
                fields[name] = (text or None) if name in WORKFLOW_OPTIONAL_FIELDS else text
        return cls(**fields)

    def check(self) -> None:
        """Apply the reference's rules: event_id, execution_id and user_id are uuids when present."""
        for name in ("event_id", "execution_id", "user_id"):
            value = getattr(self, name)
            if value is not None and not is_uuid(value):
                raise EventValidationError(self.event_type, f"$.{name}", _UUID_RULE)

    def to_fields(self) -> dict[str, bytes]:
        """The stream entry's fields in wire order (absent values as empty strings)."""
        out: dict[str, bytes] = {}
        for name in WORKFLOW_FIELDS:
            value = getattr(self, name)
            out[name] = value if isinstance(value, bytes) else _wire(value)
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
            event = checked(cls).convert(
                {
                    "event_id": text["event_id"],
                    "event_type": text["event_type"],
                    "event_name": text.get("event_name") or text["event_type"],
                    "tenant": text.get("tenant", ""),
                    "timestamp": text["timestamp"],
                    "payload_json": norm.get("payload_json") or b"{}",
                    **{name: text.get(name) or None for name in WORKFLOW_OPTIONAL_FIELDS},
                }
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
