"""Example payloads built from the catalog's field facts (``tests/fixtures/catalog.json``).

The facts, not the generated Structs, drive these examples, so a generator bug shows up as a
failing decode instead of being mirrored in the test. Every shape of every event type is
covered: the catalog shape, the bus-only shape, and both sides of the 15 legacy/domain unions.

Paths are lists of steps (``str`` keys, ``int`` list indexes) into the example document;
:func:`json_path` renders them the way :class:`schemas.EventValidationError` names fields.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import REGISTRY, Payload

CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "catalog.json"
ROWS: list[dict[str, Any]] = json.loads(CATALOG.read_text())
ROWS_BY_TYPE: dict[str, dict[str, Any]] = {row["event_type"]: row for row in ROWS}

UUID = "5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f"
DATETIME = "2026-01-23T10:11:12.345Z"
DATE = "2026-01-23"
RECORD_KEY = "status"

Step = str | int
Fields = list[dict[str, Any]]


@dataclass(frozen=True)
class Shape:
    """One payload shape of an event type: ``kind`` is the registry's VariantKind."""

    event_type: str
    kind: str
    fields: Fields

    @property
    def id(self) -> str:
        """The pytest id: the event type, with the kind for shapes other than the catalog one."""
        return self.event_type if self.kind == "catalog" else f"{self.event_type}:{self.kind}"


def union_kind(fields: Fields, catalog_fields: Fields) -> str:
    """The v2 side of a union has the catalog's fields or an ``occurredAt``; the other is legacy."""
    if fields == catalog_fields or any(f["name"] == "occurredAt" for f in fields):
        return "domain"
    return "legacy"


def union_variants(row: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The variants of a union row in the reference's order, each with its kind."""
    return [(union_kind(v["fields"], row["fields"]), v) for v in row["event_bus_payload"]["variants"]]


def shapes(row: dict[str, Any]) -> list[Shape]:
    """The catalog shape of a row and every shape the bus validates when it differs."""
    out = [Shape(row["event_type"], "catalog", row["fields"])]
    bus = row.get("event_bus_payload")
    if bus is None:
        return out
    if bus["kind"] == "union":
        for kind, variant in union_variants(row):
            if variant["fields"] != row["fields"]:
                out.append(Shape(row["event_type"], kind, variant["fields"]))
    else:
        out.append(Shape(row["event_type"], "bus", bus["fields"]))
    return out


def struct_of(shape: Shape) -> type[Payload]:
    """The Struct the registry uses for one shape."""
    spec = REGISTRY.get(shape.event_type)
    if shape.kind == "catalog":
        return spec.catalog_type
    return next(cls for kind, cls in spec.variants if kind == shape.kind)


ALL_SHAPES: list[Shape] = [shape for row in ROWS for shape in shapes(row)]


def _number(f: dict[str, Any]) -> int:
    """The smallest allowed whole number >= 1 (JSON ``2`` is also a valid ``number``)."""
    lo = f.get("minimum")
    hi = f.get("maximum")
    start = 1 if lo is None else max(1, int(lo) + (1 if f.get("exclusive_minimum") else 0))
    return start if hi is None else min(start, int(hi))


def scalar(f: dict[str, Any]) -> Any:
    """A valid value of a scalar field fact (also used for array items and map values)."""
    if "const" in f:
        return f["const"]
    t = f["type"]
    if t == "uuid":
        return UUID
    if t == "datetime":
        return DATETIME
    if t == "date":
        return DATE
    if t == "string":
        if f.get("format") == "email":
            return "agent@example.com"
        if f.get("format") == "url":
            return "https://example.com/path"
        text = f"{f['name']}-value"
        return text.ljust(f.get("min_length") or 0, "x")
    if t in ("integer", "number"):
        return _number(f)
    if t == "boolean":
        # Not the default (all catalog defaults are false), so an encode keeps the key.
        return True
    if t == "enum":
        return f["enum"][-1]
    if t == "any":
        return {"note": "any value"}
    raise ValueError(f"not a scalar field: {f}")


def _item_fact(f: dict[str, Any]) -> dict[str, Any]:
    fact: dict[str, Any] = {"name": f["name"], "type": f["items"], "required": True}
    if f["items"] == "enum":
        fact["enum"] = f["item_enum"]
    if f.get("item_format"):
        fact["format"] = f["item_format"]
    return fact


def _value_fact(f: dict[str, Any]) -> dict[str, Any]:
    return {"name": f["name"], "type": f["values"], "required": True}


def value(f: dict[str, Any], *, full: bool) -> Any:
    """A valid value for one field fact; ``full`` also fills optional nested fields."""
    t = f["type"]
    if t == "array" and "const" not in f:
        if f["items"] == "object":
            item: Any = example(f["item_fields"], full=full)
        else:
            item = scalar(_item_fact(f))
        return [item] * max(1, f.get("min_items") or 1)
    if t == "object" and "const" not in f:
        if f.get("record"):
            if f["values"] == "object":
                return {RECORD_KEY: example(f["value_fields"], full=full)}
            return {RECORD_KEY: scalar(_value_fact(f))}
        return example(f["fields"], full=full)
    return scalar(f)


def example(fields: Fields, *, full: bool = True) -> dict[str, Any]:
    """A valid payload: every field when ``full``, else only the required ones."""
    return {f["name"]: value(f, full=full) for f in fields if full or f["required"]}


@dataclass(frozen=True)
class Leaf:
    """A field fact found at ``steps`` inside a full example (items and map values included)."""

    steps: tuple[Step, ...]
    fact: dict[str, Any]
    in_record: bool  # the last step is a map key, not a field name


def leaves(fields: Fields, prefix: tuple[Step, ...] = ()) -> Iterator[Leaf]:
    """Every field of a shape, depth first, including array items and map values."""
    for f in fields:
        steps = (*prefix, f["name"])
        yield Leaf(steps, f, in_record=False)
        if f["type"] == "array" and "const" not in f:
            if f["items"] == "object":
                yield from leaves(f["item_fields"], (*steps, 0))
            else:
                yield Leaf((*steps, 0), _item_fact(f), in_record=False)
        elif f["type"] == "object" and "const" not in f:
            if not f.get("record"):
                yield from leaves(f["fields"], steps)
            elif f["values"] == "object":
                yield from leaves(f["value_fields"], (*steps, RECORD_KEY))
            else:
                yield Leaf((*steps, RECORD_KEY), _value_fact(f), in_record=True)


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def json_path(steps: tuple[Step, ...], root: str = "$.payload") -> str:
    """``("changes", "status", "previous")`` -> ``$.payload.changes.status.previous``."""
    out = root
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _KEY.match(step):
            out += f".{step}"
        else:
            out += f"[{json.dumps(step)}]"
    return out


def mutate(doc: dict[str, Any], steps: tuple[Step, ...], change: Callable[[Any, Step], None]) -> dict[str, Any]:
    """A deep copy of ``doc`` with ``change(parent, last_step)`` applied at ``steps``."""
    out = copy.deepcopy(doc)
    node: Any = out
    for step in steps[:-1]:
        node = node[step]
    change(node, steps[-1])
    return out


def replace(doc: dict[str, Any], steps: tuple[Step, ...], new: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the value at ``steps`` replaced by ``new``."""

    def change(parent: Any, last: Step) -> None:
        parent[last] = new

    return mutate(doc, steps, change)


def remove(doc: dict[str, Any], steps: tuple[Step, ...]) -> dict[str, Any]:
    """A copy of ``doc`` without the key at ``steps``."""

    def change(parent: Any, last: Step) -> None:
        del parent[last]

    return mutate(doc, steps, change)


def wrong_type_value(fact: dict[str, Any]) -> Any:
    """A value of a JSON type the field never accepts (``None`` for fields that are not nullable)."""
    t = "const" if "const" in fact else fact["type"]
    if t in ("integer", "number", "boolean"):
        return "not-a-number" if t != "boolean" else "yes"
    if t in ("array", "object"):
        return "not-a-container"
    if t == "const":
        return [fact["const"]]
    return 12345
