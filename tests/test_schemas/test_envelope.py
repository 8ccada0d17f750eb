"""Envelopes on the wire: our bytes equal hand-written golden examples, and the goldens decode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas import (
    REGISTRY,
    WORKFLOW_FIELDS,
    EventValidationError,
    FieldChange,
    WorkflowEvent,
    decode_bus_event,
    encode_bus_event,
    events,
)

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
EVENT_ID = "3f2b8c1e-6a4d-4e7f-9b2a-1c5d8e9f0a7b"
TIMESTAMP = "2026-01-23T10:11:12.345Z"
TICKET_ID = "5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f"


def ticket_updated_payload() -> dict[str, Any]:
    """The payload of the golden TICKET_UPDATED, in the order a producer builds it."""
    return {
        "tenantId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "occurredAt": "2026-01-23T10:11:12.300Z",
        "actorType": "USER",
        "actorUserId": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "ticketId": TICKET_ID,
        "updatedFields": ["status_id"],
        "changes": {"status_id": {"previous": "open", "new": "closed"}},
    }


def golden_bytes(name: str) -> bytes:
    """A golden file's bytes without the trailing newline an editor adds."""
    return (GOLDEN / name).read_bytes().rstrip(b"\n")


def golden_fields(name: str) -> list[tuple[str, bytes]]:
    """A golden workflow entry as (field, value bytes) pairs in file order."""
    doc: dict[str, str] = json.loads((GOLDEN / name).read_text())
    return [(k, v.encode()) for k, v in doc.items()]


def test_bus_event_encodes_to_the_golden_bytes() -> None:
    """A validated mapping payload wrapped by encode_bus_event equals the golden envelope byte for byte."""
    payload = REGISTRY.validate("TICKET_UPDATED", ticket_updated_payload())
    assert encode_bus_event(EVENT_ID, "TICKET_UPDATED", TIMESTAMP, payload) == golden_bytes(
        "bus_event_ticket_updated.json"
    )


def test_bus_event_from_a_struct_encodes_to_the_golden_bytes() -> None:
    """A payload built as a Struct (snake_case attributes) gives the same wire JSON (keys in field order)."""
    value = events.TicketUpdated(
        tenant_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
        occurred_at="2026-01-23T10:11:12.300Z",
        actor_type="USER",
        actor_user_id="a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        ticket_id=TICKET_ID,
        updated_fields=["status_id"],
        changes={"status_id": FieldChange(previous="open", new="closed")},
    )
    wire = msgspec.json.decode(
        encode_bus_event(EVENT_ID, "TICKET_UPDATED", TIMESTAMP, REGISTRY.validate("TICKET_UPDATED", value))
    )
    assert wire == json.loads(golden_bytes("bus_event_ticket_updated.json"))


def test_golden_bus_event_decodes() -> None:
    """The golden envelope decodes; its raw payload validates as the domain shape with the change typed."""
    event = decode_bus_event(golden_bytes("bus_event_ticket_updated.json"))
    assert (event.id, event.event_type, event.timestamp) == (EVENT_ID, "TICKET_UPDATED", TIMESTAMP)
    typed = REGISTRY.decode_payload(event.event_type, event.payload)
    assert typed.variant == "domain"
    assert typed.value.changes["status_id"].new == "closed"
    assert msgspec.json.decode(event.payload) == ticket_updated_payload()


@pytest.mark.parametrize(
    ("change", "path"),
    [
        pytest.param({"timestamp": "2026-01-23T10:11:12.345+00:00"}, "$.timestamp", id="offset-timestamp"),
        pytest.param({"timestamp": "2026-01-23T10:11:12.345"}, "$.timestamp", id="naive-timestamp"),
        pytest.param({"id": "not-a-uuid"}, "$.id", id="bad-id"),
        pytest.param({"payload": [1]}, "$.payload", id="payload-not-object"),
        pytest.param({"eventType": None}, "$.eventType", id="event-type-null"),
    ],
)
def test_bad_envelopes_are_rejected(change: dict[str, Any], path: str) -> None:
    """An envelope the reference would reject fails with the envelope path."""
    doc = {**json.loads(golden_bytes("bus_event_ticket_updated.json")), **change}
    with pytest.raises(EventValidationError) as info:
        decode_bus_event(msgspec.json.encode(doc))
    assert info.value.path == path


def test_envelope_without_id_is_rejected() -> None:
    """A missing id is a missing required field at ``$.id``."""
    doc = json.loads(golden_bytes("bus_event_ticket_updated.json"))
    del doc["id"]
    with pytest.raises(EventValidationError, match=r"invalid \$\.id: required field is missing"):
        decode_bus_event(msgspec.json.encode(doc))


def test_workflow_event_encodes_to_the_golden_fields() -> None:
    """The flat entry derived from a global publish equals the golden fields, values and order."""
    payload = ticket_updated_payload()
    payload_json = REGISTRY.validate("TICKET_UPDATED", payload)
    event = WorkflowEvent.from_bus_event(EVENT_ID, "TICKET_UPDATED", TIMESTAMP, payload, payload_json)
    assert list(event.to_fields().items()) == golden_fields("workflow_event_ticket_updated.json")


def test_workflow_event_with_hooks_encodes_to_the_golden_fields() -> None:
    """Hooks set execution_id, correlation key, event name and states; no actor gives an empty user_id."""
    payload = json.loads(dict(golden_fields("workflow_event_ticket_closed_hooks.json"))["payload_json"])
    payload_json = REGISTRY.validate("TICKET_CLOSED", payload)
    event = WorkflowEvent.from_bus_event(
        "0b7e1d2c-3a4f-4b5c-8d6e-7f8091a2b3c4",
        "TICKET_CLOSED",
        "2026-01-23T10:15:00Z",
        payload,
        payload_json,
        execution_id="d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09",
        correlation_key=f"ticket:{TICKET_ID}",
        event_name="Ticket Resolution Approved",
        from_state="awaiting_approval",
        to_state="closed",
    )
    assert list(event.to_fields().items()) == golden_fields("workflow_event_ticket_closed_hooks.json")


@pytest.mark.parametrize("name", ["workflow_event_ticket_updated.json", "workflow_event_ticket_closed_hooks.json"])
def test_golden_workflow_events_decode_and_round_trip(name: str) -> None:
    """A golden entry (bytes keys, as redis returns it) parses; ``""`` optional values become None; it re-encodes."""
    fields = golden_fields(name)
    event = WorkflowEvent.from_fields({k.encode(): v for k, v in fields})
    for attr in ("execution_id", "workflow_correlation_key", "user_id", "from_state", "to_state"):
        raw = dict(fields)[attr]
        assert getattr(event, attr) == (raw.decode() if raw else None)
    assert event.payload() == json.loads(dict(fields)["payload_json"])
    assert list(event.to_fields().items()) == fields
    assert tuple(event.to_fields()) == WORKFLOW_FIELDS


def test_workflow_empty_strings_map_to_none() -> None:
    """Every optional field written as ``""`` reads back as None, and event_name falls back to the type."""
    event = WorkflowEvent.from_fields(
        {
            "event_id": EVENT_ID,
            "execution_id": "",
            "workflow_correlation_key": "",
            "event_name": "",
            "event_type": "TICKET_UPDATED",
            "tenant": "",
            "timestamp": TIMESTAMP,
            "user_id": "",
            "from_state": "",
            "to_state": "",
            "payload_json": "",
        }
    )
    assert (event.execution_id, event.workflow_correlation_key, event.user_id) == (None, None, None)
    assert (event.from_state, event.to_state) == (None, None)
    assert event.event_name == "TICKET_UPDATED"
    assert event.payload() == {}


@pytest.mark.parametrize("field", ["user_id", "execution_id", "event_id"])
def test_workflow_ids_must_be_uuids_when_read(field: str) -> None:
    """A non-uuid user_id, execution_id or event_id in a stream entry is rejected with its field name."""
    fields = dict(golden_fields("workflow_event_ticket_updated.json"))
    fields[field] = b"user-42"
    with pytest.raises(EventValidationError) as info:
        WorkflowEvent.from_fields(fields)
    assert info.value.path == f"$.{field}"
    assert "uuid" in info.value.rule


@pytest.mark.parametrize(
    ("payload", "rule"),
    [
        pytest.param({"tenantId": "t", "actorUserId": "user-42"}, "uuid", id="actorUserId-not-uuid"),
        pytest.param({"tenantId": "t", "userId": "user-42"}, "uuid", id="userId-not-uuid"),
        pytest.param({"tenantId": "t", "userId": 42}, "uuid", id="userId-not-string"),
    ],
)
def test_workflow_user_id_must_be_a_uuid_when_written(payload: dict[str, Any], rule: str) -> None:
    """Deriving the entry from a payload whose actorUserId/userId is not a uuid fails before anything is written."""
    with pytest.raises(EventValidationError) as info:
        WorkflowEvent.from_bus_event(EVENT_ID, "TICKET_UPDATED", TIMESTAMP, payload, msgspec.json.encode(payload))
    assert info.value.path == "$.user_id"
    assert rule in info.value.rule


def test_workflow_user_id_prefers_actor_user_id() -> None:
    """user_id is payload.actorUserId, else payload.userId; tenant is tenantId, else tenant."""
    actor, user = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "b1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
    both = {"tenant": "legacy-tenant", "actorUserId": actor, "userId": user}
    event = WorkflowEvent.from_bus_event(EVENT_ID, "X", TIMESTAMP, both, msgspec.json.encode(both))
    assert (event.user_id, event.tenant) == (actor, "legacy-tenant")
    only_user = {"tenantId": "t-1", "userId": user}
    event = WorkflowEvent.from_bus_event(EVENT_ID, "X", TIMESTAMP, only_user, msgspec.json.encode(only_user))
    assert (event.user_id, event.tenant) == (user, "t-1")


def test_workflow_entry_without_event_id_is_rejected() -> None:
    """event_id, event_type and timestamp are required in a stream entry."""
    fields = dict(golden_fields("workflow_event_ticket_updated.json"))
    fields["event_id"] = b""
    with pytest.raises(EventValidationError, match=r"\$\.event_id: required field is missing"):
        WorkflowEvent.from_fields(fields)
