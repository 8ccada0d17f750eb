"""Typed payloads, envelopes and the schema registry of the reference event catalog.

Every event type the reference bus knows has a frozen msgspec Struct in :mod:`schemas.events`;
:data:`REGISTRY` maps event types and ``payload.<PascalCase>.v1`` refs to them and validates.
This package imports nothing else of the project.
"""

from __future__ import annotations

from . import events
from ._common import FieldChange, Payload
from ._envelope import (
    WORKFLOW_FIELDS,
    WORKFLOW_OPTIONAL_FIELDS,
    WORKFLOW_PAYLOAD_KEYS,
    BusEvent,
    WorkflowEvent,
    decode_bus_event,
    encode_bus_event,
    workflow_from_payload,
    workflow_values,
)
from ._errors import EventValidationError, SchemaError, UnknownEventTypeError, UnknownSchemaRefError
from ._examples import ExampleShape, example_payload
from ._export import (
    CATALOG_TABLE,
    JSON_SCHEMA_DIALECT,
    CatalogRow,
    FieldRow,
    catalog_json,
    catalog_rows,
    catalog_sql,
    field_rows,
    json_schema,
    json_schemas,
    payload_components,
    sql_literal,
)
from ._registry import REGISTRY, Registry, TypedPayload, schema_ref_for, translate_validation_error
from ._spec import EventSpec, VariantKind
from ._types import (
    DATE_PATTERN,
    DATETIME_PATTERN,
    EMAIL_PATTERN,
    URL_PATTERN,
    UUID_PATTERN,
    ActorType,
    Email,
    IsoDate,
    IsoDateTime,
    NonEmptyStr,
    Url,
    Uuid,
    is_uuid,
    parse_iso,
    to_iso,
    utc_now_iso,
)

__all__ = [
    "CATALOG_TABLE",
    "DATETIME_PATTERN",
    "DATE_PATTERN",
    "EMAIL_PATTERN",
    "JSON_SCHEMA_DIALECT",
    "REGISTRY",
    "URL_PATTERN",
    "UUID_PATTERN",
    "WORKFLOW_FIELDS",
    "WORKFLOW_OPTIONAL_FIELDS",
    "WORKFLOW_PAYLOAD_KEYS",
    "ActorType",
    "BusEvent",
    "CatalogRow",
    "Email",
    "EventSpec",
    "EventValidationError",
    "ExampleShape",
    "FieldChange",
    "FieldRow",
    "IsoDate",
    "IsoDateTime",
    "NonEmptyStr",
    "Payload",
    "Registry",
    "SchemaError",
    "TypedPayload",
    "UnknownEventTypeError",
    "UnknownSchemaRefError",
    "Url",
    "Uuid",
    "VariantKind",
    "WorkflowEvent",
    "catalog_json",
    "catalog_rows",
    "catalog_sql",
    "decode_bus_event",
    "encode_bus_event",
    "events",
    "example_payload",
    "field_rows",
    "is_uuid",
    "json_schema",
    "json_schemas",
    "parse_iso",
    "payload_components",
    "schema_ref_for",
    "sql_literal",
    "to_iso",
    "translate_validation_error",
    "utc_now_iso",
    "workflow_from_payload",
    "workflow_values",
]
