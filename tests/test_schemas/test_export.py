"""Export: JSON Schema per ref (checked against the examples), catalog rows as JSON and SQL."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import msgspec
import pytest

from schemas import (
    CATALOG_TABLE,
    JSON_SCHEMA_DIALECT,
    REGISTRY,
    CatalogRow,
    UnknownEventTypeError,
    UnknownSchemaRefError,
    catalog_json,
    catalog_rows,
    catalog_sql,
    field_rows,
    json_schema,
    json_schemas,
    sql_literal,
)

from ._examples import ALL_SHAPES, DATETIME, ROWS_BY_TYPE, Shape, example, leaves, replace, struct_of
from ._jsonschema import errors

CATALOG_SHAPES = [pytest.param(s, id=s.id) for s in ALL_SHAPES if s.kind == "catalog"]


def table(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """The catalog table's rows, sorted."""
    return db.execute(
        f"SELECT event_type, name, description, category, payload_schema_ref FROM {CATALOG_TABLE} ORDER BY 1"
    ).fetchall()


def fresh_db() -> sqlite3.Connection:
    """An in-memory stand-in for the reference's table (surrogate key, unique event_type)."""
    db = sqlite3.connect(":memory:")
    db.execute(
        f"CREATE TABLE {CATALOG_TABLE} (event_id INTEGER PRIMARY KEY, event_type TEXT NOT NULL UNIQUE, "
        "name TEXT NOT NULL, description TEXT, category TEXT, payload_schema_ref TEXT)"
    )
    return db


def test_every_ref_has_a_schema() -> None:
    """json_schemas() has one draft 2020-12 schema per ref (282), each titled with its display name."""
    schemas = json_schemas()
    assert set(schemas) == {spec.schema_ref for spec in REGISTRY}
    for ref, schema in schemas.items():
        spec = REGISTRY.by_ref(ref)
        assert schema["$schema"] == JSON_SCHEMA_DIALECT
        assert (schema["$id"], schema["title"], schema["description"]) == (ref, spec.name, spec.description)
        assert json.loads(json.dumps(schema)) == schema  # plain JSON


@pytest.mark.parametrize("shape", CATALOG_SHAPES)
def test_schema_uses_wire_names_and_required(shape: Shape) -> None:
    """Top-level properties are the catalog's wire names; ``required`` lists exactly the required ones."""
    schema = json_schema(shape.event_type)
    assert schema["type"] == "object"
    assert list(schema["properties"]) == [f["name"] for f in shape.fields]
    assert schema.get("required", []) == [f["name"] for f in shape.fields if f["required"]]


@pytest.mark.parametrize("shape", CATALOG_SHAPES)
def test_schema_accepts_the_valid_examples(shape: Shape) -> None:
    """A form builder validating with the schema accepts what the decoder accepts (full and minimal)."""
    schema = json_schema(shape.event_type)
    assert errors(schema, example(shape.fields)) == []
    assert errors(schema, example(shape.fields, full=False)) == []


@pytest.mark.parametrize("shape", CATALOG_SHAPES)
def test_schema_carries_the_constraints(shape: Shape) -> None:
    """The schema rejects what the decoder rejects: bad uuids, ``+00:00``/naive datetimes, unknown enum values."""
    schema = json_schema(shape.event_type)
    full = example(shape.fields)
    bad = {"uuid": ["not-a-uuid"], "datetime": [DATETIME.replace("Z", "+00:00"), DATETIME[:-1]], "enum": ["NOPE"]}
    for leaf in leaves(shape.fields):
        for value in bad.get(leaf.fact["type"], []):
            assert errors(schema, replace(full, leaf.steps, value)) != [], (leaf.steps, value)


def test_schema_formats_and_descriptions() -> None:
    """uuid and datetime fields carry a ``format`` a form builder can render."""
    props = json_schema("TICKET_UPDATED")["properties"]
    assert props["ticketId"]["format"] == "uuid"
    assert props["occurredAt"]["format"] == "date-time"
    assert props["tenantId"] == {"type": "string", "minLength": 1}
    assert props["changes"]["additionalProperties"] == {"$ref": "#/$defs/FieldChange"}


def test_schema_by_ref_equals_schema_by_type() -> None:
    """A ref and its event type give the same schema."""
    assert json_schema("payload.TicketCreated.v1") == json_schema("TICKET_CREATED")


def test_bus_shape_of_a_union_is_any_of_in_order() -> None:
    """``shape='bus'`` of a union is an anyOf of both shapes in the order they are tried."""
    schema = json_schema("TICKET_CREATED", shape="bus")
    assert schema["anyOf"] == [{"$ref": "#/$defs/TicketCreatedLegacy"}, {"$ref": "#/$defs/TicketCreated"}]
    assert schema["x-variants"] == ["legacy", "domain"]
    legacy = {"tenantId": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "ticketId": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}
    assert errors(schema, {**legacy, "userId": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}) == []
    assert errors(schema, legacy) == ["$: matches no anyOf branch"]


@pytest.mark.parametrize("shape", [pytest.param(s, id=s.id) for s in ALL_SHAPES if s.kind == "bus"])
def test_bus_shape_schema_accepts_the_bus_example(shape: Shape) -> None:
    """The bus-only shape's schema accepts its valid example."""
    assert errors(json_schema(shape.event_type, shape="bus"), example(shape.fields)) == []


def test_unknown_names_raise_with_suggestions() -> None:
    """An unknown type or ref raises the registry's lookup errors."""
    with pytest.raises(UnknownEventTypeError, match="did you mean TICKET_CREATED"):
        json_schema("TICKET_CREATE")
    with pytest.raises(UnknownSchemaRefError):
        json_schema("payload.Nope.v1")


def test_catalog_rows_are_the_166_catalog_types() -> None:
    """Default rows: the workflow catalog's types (no bus-only, no removed COMPANY_*), sorted, with refs."""
    rows = catalog_rows()
    assert len(rows) == 166
    assert [r.event_type for r in rows] == sorted(t for t, row in ROWS_BY_TYPE.items() if row["in_catalog"])
    ticket = next(r for r in rows if r.event_type == "TICKET_CREATED")
    assert ticket == CatalogRow(
        event_type="TICKET_CREATED",
        name="Ticket Created",
        description=REGISTRY.get("TICKET_CREATED").description,
        category="Tickets",
        payload_schema_ref="payload.TicketCreated.v1",
    )
    with_bus = catalog_rows(include_bus_only=True)
    assert len(with_bus) == 280
    assert not {"COMPANY_CREATED", "COMPANY_UPDATED"} & {r.event_type for r in with_bus}


def test_catalog_json_is_an_array_of_rows() -> None:
    """catalog_json() is a JSON array of objects whose keys are the table's columns."""
    doc = json.loads(catalog_json())
    assert len(doc) == 166
    assert list(doc[0]) == ["event_type", "name", "description", "category", "payload_schema_ref"]
    assert msgspec.convert(doc, list[CatalogRow]) == catalog_rows()


def test_catalog_sql_loads_and_is_idempotent() -> None:
    """The SQL inserts every row; running it again changes nothing; a drifted row is put back."""
    sql = catalog_sql()
    db = fresh_db()
    db.executescript(sql)
    expected = [tuple(msgspec.structs.astuple(r)) for r in catalog_rows()]
    assert table(db) == expected
    before = db.total_changes
    db.executescript(sql)
    assert db.total_changes == before  # equal rows are left untouched
    db.execute(f"UPDATE {CATALOG_TABLE} SET name = 'stale', category = NULL WHERE event_type = 'TICKET_CREATED'")
    db.executescript(sql)
    assert table(db) == expected


def test_catalog_sql_shape() -> None:
    """One transaction, one INSERT ... ON CONFLICT (event_type) DO UPDATE over all rows."""
    sql = catalog_sql()
    assert (
        sql.count("INSERT INTO system_event_catalog AS t (event_type, name, description, category, payload_schema_ref)")
        == 1
    )
    assert "ON CONFLICT (event_type) DO UPDATE SET" in sql
    assert sql.splitlines()[2] == "BEGIN;" and sql.rstrip().endswith("COMMIT;")
    assert catalog_sql([]).splitlines()[-1] == "COMMIT;"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        pytest.param("plain", "'plain'", id="plain"),
        pytest.param("O'Brien's", "'O''Brien''s'", id="quotes"),
        pytest.param("a\\b", "E'a\\\\b'", id="backslash"),
        pytest.param("it's a\\b", "E'it''s a\\\\b'", id="both"),
        pytest.param("line1\nline2; DROP TABLE x; --", "'line1\nline2; DROP TABLE x; --'", id="injection"),
        pytest.param(None, "NULL", id="null"),
    ],
)
def test_sql_literal_escaping(value: str | None, literal: str) -> None:
    """Quotes are doubled, backslashes go into an E'' literal, None is NULL."""
    assert sql_literal(value) == literal


def test_sql_literal_rejects_nul() -> None:
    """NUL cannot live in a PostgreSQL text value: refused, not truncated."""
    with pytest.raises(ValueError, match="NUL"):
        sql_literal("a\x00b")


def test_hostile_text_round_trips_through_sqlite() -> None:
    """A row full of quotes, semicolons and comment markers is stored exactly (no injection)."""
    row = CatalogRow(
        event_type="X_EVENT",
        name="Robert'); DROP TABLE system_event_catalog; --",
        description='it\'s "quoted" /* not a comment */ -- nor this',
        category="O'Reilly",
        payload_schema_ref="payload.XEvent.v1",
    )
    db = fresh_db()
    db.executescript(catalog_sql([row]))
    assert table(db) == [tuple(msgspec.structs.astuple(row))]


def test_table_name_must_be_an_identifier() -> None:
    """The table name is checked, since identifiers cannot be escaped like values."""
    assert "INSERT INTO public.system_event_catalog AS t" in catalog_sql(table="public.system_event_catalog")
    with pytest.raises(ValueError, match="not a plain SQL table name"):
        catalog_sql(table="x; DROP TABLE y")


def test_field_rows_flatten_nested_shapes() -> None:
    """field_rows lists wire paths with types, required flags and constraints, nested ones after their parent."""
    rows = {r.path: r for r in field_rows(dict(REGISTRY.get("TICKET_UPDATED").variants)["legacy"])}
    assert rows["tenantId"].type == "uuid" and rows["tenantId"].required
    assert rows["comment"].type == "object" and not rows["comment"].required
    assert rows["comment.authorType"].constraints == ("one of client, internal, unknown",)
    assert rows["suppressContactNotifications"].constraints == ("default false",)
    catalog = {r.path: r for r in field_rows(REGISTRY.get("TICKET_UPDATED").catalog_type)}
    assert catalog["changes"].type == "map<string, object>"
    assert "changes.*.previous" in catalog
    assert catalog["tenantId"].constraints == ("min length 1",)


def fact_rows(fields: list[dict[str, Any]], prefix: str = "") -> dict[str, tuple[str, bool]]:
    """Expected (type, required) per wire path, straight from the catalog facts."""
    out: dict[str, tuple[str, bool]] = {}
    for f in fields:
        path = prefix + f["name"]
        kind = f["type"]
        if "const" in f or (kind == "enum" and len(f["enum"]) == 1):
            kind = "const"  # a one-value enum is a constant to a reader
        elif kind == "string" and f.get("format"):
            kind = f["format"]
        elif kind == "array":
            kind = "array<" + ("object" if f["items"] == "object" else f.get("item_format") or f["items"]) + ">"
        elif kind == "object" and f.get("record"):
            kind = "map<string, " + f["values"] + ">"
        out[path] = (kind, f["required"])
        if f["type"] == "array" and f["items"] == "object":
            out |= fact_rows(f["item_fields"], path + "[].")
        elif f["type"] == "object" and "fields" in f:
            out |= fact_rows(f["fields"], path + ".")
        elif f["type"] == "object" and "value_fields" in f:
            out |= fact_rows(f["value_fields"], path + ".*.")
    return out


@pytest.mark.parametrize("shape", [pytest.param(s, id=s.id) for s in ALL_SHAPES])
def test_field_rows_match_the_catalog_facts(shape: Shape) -> None:
    """Each shape's field table lists exactly the facts' fields (nested too), with their type and required flag."""
    rows = field_rows(struct_of(shape))
    assert {r.path: (r.type, r.required) for r in rows} == fact_rows(shape.fields)
