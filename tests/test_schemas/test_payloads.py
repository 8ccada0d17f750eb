"""Every shape of every event type: a valid example decodes and round-trips; bad values fail by path.

Examples come from the catalog facts (``_examples``), not from the Structs, so the facts and
the generated code check each other. One test per shape loops over every field that applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from schemas import REGISTRY, EventValidationError, Payload, translate_validation_error

from ._examples import (
    ALL_SHAPES,
    Leaf,
    Shape,
    example,
    json_path,
    leaves,
    remove,
    replace,
    struct_of,
    wrong_type_value,
)

UUID_RULE = "Expected a uuid (8-4-4-4-12 hex digits)"
DATETIME_RULE = "Expected an ISO-8601 UTC timestamp ending in Z (no offset, not naive)"


def decode(shape: Shape, doc: Any) -> Payload:
    """Decode through the registry's entry point for the shape.

    The catalog shape goes through ``decode_catalog_payload``; bus shapes through
    ``decode_payload`` (which must report the shape as the variant), except the legacy side of a
    union, whose errors ``decode_payload`` never reports (it falls through to the domain shape).
    """
    data = msgspec.json.encode(doc)
    if shape.kind == "catalog":
        return REGISTRY.decode_catalog_payload(shape.event_type, data)
    if shape.kind == "legacy":
        decoder = REGISTRY.decoder(struct_of(shape))
        try:
            value: Payload = decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise translate_validation_error(exc, shape.event_type, decoder=decoder, data=data) from None
        return value
    typed = REGISTRY.decode_payload(shape.event_type, data)
    assert typed.variant == shape.kind
    assert isinstance(typed.value, Payload)
    return typed.value


def params(select: Callable[[Leaf], bool]) -> list[Any]:
    """One param per shape that has a selected field (id = event type, plus the kind for bus shapes)."""
    out = []
    for shape in ALL_SHAPES:
        chosen = [leaf for leaf in leaves(shape.fields) if select(leaf)]
        if chosen:
            out.append(pytest.param(shape, chosen, id=shape.id))
    return out


def expect_rejected(shape: Shape, cases: list[tuple[Leaf, Any]], rule: Callable[[str], bool]) -> list[str]:
    """Decode each mutated document; return a line per case that was accepted or misreported."""
    problems = []
    for leaf, doc in cases:
        path = json_path(leaf.steps)
        try:
            decode(shape, doc)
        except EventValidationError as exc:
            text = str(exc)
            if exc.path != path or shape.event_type not in text or path not in text or not rule(exc.rule):
                problems.append(f"{path}: got {text!r}")
        else:
            problems.append(f"{path}: accepted")
    return problems


def test_every_event_type_has_an_example() -> None:
    """The examples cover all 282 event types and every bus shape (337 shapes)."""
    assert {s.event_type for s in ALL_SHAPES} == set(REGISTRY.event_types)
    assert len(REGISTRY) == 282
    assert len(ALL_SHAPES) == len({(s.event_type, s.kind) for s in ALL_SHAPES})


@pytest.mark.parametrize("shape", [pytest.param(shape, id=shape.id) for shape in ALL_SHAPES])
@pytest.mark.parametrize("full", [True, False], ids=["full", "required-only"])
def test_valid_example_decodes_and_round_trips(shape: Shape, full: bool) -> None:
    """A valid example decodes to the shape's Struct; encoding it gives the same wire JSON and an equal Struct."""
    doc = example(shape.fields, full=full)
    value = decode(shape, doc)
    assert type(value) is struct_of(shape)
    wire = msgspec.json.encode(value)
    assert msgspec.json.decode(wire) == doc
    assert decode(shape, msgspec.json.decode(wire)) == value


@pytest.mark.parametrize(
    ("shape", "found"),
    params(lambda leaf: leaf.fact["required"] and not leaf.in_record and isinstance(leaf.steps[-1], str)),
)
def test_missing_required_field_is_rejected(shape: Shape, found: list[Leaf]) -> None:
    """Removing any required field (nested ones too) fails with its path and 'required field is missing'."""
    full = example(shape.fields)
    cases = [(leaf, remove(full, leaf.steps)) for leaf in found]
    assert expect_rejected(shape, cases, lambda rule: rule == "required field is missing") == []


@pytest.mark.parametrize(("shape", "found"), params(lambda leaf: leaf.fact["type"] != "any"))
def test_wrong_type_is_rejected(shape: Shape, found: list[Leaf]) -> None:
    """A value of the wrong JSON type in any typed field fails with its path and 'Expected `...`'."""
    full = example(shape.fields)
    cases = [(leaf, replace(full, leaf.steps, wrong_type_value(leaf.fact))) for leaf in found]
    assert expect_rejected(shape, cases, lambda rule: rule.startswith("Expected `")) == []


@pytest.mark.parametrize(("shape", "found"), params(lambda leaf: leaf.fact["type"] == "uuid"))
def test_bad_uuid_is_rejected(shape: Shape, found: list[Leaf]) -> None:
    """A string that is not 8-4-4-4-12 hex in any uuid field fails with its path."""
    full = example(shape.fields)
    cases = [(leaf, replace(full, leaf.steps, "5f0c6d3e-9b1a-4c2e-8f7d")) for leaf in found]
    assert expect_rejected(shape, cases, lambda rule: rule == UUID_RULE) == []


@pytest.mark.parametrize(("shape", "found"), params(lambda leaf: leaf.fact["type"] == "datetime"))
def test_offset_datetime_is_rejected(shape: Shape, found: list[Leaf]) -> None:
    """A ``+00:00`` timestamp in any datetime field fails with its path (the reference wants ``Z``)."""
    full = example(shape.fields)
    cases = [(leaf, replace(full, leaf.steps, "2026-01-23T10:11:12.345+00:00")) for leaf in found]
    assert expect_rejected(shape, cases, lambda rule: rule == DATETIME_RULE) == []


@pytest.mark.parametrize(("shape", "found"), params(lambda leaf: leaf.fact["type"] == "datetime"))
def test_naive_datetime_is_rejected(shape: Shape, found: list[Leaf]) -> None:
    """A timestamp without a zone in any datetime field fails with its path."""
    full = example(shape.fields)
    cases = [(leaf, replace(full, leaf.steps, "2026-01-23T10:11:12.345")) for leaf in found]
    assert expect_rejected(shape, cases, lambda rule: rule == DATETIME_RULE) == []


@pytest.mark.parametrize(("shape", "found"), params(lambda leaf: leaf.fact["type"] == "enum"))
def test_unknown_enum_value_is_rejected(shape: Shape, found: list[Leaf]) -> None:
    """A value outside the enum in any enum field (or enum array item) fails with its path."""
    full = example(shape.fields)
    cases = [(leaf, replace(full, leaf.steps, "NOT_A_VALUE")) for leaf in found]
    assert expect_rejected(shape, cases, lambda rule: "'NOT_A_VALUE'" in rule) == []


@pytest.mark.parametrize(
    ("shape", "found"),
    params(lambda leaf: not leaf.fact["required"] and not leaf.fact.get("nullable") and leaf.fact["type"] != "any"),
)
def test_null_in_optional_field_is_rejected(shape: Shape, found: list[Leaf]) -> None:
    """``null`` in an optional, non-nullable field fails (absent is fine, null is not, as in the reference)."""
    full = example(shape.fields)
    cases = [(leaf, replace(full, leaf.steps, None)) for leaf in found]
    assert expect_rejected(shape, cases, lambda rule: rule.startswith("Expected `") and "got `null`" in rule) == []


@pytest.mark.parametrize(("shape", "found"), params(lambda leaf: bool(leaf.fact.get("nullable"))))
def test_null_in_nullable_field_is_accepted(shape: Shape, found: list[Leaf]) -> None:
    """``null`` is accepted where the catalog marks a field nullable, and survives a round trip."""
    full = example(shape.fields)
    for leaf in found:
        doc = replace(full, leaf.steps, None)
        assert msgspec.json.decode(msgspec.json.encode(decode(shape, doc))) == doc, json_path(leaf.steps)
