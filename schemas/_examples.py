"""A valid example payload for any event type, built from its Struct (``bus catalog example``).

The value of each field follows its type and constraints: uuids, ``...Z`` timestamps, dates,
emails, urls and patterns get a fixed matching value, numbers respect their bounds, strings and
arrays their minimum length, literals take their first value. Optional fields are included
(``full=True``) or left out. The result always decodes with the shape it was built from.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec.inspect as mi

from ._registry import REGISTRY, Registry
from ._types import DATE_PATTERN, DATETIME_PATTERN, EMAIL_PATTERN, URL_PATTERN, UUID_PATTERN

__all__ = ["ExampleShape", "example_payload"]

#: ``bus``: the shape a publish accepts first (a union's first variant); ``catalog``: the catalog's shape.
ExampleShape = Literal["bus", "catalog"]

_BY_PATTERN = {
    UUID_PATTERN: "00000000-0000-4000-8000-000000000001",
    DATETIME_PATTERN: "2026-01-23T10:11:12.345Z",
    DATE_PATTERN: "2026-01-23",
    EMAIL_PATTERN: "someone@example.com",
    URL_PATTERN: "https://example.com/resource",
}
_TENANT = "00000000-0000-4000-8000-0000000000aa"


def example_payload(
    event_type: str, *, shape: ExampleShape = "bus", full: bool = True, registry: Registry = REGISTRY
) -> dict[str, Any]:
    """A payload of ``event_type`` that validates against ``shape``; raises ``UnknownEventTypeError``."""
    spec = registry.get(event_type)
    cls = spec.catalog_type if shape == "catalog" else spec.variants[0][1]
    value = _value(mi.type_info(cls), full)
    assert isinstance(value, dict)
    if "tenantId" in value:
        value["tenantId"] = _TENANT  # a uuid: legacy shapes require one, domain shapes accept it
    registry.decoder(cls).convert(value)  # the example must decode with the shape it was built from
    return value


def _value(t: mi.Type, full: bool) -> Any:
    """A valid value of the inspected type ``t``."""
    if isinstance(t, mi.Metadata):
        pattern = (t.extra_json_schema or {}).get("pattern")  # Uuid, IsoDateTime: checked by the registry
        if isinstance(t.type, mi.StrType) and pattern in _BY_PATTERN:
            return _BY_PATTERN[pattern]
        return _value(t.type, full)
    if isinstance(t, mi.StructType):
        return {f.encode_name: _value(f.type, full) for f in t.fields if full or f.required}
    if isinstance(t, mi.UnionType):
        usable = [x for x in t.types if not isinstance(x, mi.NoneType)]
        return _value(usable[0], full)
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.StrType):
        if t.pattern is not None:
            return _BY_PATTERN.get(t.pattern, "example")
        return "example".ljust(t.min_length or 0, "x")
    if isinstance(t, mi.BoolType):
        return True
    if isinstance(t, mi.IntType | mi.FloatType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else 1)
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
        number = low if high is None else min(low, high)
        return int(number) if isinstance(t, mi.IntType) else float(number)
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return [_value(t.item_type, full) for _ in range(max(1, t.min_length or 0))]
    if isinstance(t, mi.DictType):
        return {"key": _value(t.value_type, full)}
    return "example"  # Any and other open types
