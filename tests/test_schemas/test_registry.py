"""The registry: lookups by type and ref, suggestions for unknown names, the naming rule."""

from __future__ import annotations

import re

import msgspec
import pytest

from schemas import (
    REGISTRY,
    EventSpec,
    EventValidationError,
    UnknownEventTypeError,
    UnknownSchemaRefError,
    events,
    schema_ref_for,
    translate_validation_error,
)

from ._examples import ROWS, ROWS_BY_TYPE, UUID, example, union_variants


def test_registry_holds_every_catalog_fact() -> None:
    """All 282 types, once each; category, status, legacy, in_catalog and removed flags match the facts."""
    assert sorted(REGISTRY.event_types) == sorted(row["event_type"] for row in ROWS)
    assert len(set(REGISTRY.event_types)) == 282
    for spec in REGISTRY:
        row = ROWS_BY_TYPE[spec.event_type]
        facts = (row["category"], row["status"], row["legacy"], row["in_catalog"], bool(row.get("catalog_removed")))
        assert (spec.category, spec.status, spec.legacy, spec.in_catalog, spec.deprecated) == facts
        assert spec.passthrough == (row["unknown_keys"] == "passthrough")
    counts = (
        sum(s.in_catalog for s in REGISTRY),
        sum(s.deprecated for s in REGISTRY),
        sum(s.bus_only for s in REGISTRY),
    )
    assert counts == (166, 2, 116)


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.event_type) for s in REGISTRY])
def test_schema_ref_follows_the_pascal_case_rule(spec: EventSpec) -> None:
    """Each ref is ``payload.<PascalCase(EVENT_TYPE)>.v1`` and resolves back to its type."""
    assert spec.schema_ref == schema_ref_for(spec.event_type)
    assert re.fullmatch(r"payload\.([A-Z][a-z0-9]*)+\.v1", spec.schema_ref)
    assert REGISTRY.by_ref(spec.schema_ref) is spec
    assert REGISTRY.resolve(spec.schema_ref) is spec
    assert REGISTRY.resolve(spec.event_type) is spec


def test_schema_ref_for_examples() -> None:
    """The rule on the reference's own examples."""
    assert schema_ref_for("TICKET_SLA_STAGE_MET") == "payload.TicketSlaStageMet.v1"
    assert schema_ref_for("RMM_ALERT_TRIGGERED") == "payload.RmmAlertTriggered.v1"
    assert schema_ref_for("CUSTOM_EVENT") == "payload.CustomEvent.v1"


def test_unknown_event_type_raises_with_suggestions() -> None:
    """An unknown type raises UnknownEventTypeError (a LookupError) naming the closest types."""
    with pytest.raises(UnknownEventTypeError) as info:
        REGISTRY.get("TICKET_CRATED")
    assert isinstance(info.value, LookupError)
    assert info.value.event_type == "TICKET_CRATED"
    assert str(info.value).startswith("unknown event type 'TICKET_CRATED'; did you mean TICKET_CREATED")


def test_unknown_ref_raises_with_suggestions() -> None:
    """An unknown ref raises UnknownSchemaRefError naming the closest refs; resolve() routes refs there."""
    with pytest.raises(UnknownSchemaRefError) as info:
        REGISTRY.resolve("payload.TicketCreated.v2")
    assert info.value.ref == "payload.TicketCreated.v2"
    assert "did you mean payload.TicketCreated.v1" in str(info.value)


def test_hopeless_name_raises_without_suggestions() -> None:
    """A name close to nothing says so plainly, without an empty suggestion list."""
    with pytest.raises(UnknownEventTypeError) as info:
        REGISTRY.get("zzz")
    assert str(info.value) == "unknown event type 'zzz'"


def test_container_protocol() -> None:
    """len, iteration and ``in`` work over event types."""
    assert len(REGISTRY) == 282 == len(list(REGISTRY))
    assert "TICKET_CREATED" in REGISTRY
    assert "NOPE" not in REGISTRY


def test_spec_for_struct_finds_the_owner() -> None:
    """Every variant and catalog Struct maps back to its spec."""
    for spec in REGISTRY:
        assert REGISTRY.spec_for_struct(spec.catalog_type) is spec
        for _, cls in spec.variants:
            assert REGISTRY.spec_for_struct(cls) is spec


def test_decoders_are_cached() -> None:
    """One decoder per Struct, reused."""
    assert REGISTRY.decoder(events.TicketCreated) is REGISTRY.decoder(events.TicketCreated)


def test_validate_mapping_keeps_unknown_keys_on_the_wire() -> None:
    """validate() of a mapping returns its compact JSON with unknown keys kept, as the reference sends them."""
    payload = {
        "tenantId": "t-1",
        "occurredAt": "2026-01-23T10:11:12.345Z",
        "ticketId": "5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f",
        "custom": 1,
    }
    assert msgspec.json.decode(REGISTRY.validate("TICKET_UPDATED", payload)) == payload


def test_validate_struct_checks_constraints_and_owner() -> None:
    """A Struct is checked on validate (constructors do not check), and must belong to the event type."""
    good = events.TicketUpdated(
        tenant_id="t-1", occurred_at="2026-01-23T10:11:12.345Z", ticket_id="5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f"
    )
    assert REGISTRY.validate("TICKET_UPDATED", good) == msgspec.json.encode(good)
    bad = msgspec.structs.replace(good, occurred_at="2026-01-23T10:11:12+00:00")
    with pytest.raises(EventValidationError, match=r"\$\.payload\.occurredAt"):
        REGISTRY.validate("TICKET_UPDATED", bad)
    with pytest.raises(EventValidationError, match="a TicketUpdated is a TICKET_UPDATED payload"):
        REGISTRY.validate("TICKET_CLOSED", good)


def test_validate_rejects_non_objects() -> None:
    """A list or a non-JSON value is refused with a sentence, not a crash."""
    with pytest.raises(EventValidationError, match="expected an object, got list"):
        REGISTRY.validate("TICKET_UPDATED", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(EventValidationError, match="not JSON-serialisable"):
        REGISTRY.validate("TICKET_UPDATED", {"x": object()})


def test_malformed_json_is_a_validation_error() -> None:
    """Bytes that are not JSON fail as an EventValidationError at ``$.payload``."""
    with pytest.raises(EventValidationError) as info:
        REGISTRY.decode_payload("TICKET_UPDATED", b"{not json")
    assert info.value.path == "$.payload"
    assert "malformed" in info.value.rule


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("ticketId", "00000000-0000-0000-0000-000000000000\n", id="uuid"),
        pytest.param("occurredAt", "2026-01-01T00:00:00Z\n", id="datetime"),
    ],
)
def test_a_trailing_newline_is_not_accepted(field: str, value: str) -> None:
    """Python's ``$`` matches before a final newline; the patterns must not (the reference's JS regexes don't)."""
    payload = {
        "tenantId": "t",
        "occurredAt": "2026-01-01T00:00:00Z",
        "ticketId": "00000000-0000-0000-0000-000000000000",
    }
    payload[field] = value
    with pytest.raises(EventValidationError) as info:
        REGISTRY.decode_payload("TICKET_CREATED", msgspec.json.encode(payload))
    assert info.value.path == f"$.payload.{field}"


def _try_every_shape(event_type: str, data: bytes) -> tuple[str, object] | tuple[str, str, str]:
    """The registry's rule without any skipping: every shape in order, the domain shape's error."""
    spec = REGISTRY.get(event_type)
    error: EventValidationError | None = None
    for kind, cls in spec.variants:
        try:
            return kind, REGISTRY.decoder(cls).decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            if error is None or kind == "domain":
                error = translate_validation_error(exc, event_type, decoder=REGISTRY.decoder(cls), data=data)
    assert error is not None
    return "error", error.path, error.rule


def _variants(spec: EventSpec) -> list[dict[str, object]]:
    """Each shape's full example, each with every required key dropped in turn, and both merged."""
    shapes = [example(v["fields"]) for _, v in union_variants(ROWS_BY_TYPE[spec.event_type])]
    docs = [*shapes, {k: v for s in shapes for k, v in s.items()}]
    docs += [{k: v for k, v in doc.items() if k != drop} for doc in list(docs) for drop in doc]
    return docs


def _outcome(
    event_type: str, data: bytes | str, present: dict[str, object] | None = None
) -> tuple[str, object] | tuple[str, str, str]:
    try:
        typed = REGISTRY.decode_payload(event_type, data, present=present)
    except EventValidationError as exc:
        return "error", exc.path, exc.rule
    return typed.variant, typed.value


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.event_type) for s in REGISTRY if s.is_union])
def test_skipping_a_shape_that_cannot_match_changes_nothing(spec: EventSpec) -> None:
    """A union shape missing a required key is not tried: same variant, value and error as trying every shape."""
    for doc in _variants(spec):
        data = msgspec.json.encode(doc)
        expected = _try_every_shape(spec.event_type, data)
        assert _outcome(spec.event_type, data) == expected
        assert _outcome(spec.event_type, data.decode()) == expected
        assert _outcome(spec.event_type, data, doc) == expected
        if expected[0] != "error":
            assert REGISTRY.validate(spec.event_type, doc) == data
        else:
            with pytest.raises(EventValidationError) as info:
                REGISTRY.validate(spec.event_type, doc)
            assert ("error", info.value.path, info.value.rule) == expected


def test_a_key_spelt_with_an_escape_still_matches_the_legacy_shape() -> None:
    """``"user\\u0049d"`` is the key ``userId``: the byte search is not trusted when the JSON holds a backslash."""
    legacy = {"tenantId": UUID, "ticketId": UUID, "userId": UUID}
    data = msgspec.json.encode(legacy).replace(b'"userId"', b'"user\\u0049d"')
    assert REGISTRY.decode_payload("TICKET_CREATED", data).variant == "legacy"
    assert REGISTRY.decode_payload("TICKET_CREATED", data.decode()).variant == "legacy"


def test_a_legacy_payload_is_still_legacy_when_the_domain_shape_fails() -> None:
    """The domain shape's error is reported when neither shape matches, even with the legacy shape skipped."""
    with pytest.raises(EventValidationError) as info:
        REGISTRY.validate("TICKET_CREATED", {"tenantId": "t", "ticketId": UUID})
    assert info.value.path == "$.payload.occurredAt" and info.value.rule == "required field is missing"
