"""The 15 legacy/domain union types: the first matching shape wins, the result names the variant.

The reference tries the legacy shape first, except for the three ``CONTRACT_*`` types, whose
zod union lists the domain shape first (the catalog facts give the variants in the
reference's order, and their fields show which is which). ``DOMAIN_FIRST`` lists them.
"""

from __future__ import annotations

import msgspec
import pytest

from schemas import REGISTRY, EventSpec, EventValidationError

from ._examples import ROWS_BY_TYPE, UUID, example, union_variants

UNION_TYPES = [spec for spec in REGISTRY if spec.is_union]
#: Unions whose first variant in the reference is the v2 domain shape.
DOMAIN_FIRST = {"CONTRACT_CREATED", "CONTRACT_STATUS_CHANGED", "CONTRACT_UPDATED"}


def union_params() -> list[object]:
    """One param per union type, id = event type."""
    return [pytest.param(spec, id=spec.event_type) for spec in UNION_TYPES]


def legacy_and_domain(spec: EventSpec) -> tuple[dict[str, object], dict[str, object]]:
    """Full examples of the legacy and the domain shape, from the catalog facts."""
    by_kind = dict(union_variants(ROWS_BY_TYPE[spec.event_type]))
    return example(by_kind["legacy"]["fields"]), example(by_kind["domain"]["fields"])


def test_there_are_fifteen_union_types_tried_in_the_reference_order() -> None:
    """The 15 union types try legacy then domain, except CONTRACT_*, which try domain first."""
    assert len(UNION_TYPES) == 15
    for spec in UNION_TYPES:
        order = ["domain", "legacy"] if spec.event_type in DOMAIN_FIRST else ["legacy", "domain"]
        assert [kind for kind, _ in spec.variants] == order, spec.event_type
        assert [kind for kind, _ in union_variants(ROWS_BY_TYPE[spec.event_type])] == order


@pytest.mark.parametrize("spec", union_params())
def test_first_variant_wins_when_both_shapes_match(spec: EventSpec) -> None:
    """A payload valid in both shapes decodes as the first variant: legacy (domain for CONTRACT_*)."""
    legacy, domain = legacy_and_domain(spec)
    both = {**domain, **legacy, "tenantId": UUID}
    for _, cls in spec.variants:  # the document really is valid in both shapes
        REGISTRY.decoder(cls).decode(msgspec.json.encode(both))
    typed = REGISTRY.decode_payload(spec.event_type, msgspec.json.encode(both))
    winner = "domain" if spec.event_type in DOMAIN_FIRST else "legacy"
    assert typed.variant == winner
    assert type(typed.value) is dict(spec.variants)[winner]


@pytest.mark.parametrize("spec", union_params())
def test_legacy_shape_is_reported_as_legacy(spec: EventSpec) -> None:
    """A payload valid only in the legacy shape decodes, and says it matched the legacy variant."""
    legacy, _ = legacy_and_domain(spec)
    typed = REGISTRY.decode_payload(spec.event_type, msgspec.json.encode(legacy))
    assert typed.variant == "legacy"
    assert type(typed.value) is dict(spec.variants)["legacy"]


@pytest.mark.parametrize("spec", union_params())
def test_domain_shape_is_reported_as_domain(spec: EventSpec) -> None:
    """A payload valid only in the domain shape decodes, and says it matched the domain variant."""
    _, domain = legacy_and_domain(spec)
    typed = REGISTRY.decode_payload(spec.event_type, msgspec.json.encode(domain))
    assert typed.variant == "domain"
    assert type(typed.value) is dict(spec.variants)["domain"]


@pytest.mark.parametrize("spec", union_params())
@pytest.mark.parametrize("kind", ["legacy", "domain"])
def test_unknown_keys_are_dropped_in_the_typed_view(spec: EventSpec, kind: str) -> None:
    """Keys the matched shape does not know are not in the typed value (the raw bytes keep them)."""
    legacy, domain = legacy_and_domain(spec)
    doc = {**(legacy if kind == "legacy" else domain), "extraKey": "kept on the wire only"}
    raw = msgspec.json.encode(doc)
    typed = REGISTRY.decode_payload(spec.event_type, raw)
    assert typed.variant == kind
    encoded = msgspec.json.decode(msgspec.json.encode(typed.value))
    assert "extraKey" not in encoded
    assert {k: v for k, v in doc.items() if k != "extraKey"} == encoded
    assert msgspec.json.decode(raw)["extraKey"] == "kept on the wire only"


@pytest.mark.parametrize("spec", union_params())
def test_payload_matching_neither_shape_reports_the_domain_error(spec: EventSpec) -> None:
    """When neither shape matches, the error names the event type and a path of the domain shape."""
    _, domain = legacy_and_domain(spec)
    del domain["occurredAt"]
    with pytest.raises(EventValidationError) as info:
        REGISTRY.decode_payload(spec.event_type, msgspec.json.encode(domain))
    assert info.value.event_type == spec.event_type
    assert info.value.path == "$.payload.occurredAt"
    assert str(info.value) == f"{spec.event_type}: invalid $.payload.occurredAt: required field is missing"
