"""``bus catalog list|show|schema|example|export`` and ``bus validate``: the event catalog from a shell.

Exit codes: 0 ok, 1 an invalid payload (``validate``), 2 a usage error (bad flags, an unknown
type/ref/category with the closest names, an unreadable file). Data goes to stdout, errors to
stderr, so ``bus catalog schema TICKET_CREATED > ticket_created.json`` stays clean.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas import (
    REGISTRY,
    EventSpec,
    EventValidationError,
    UnknownEventTypeError,
    UnknownSchemaRefError,
    catalog_json,
    catalog_rows,
    catalog_sql,
    example_payload,
    field_rows,
    json_schema,
    json_schemas,
)

from .._asyncapi import asyncapi_document
from ..loader import package_version
from ._common import table

__all__ = ["register"]

_TYPE_OR_REF = "event type (TICKET_CREATED) or schema ref (payload.TicketCreated.v1)"
_KIND_TEXT = {
    "catalog": "catalog shape",
    "bus": "bus shape (what a publish accepts)",
    "legacy": "legacy shape (tried first)",
    "domain": "domain shape (tried second)",
}


def _fail(command: str, message: str, code: int = 2) -> int:
    print(f"bus {command}: {message}", file=sys.stderr)
    return code


def _resolve(name: str) -> EventSpec:
    """Accept an event type (any case) or a schema ref."""
    if name.startswith("payload."):
        return REGISTRY.by_ref(name)
    return REGISTRY.get(name.upper() if name.upper() in REGISTRY else name)


def _flags(spec: EventSpec) -> str:
    flags: list[str] = [spec.status]
    if spec.legacy:
        flags.append("legacy")
    if spec.bus_only:
        flags.append("bus-only")
    if spec.deprecated:
        flags.append("removed")
    if spec.is_union:
        flags.append("union")
    return ",".join(flags)


def _spec_json(spec: EventSpec) -> dict[str, Any]:
    return {
        "event_type": spec.event_type,
        "name": spec.name,
        "description": spec.description,
        "category": spec.category,
        "status": spec.status,
        "legacy": spec.legacy,
        "in_catalog": spec.in_catalog,
        "deprecated": spec.deprecated,
        "schema_ref": spec.schema_ref,
        "variants": [kind for kind, _ in spec.variants],
    }


def _write(data: bytes | str) -> None:
    sys.stdout.buffer.write(data if isinstance(data, bytes) else data.encode())
    sys.stdout.flush()


def _list(args: argparse.Namespace) -> int:
    specs = list(REGISTRY)
    if args.category:
        categories = sorted({s.category for s in specs})
        wanted = {c for c in categories if c.lower() == args.category.lower()}
        if not wanted:
            lowered = {c.lower(): c for c in categories}
            close = [lowered[c] for c in difflib.get_close_matches(args.category.lower(), lowered, n=3, cutoff=0.7)]
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(categories)}"
            return _fail("catalog list", f"unknown category {args.category!r}{hint}")
        specs = [s for s in specs if s.category in wanted]
    if args.status:
        specs = [s for s in specs if s.status == args.status]
    if args.json:
        _write(msgspec.json.format(msgspec.json.encode([_spec_json(s) for s in specs]), indent=2) + b"\n")
        return 0
    rows = [(s.event_type, s.category, _flags(s), s.schema_ref) for s in specs]
    print(table(rows, ("EVENT TYPE", "CATEGORY", "FLAGS", "SCHEMA REF")))
    print(f"{len(specs)} event types", file=sys.stderr)
    return 0


def _shapes(spec: EventSpec) -> list[tuple[str, type[Any]]]:
    """The catalog shape, then every bus shape that is a different Struct."""
    out: list[tuple[str, type[Any]]] = [("catalog", spec.catalog_type)]
    for kind, cls in spec.variants:
        if cls is spec.catalog_type:
            out[0] = ("catalog", cls) if kind == "catalog" else (f"catalog/{kind}", cls)
        else:
            out.append((kind, cls))
    return out


def _show(args: argparse.Namespace) -> int:
    spec = _resolve(args.name)
    accepts = " then ".join(kind for kind, _ in spec.variants)
    print(f"{spec.event_type}: {spec.name}")
    print(f"  {spec.description}")
    print(f"  ref       {spec.schema_ref}")
    print(f"  category  {spec.category}")
    print(f"  flags     {_flags(spec)}{', unknown keys kept' if spec.passthrough else ''}")
    print(f"  publish   validates the {accepts} shape{'s in order' if spec.is_union else ''}")
    for kind, cls in _shapes(spec):
        label = ", also the ".join(_KIND_TEXT[k] for k in kind.split("/"))
        print(f"\n{label} [{cls.__name__}]:")
        rows = [(r.path, r.type, "yes" if r.required else "no", ", ".join(r.constraints)) for r in field_rows(cls)]
        if rows:
            print(table(rows, ("FIELD", "TYPE", "REQUIRED", "CONSTRAINTS"), indent="  "))
        else:
            print("  (no fields)")
    return 0


def _schema(args: argparse.Namespace) -> int:
    spec = _resolve(args.name)
    schema = json_schema(spec.event_type, shape=args.shape)
    _write(msgspec.json.format(msgspec.json.encode(schema), indent=2) + b"\n")
    return 0


def _example(args: argparse.Namespace) -> int:
    spec = _resolve(args.name)
    payload = example_payload(spec.event_type, shape=args.shape, full=not args.required_only)
    _write(msgspec.json.format(msgspec.json.encode(payload), indent=2) + b"\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    rows = catalog_rows(include_bus_only=args.all)
    count, what = len(rows), "rows"
    if args.format == "json":
        data = catalog_json(rows)
    elif args.format == "sql":
        data = catalog_sql(rows).encode()
    elif args.format == "asyncapi":
        doc = asyncapi_document(version=package_version())
        data = msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"
        count, what = len(doc["components"]["messages"]) - 1, "event types (AsyncAPI 3.0)"
    else:
        schemas = json_schemas()
        if not args.all:
            wanted = {r.payload_schema_ref for r in rows}
            schemas = {ref: s for ref, s in schemas.items() if ref in wanted}
        data = msgspec.json.format(msgspec.json.encode(schemas), indent=2) + b"\n"
        count, what = len(schemas), "schemas"
    if args.output in (None, "-"):
        _write(data)
        return 0
    try:
        Path(args.output).write_bytes(data)
    except OSError as exc:
        return _fail("catalog export", f"cannot write {args.output}: {exc.strerror or exc}")
    print(f"wrote {count} {what} to {args.output}", file=sys.stderr)
    return 0


def _validate(args: argparse.Namespace) -> int:
    spec = _resolve(args.event_type)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        return _fail("validate", f"cannot read {args.file}: {exc.strerror or exc}")
    try:
        if args.catalog:
            REGISTRY.decode_catalog_payload(spec.event_type, data)
            variant = "catalog"
        else:
            variant = REGISTRY.decode_payload(spec.event_type, data).variant
    except EventValidationError as exc:
        return _fail("validate", str(exc), code=1)
    print(f"valid ({variant})")
    return 0


def _guarded(command: str, handler: Any) -> Any:
    """Turn an unknown type or ref into a usage error with the closest names (exit 2)."""

    def run(args: argparse.Namespace) -> int:
        try:
            code: int = handler(args)
        except (UnknownEventTypeError, UnknownSchemaRefError) as exc:
            return _fail(command, str(exc))
        return code

    return run


def register(sub: Any) -> None:
    """Add ``catalog`` and ``validate`` to the CLI."""
    catalog = sub.add_parser(
        "catalog",
        help="browse and export the event catalog",
        description="Browse the event catalog (282 event types) and export it as JSON, SQL or JSON Schema.",
    )
    csub = catalog.add_subparsers(dest="catalog_command", metavar="COMMAND")
    csub.required = True

    lst = csub.add_parser("list", help="list event types", description="List event types, grouped by domain.")
    lst.add_argument("--category", help="only this category (case-insensitive), e.g. Tickets")
    lst.add_argument("--status", choices=["emitted", "catalog_only"], help="only types with this status")
    lst.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    lst.set_defaults(handler=_guarded("catalog list", _list))

    show = csub.add_parser(
        "show",
        help="show one event type and its fields",
        description="Show an event type: names, flags, and a fields table (wire name, type, required, "
        "constraints) for each payload shape; union types show the legacy and the domain shape.",
    )
    show.add_argument("name", metavar="TYPE|REF", help=_TYPE_OR_REF)
    show.set_defaults(handler=_guarded("catalog show", _show))

    schema = csub.add_parser(
        "schema",
        help="print the JSON Schema of an event type or ref",
        description="Print the JSON Schema (draft 2020-12, wire names, constraints) of one payload to stdout.",
    )
    schema.add_argument("name", metavar="TYPE|REF", help=_TYPE_OR_REF)
    schema.add_argument(
        "--shape",
        choices=["catalog", "bus"],
        default="catalog",
        help="catalog: the workflow catalog's shape (default); bus: what a publish accepts (anyOf for unions)",
    )
    schema.set_defaults(handler=_guarded("catalog schema", _schema))

    example = csub.add_parser(
        "example",
        help="print a valid example payload of an event type",
        description="Print a valid example payload (JSON) of one event type to stdout, to start from; "
        "`bus catalog example T | bus validate T -` accepts it, and `bus publish T --payload -` reads it.",
    )
    example.add_argument("name", metavar="TYPE|REF", help=_TYPE_OR_REF)
    example.add_argument(
        "--shape",
        choices=["bus", "catalog"],
        default="bus",
        help="bus: the first shape a publish accepts (default); catalog: the workflow catalog's shape",
    )
    example.add_argument("--required-only", action="store_true", help="leave the optional fields out")
    example.set_defaults(handler=_guarded("catalog example", _example))

    export = csub.add_parser(
        "export",
        help="export the catalog rows (JSON, SQL upserts) or every JSON Schema",
        description="Export the system_event_catalog rows (event_type, name, description, category, "
        "payload_schema_ref) as JSON or as idempotent SQL upserts, every ref's JSON Schema, or the AsyncAPI 3.0 "
        "document of the bus (every type, always).",
    )
    export.add_argument(
        "--format",
        choices=["json", "sql", "jsonschema", "asyncapi"],
        default="json",
        help="default: json; asyncapi: one AsyncAPI 3.0 document of every channel stream, the workflow stream, "
        "each type's message (bus and catalog payload schemas), the fan-out and the consumer groups",
    )
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    export.add_argument("--all", action="store_true", help="include the bus-only types too")
    export.set_defaults(handler=_guarded("catalog export", _export))

    validate = sub.add_parser(
        "validate",
        help="validate a JSON payload against an event type",
        description="Validate a JSON payload file against what the bus accepts for TYPE. Exit 0 and "
        "'valid (variant)' on stdout; 1 and the error (event type, path, rule) on stderr when invalid; "
        "2 on a usage error such as an unknown type.",
    )
    validate.add_argument("event_type", metavar="TYPE|REF", help=_TYPE_OR_REF)
    validate.add_argument("file", metavar="FILE|-", help="payload JSON file, or - for stdin")
    validate.add_argument("--catalog", action="store_true", help="check the catalog shape instead of the bus shapes")
    validate.set_defaults(handler=_guarded("validate", _validate))
