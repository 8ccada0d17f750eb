"""Export of the registry: JSON Schema per ref, the catalog rows as JSON and as SQL upserts.

JSON Schema comes from msgspec (``msgspec.json.schema_components``) on the Structs, so it uses
wire names and carries the same constraints the decoders enforce (uuid/datetime patterns with a
``format``, enums, min lengths, bounds, defaults). The top-level object is inlined (a form
builder reads ``properties`` straight away); nested objects live in ``$defs``.

The catalog rows are what the reference keeps in ``system_event_catalog``; :func:`catalog_sql`
writes one idempotent ``INSERT ... ON CONFLICT (event_type) DO UPDATE`` that leaves equal rows
untouched. :func:`field_rows` flattens a Struct into the rows ``bus catalog show`` prints.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
from msgspec import inspect as mi

from ._registry import REGISTRY, Registry
from ._types import DATE_PATTERN, DATETIME_PATTERN, EMAIL_PATTERN, URL_PATTERN, UUID_PATTERN

__all__ = [
    "CATALOG_TABLE",
    "JSON_SCHEMA_DIALECT",
    "CatalogRow",
    "FieldRow",
    "catalog_json",
    "catalog_rows",
    "catalog_sql",
    "field_rows",
    "json_schema",
    "json_schemas",
    "payload_components",
    "sql_literal",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
CATALOG_TABLE = "system_event_catalog"

#: ``catalog`` is the workflow catalog's shape; ``bus`` what a publish accepts (``anyOf`` for unions).
Shape = Literal["catalog", "bus"]


def _ecma(node: Any) -> Any:
    """Rewrite Python's end-of-string anchor ``\\Z`` as ECMA-262's ``$`` in every ``pattern``."""
    if isinstance(node, dict):
        return {
            k: (v[:-2] + "$" if k == "pattern" and isinstance(v, str) and v.endswith("\\Z") else _ecma(v))
            for k, v in node.items()
        }
    if isinstance(node, list | tuple):
        return type(node)(_ecma(v) for v in node)
    return node


def _components(types: list[type[Any]]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    refs, defs = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    return _ecma(refs), _ecma(defs)


def json_schema(name: str, *, shape: Shape = "catalog", registry: Registry = REGISTRY) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one event type or ref.

    ``shape="catalog"`` (the default) describes ``payload.<PascalCase>.v1`` as the workflow side
    validates it; ``shape="bus"`` describes what a publish accepts: the bus-only object, or an
    ``anyOf`` of the legacy and domain shapes (legacy first, as the reference tries them).
    Unknown names raise :class:`UnknownEventTypeError` / :class:`UnknownSchemaRefError`.
    """
    spec = registry.resolve(name)
    classes = [spec.catalog_type] if shape == "catalog" else [cls for _, cls in spec.variants]
    refs, defs = _components(classes)
    head: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, "$id": spec.schema_ref}
    if len(classes) == 1:
        body = defs.pop(classes[0].__name__)
        body.pop("title", None)
        body.pop("description", None)
    else:
        body = {"anyOf": list(refs)}
    schema = {**head, "title": spec.name, "description": spec.description, **body}
    if shape == "bus":
        schema["x-variants"] = [kind for kind, _ in spec.variants]
    if defs:
        schema["$defs"] = defs
    return schema


def payload_components(
    *, registry: Registry = REGISTRY, ref_template: str = "#/components/schemas/{name}"
) -> tuple[dict[str, tuple[dict[str, Any], dict[str, Any]]], dict[str, Any]]:
    """Every payload as shared components, for documents that embed them all (AsyncAPI).

    Returns ``({event_type: (bus_schema, catalog_schema)}, components)``: the bus schema is a
    ``$ref`` (or an ``anyOf`` of the legacy and domain refs, legacy first), the catalog schema a
    ``$ref``; ``components`` holds every Struct once, referenced through ``ref_template``.
    """
    classes: list[type[Any]] = []
    for spec in registry:
        classes += [cls for _, cls in spec.variants]
        classes.append(spec.catalog_type)
    unique = list(dict.fromkeys(classes))
    refs, defs = msgspec.json.schema_components(unique, ref_template=ref_template)
    ref_of = dict(zip(unique, _ecma(refs), strict=True))
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for spec in registry:
        bus = [ref_of[cls] for _, cls in spec.variants]
        out[spec.event_type] = ({"anyOf": bus} if len(bus) > 1 else bus[0], ref_of[spec.catalog_type])
    return out, _ecma(defs)


def json_schemas(*, shape: Shape = "catalog", registry: Registry = REGISTRY) -> dict[str, dict[str, Any]]:
    """Every ref's JSON Schema, keyed by ``payload.<PascalCase>.v1``, in registry order."""
    return {spec.schema_ref: json_schema(spec.event_type, shape=shape, registry=registry) for spec in registry}


class CatalogRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the reference's ``system_event_catalog`` table."""

    event_type: str
    name: str
    description: str
    category: str
    payload_schema_ref: str


_COLUMNS: tuple[str, ...] = CatalogRow.__struct_fields__


def catalog_rows(*, include_bus_only: bool = False, registry: Registry = REGISTRY) -> list[CatalogRow]:
    """The catalog rows, sorted by event type.

    By default the types the workflow catalog lists (the bus-only types and the removed
    ``COMPANY_*`` rows are not in it); ``include_bus_only`` adds the bus-only types.
    """
    return [
        CatalogRow(
            event_type=s.event_type,
            name=s.name,
            description=s.description,
            category=s.category,
            payload_schema_ref=s.schema_ref,
        )
        for s in sorted(registry, key=lambda s: s.event_type)
        if s.in_catalog or (include_bus_only and not s.deprecated)
    ]


def catalog_json(rows: list[CatalogRow] | None = None) -> bytes:
    """The rows as a pretty JSON array of objects (keys = table columns), newline-terminated."""
    data = msgspec.json.encode(catalog_rows() if rows is None else rows)
    return msgspec.json.format(data, indent=2) + b"\n"


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def sql_literal(value: str | None) -> str:
    """A SQL string literal for ``value`` (``NULL`` for None).

    Quotes are doubled. A value with a backslash is written as a PostgreSQL ``E'...'`` literal
    with the backslash doubled, so it reads the same whatever ``standard_conforming_strings``
    is. NUL cannot be stored in a PostgreSQL text column and raises ValueError.
    """
    if value is None:
        return "NULL"
    if "\x00" in value:
        raise ValueError(f"cannot write NUL in a SQL string literal: {value!r}")
    quoted = value.replace("'", "''")
    if "\\" in value:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


def catalog_sql(rows: list[CatalogRow] | None = None, *, table: str = CATALOG_TABLE) -> str:
    """Idempotent upserts of the rows into ``table`` (PostgreSQL; SQLite >= 3.39 runs it too).

    One transaction holding one ``INSERT ... ON CONFLICT (event_type) DO UPDATE`` that only
    touches rows whose name, description, category or ref differ. Running it twice changes
    nothing the second time.
    """
    if not _IDENT.match(table):
        raise ValueError(f"{table!r} is not a plain SQL table name")
    rows = catalog_rows() if rows is None else rows
    cols = ", ".join(_COLUMNS)
    updated = [c for c in _COLUMNS if c != "event_type"]
    lines = [
        f"-- {len(rows)} rows of {table}, written by psa-event-bus (schemas.catalog_sql).",
        "-- Idempotent: inserts missing event types, updates changed rows, leaves equal rows untouched.",
        "BEGIN;",
    ]
    if rows:
        values = ["  (" + ", ".join(sql_literal(getattr(row, c)) for c in _COLUMNS) + ")" for row in rows]
        lines.append(f"INSERT INTO {table} AS t ({cols}) VALUES")
        lines.append(",\n".join(values))
        lines.append("ON CONFLICT (event_type) DO UPDATE SET")
        lines.append(",\n".join(f"  {c} = EXCLUDED.{c}" for c in updated))
        lines.append("WHERE " + "\n   OR ".join(f"t.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in updated) + ";")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


class FieldRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of a fields table: wire path, type, required, constraints.

    Nested fields have dotted paths: ``comment.id``, ``items[].name``, ``changes.*.previous``.
    """

    path: str
    type: str
    required: bool
    constraints: tuple[str, ...] = ()


_FORMATS = {"uuid": "uuid", "date-time": "datetime", "date": "date", "email": "email", "uri": "url"}
_PATTERNS = {
    UUID_PATTERN: "uuid",
    DATETIME_PATTERN: "datetime",
    DATE_PATTERN: "date",
    EMAIL_PATTERN: "email",
    URL_PATTERN: "url",
}
_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("multiple_of", "multiple of"))


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode()


class _Described(msgspec.Struct):
    name: str
    constraints: list[str]
    nested: mi.StructType | None = None
    suffix: str = ""  # how a nested struct's fields hang off the path: "", "[]" or ".*"


def _describe(t: mi.Type) -> _Described:
    if isinstance(t, mi.Metadata):
        out = _describe(t.type)
        fmt = (t.extra_json_schema or {}).get("format")
        if fmt in _FORMATS:
            out.name = _FORMATS[fmt]
        return out
    if isinstance(t, mi.StrType):
        out = _Described(_PATTERNS.get(t.pattern or "", "string"), [])
        if t.pattern and t.pattern not in _PATTERNS:
            out.constraints.append(f"pattern {t.pattern}")
        if t.min_length:
            out.constraints.append(f"min length {t.min_length}")
        if t.max_length is not None:
            out.constraints.append(f"max length {t.max_length}")
        return out
    if isinstance(t, (mi.IntType, mi.FloatType)):
        bounds = [f"{sym} {getattr(t, attr)}" for attr, sym in _BOUNDS if getattr(t, attr) is not None]
        return _Described("integer" if isinstance(t, mi.IntType) else "number", bounds)
    if isinstance(t, mi.BoolType):
        return _Described("boolean", [])
    if isinstance(t, mi.LiteralType):
        if len(t.values) == 1:
            return _Described("const", [f"= {_json(t.values[0])}"])
        return _Described("enum", ["one of " + ", ".join(str(v) for v in t.values)])
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        nullable = any(isinstance(m, mi.NoneType) for m in t.types)
        if len(members) == 1:
            out = _describe(members[0])
        else:
            parts = [_describe(m) for m in members]
            out = _Described(" | ".join(p.name for p in parts), [c for p in parts for c in p.constraints])
        if nullable:
            out.constraints.append("nullable")
        return out
    if isinstance(t, mi.ListType):
        inner = _describe(t.item_type)
        out = _Described(f"array<{inner.name}>", [f"items {c}" for c in inner.constraints])
        if t.min_length:
            out.constraints.insert(0, f"min items {t.min_length}")
        out.nested, out.suffix = inner.nested, "[]"
        return out
    if isinstance(t, mi.DictType):
        inner = _describe(t.value_type)
        out = _Described(f"map<string, {inner.name}>", [f"values {c}" for c in inner.constraints])
        out.nested, out.suffix = inner.nested, ".*"
        return out
    if isinstance(t, mi.StructType):
        return _Described("object", [], nested=t)
    if isinstance(t, mi.AnyType):
        return _Described("any", [])
    return _Described(type(t).__name__.removesuffix("Type").lower(), [])


def _rows(struct: mi.StructType, prefix: str) -> list[FieldRow]:
    out: list[FieldRow] = []
    for f in struct.fields:
        d = _describe(f.type)
        extra = list(d.constraints)
        if f.default not in (msgspec.NODEFAULT, msgspec.UNSET):
            extra.append(f"default {_json(f.default)}")
        path = prefix + f.encode_name
        out.append(FieldRow(path=path, type=d.name, required=f.required, constraints=tuple(extra)))
        if d.nested is not None:
            out.extend(_rows(d.nested, path + d.suffix + "."))
    return out


def field_rows(cls: type[Any]) -> list[FieldRow]:
    """Every field of a payload Struct, nested ones after their parent, with wire names."""
    info = mi.type_info(cls)
    if not isinstance(info, mi.StructType):
        raise TypeError(f"{cls!r} is not a msgspec Struct")
    return _rows(info, "")
