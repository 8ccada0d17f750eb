"""``bus catalog list|show|schema|export`` and ``bus validate``: exit codes and output."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from schemas import REGISTRY, catalog_json, catalog_sql, json_schema
from tests.test_cli._main import run_main

TICKET_ID = "5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f"
TENANT_UUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
DOMAIN = {"tenantId": "acme", "occurredAt": "2026-01-23T10:11:12.345Z", "ticketId": TICKET_ID}
LEGACY = {"tenantId": TENANT_UUID, "ticketId": TICKET_ID, "userId": TENANT_UUID}


def write(tmp_path: Path, doc: Any) -> str:
    """A payload file."""
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="bus"),
        pytest.param(["catalog"], id="catalog"),
        pytest.param(["catalog", "list"], id="list"),
        pytest.param(["catalog", "show"], id="show"),
        pytest.param(["catalog", "schema"], id="schema"),
        pytest.param(["catalog", "export"], id="export"),
        pytest.param(["validate"], id="validate"),
    ],
)
def test_help_everywhere(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """``--help`` prints a usage line and exits 0 at every level."""
    code, out, _ = run_main(capsys, *argv, "--help")
    assert code == 0
    assert out.startswith("usage: bus")


def test_list_prints_every_type(capsys: pytest.CaptureFixture[str]) -> None:
    """``catalog list`` prints a header and one row per event type, with ref and flags."""
    code, out, err = run_main(capsys, "catalog", "list")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["EVENT", "TYPE", "CATEGORY", "FLAGS", "SCHEMA", "REF"]
    assert len(lines) == 1 + 282
    row = next(line for line in lines if line.startswith("TICKET_CREATED "))
    assert row.split() == ["TICKET_CREATED", "Tickets", "emitted,legacy,union", "payload.TicketCreated.v1"]
    assert err == "282 event types\n"


def test_list_filters_by_category_and_status(capsys: pytest.CaptureFixture[str]) -> None:
    """``--category`` (any case) and ``--status`` narrow the list."""
    code, out, _ = run_main(capsys, "catalog", "list", "--category", "tickets", "--status", "catalog_only")
    expected = {s.event_type for s in REGISTRY if s.category == "Tickets" and s.status == "catalog_only"}
    assert code == 0
    assert {line.split()[0] for line in out.splitlines()[1:]} == expected
    assert expected


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    """``--json`` prints an array of objects with the spec's facts."""
    code, out, _ = run_main(capsys, "catalog", "list", "--json", "--category", "Billing")
    doc = json.loads(out)
    assert code == 0
    assert {d["event_type"] for d in doc} == {s.event_type for s in REGISTRY if s.category == "Billing"}
    contract = next(d for d in doc if d["event_type"] == "CONTRACT_CREATED")
    assert contract["variants"] == ["domain", "legacy"]
    assert contract["schema_ref"] == "payload.ContractCreated.v1"


def test_list_unknown_category_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown category is a usage error naming the closest one."""
    code, out, err = run_main(capsys, "catalog", "list", "--category", "Ticket")
    assert (code, out) == (2, "")
    assert err == "bus catalog list: unknown category 'Ticket'; did you mean Tickets?\n"


def test_list_bad_status_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``--status`` only takes emitted or catalog_only."""
    code, _, err = run_main(capsys, "catalog", "list", "--status", "live")
    assert code == 2
    assert "invalid choice: 'live'" in err


def test_show_union_prints_both_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    """``catalog show`` of a union prints the facts and a fields table for the domain and the legacy shape."""
    code, out, _ = run_main(capsys, "catalog", "show", "TICKET_UPDATED")
    assert code == 0
    assert out.startswith("TICKET_UPDATED: Ticket Updated\n")
    assert "publish   validates the legacy then domain shapes in order" in out
    assert "catalog shape, also the domain shape (tried second) [TicketUpdated]:" in out
    assert "legacy shape (tried first) [TicketUpdatedLegacy]:" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["FIELD", "TYPE", "REQUIRED", "CONSTRAINTS"] in rows
    assert ["occurredAt", "datetime", "yes"] in rows
    assert ["tenantId", "string", "yes", "min", "length", "1"] in rows
    assert ["tenantId", "uuid", "yes"] in rows  # the legacy side
    assert ["comment.authorType", "enum", "no", "one", "of", "client,", "internal,", "unknown"] in rows
    assert ["changes.*.previous", "any", "no"] in rows


def test_show_bus_only_shape_and_ref(capsys: pytest.CaptureFixture[str]) -> None:
    """A ref works as well as a type; a bus-only shape is shown after the catalog shape."""
    code, out, _ = run_main(capsys, "catalog", "show", "payload.ProjectClosed.v1")
    assert code == 0
    assert "bus shape (what a publish accepts) [ProjectClosedBus]:" in out
    assert ["changes.status.is_closed", "const", "yes", "=", "true"] in [line.split() for line in out.splitlines()]


def test_show_accepts_lower_case(capsys: pytest.CaptureFixture[str]) -> None:
    """Event types are matched case-insensitively."""
    code, out, _ = run_main(capsys, "catalog", "show", "ticket_created")
    assert code == 0
    assert out.startswith("TICKET_CREATED: ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["catalog", "show", "TICKET_CRATED"],
            "bus catalog show: unknown event type 'TICKET_CRATED'; did you mean TICKET_CREATED",
            id="show-type",
        ),
        pytest.param(
            ["catalog", "schema", "payload.TicketCreated.v2"],
            "bus catalog schema: unknown schema ref 'payload.TicketCreated.v2'; did you mean payload.TicketCreated.v1",
            id="schema-ref",
        ),
        pytest.param(
            ["validate", "TICKET_UPDATE", "-"],
            "bus validate: unknown event type 'TICKET_UPDATE'; did you mean TICKET_UPDATED",
            id="validate-type",
        ),
    ],
)
def test_unknown_names_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    """An unknown type or ref exits 2 with the closest names on stderr and nothing on stdout."""
    code, out, err = run_main(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(message)


def test_schema_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """``catalog schema`` prints the ref's JSON Schema, the same by type or ref."""
    code, out, _ = run_main(capsys, "catalog", "schema", "TICKET_CREATED")
    assert code == 0
    assert json.loads(out) == json_schema("TICKET_CREATED")
    _, by_ref, _ = run_main(capsys, "catalog", "schema", "payload.TicketCreated.v1")
    assert by_ref == out


def test_schema_bus_shape(capsys: pytest.CaptureFixture[str]) -> None:
    """``--shape bus`` prints the anyOf of a union."""
    code, out, _ = run_main(capsys, "catalog", "schema", "TICKET_CREATED", "--shape", "bus")
    assert code == 0
    assert [r["$ref"] for r in json.loads(out)["anyOf"]] == ["#/$defs/TicketCreatedLegacy", "#/$defs/TicketCreated"]


def test_export_json_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """``export --format json`` prints the catalog rows."""
    code, out, _ = run_main(capsys, "catalog", "export", "--format", "json")
    assert code == 0
    assert out.encode() == catalog_json()
    assert len(json.loads(out)) == 166


def test_export_sql_to_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``export --format sql -o FILE`` writes the upserts, which load into a table, and says so on stderr."""
    target = tmp_path / "catalog.sql"
    code, out, err = run_main(capsys, "catalog", "export", "--format", "sql", "-o", str(target))
    assert (code, out) == (0, "")
    assert err == f"wrote 166 rows to {target}\n"
    assert target.read_text() == catalog_sql()
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE system_event_catalog (event_type TEXT PRIMARY KEY, name TEXT, description TEXT, "
        "category TEXT, payload_schema_ref TEXT)"
    )
    db.executescript(target.read_text())
    assert db.execute("SELECT count(*) FROM system_event_catalog").fetchone() == (166,)


def test_export_all_and_jsonschema(capsys: pytest.CaptureFixture[str]) -> None:
    """``--all`` adds the bus-only types; ``--format jsonschema`` maps every ref to its schema."""
    _, out, _ = run_main(capsys, "catalog", "export", "--all")
    assert len(json.loads(out)) == 280
    code, out, _ = run_main(capsys, "catalog", "export", "--format", "jsonschema")
    schemas = json.loads(out)
    assert code == 0
    assert len(schemas) == 166
    assert schemas["payload.TicketCreated.v1"] == json_schema("TICKET_CREATED")


def test_export_unwritable_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A path that cannot be written exits 2 with the reason."""
    code, _, err = run_main(capsys, "catalog", "export", "-o", str(tmp_path / "missing-dir" / "x.json"))
    assert code == 2
    assert err.startswith("bus catalog export: cannot write ")


def test_export_bad_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``--format`` is json, sql or jsonschema."""
    code, _, err = run_main(capsys, "catalog", "export", "--format", "yaml")
    assert code == 2
    assert "invalid choice: 'yaml'" in err


@pytest.mark.parametrize(
    ("doc", "variant"),
    [pytest.param(DOMAIN, "domain", id="domain"), pytest.param(LEGACY, "legacy", id="legacy")],
)
def test_validate_valid_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, doc: Any, variant: str) -> None:
    """A valid payload exits 0 with one line naming the variant that matched."""
    code, out, err = run_main(capsys, "validate", "TICKET_UPDATED", write(tmp_path, doc))
    assert (code, out, err) == (0, f"valid ({variant})\n", "")


def test_validate_invalid_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An invalid payload exits 1; stderr names the event type, the path and the rule."""
    doc = {**DOMAIN, "occurredAt": "2026-01-23T10:11:12.345+00:00"}
    code, out, err = run_main(capsys, "validate", "TICKET_UPDATED", write(tmp_path, doc))
    assert (code, out) == (1, "")
    assert err == (
        "bus validate: TICKET_UPDATED: invalid $.payload.occurredAt: "
        "Expected an ISO-8601 UTC timestamp ending in Z (no offset, not naive)\n"
    )


def test_validate_reads_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``-`` reads the payload from stdin."""
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps({**DOMAIN, "changes": {"status": {"new": 1}}}).encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    code, out, _ = run_main(capsys, "validate", "TICKET_UPDATED", "-")
    assert (code, out) == (0, "valid (domain)\n")


def test_validate_nested_path_in_an_array(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An error inside an array names the index (catalog shape: the bus shape drops this field)."""
    doc = {
        "tenantId": "acme",
        "occurredAt": "2026-01-23T10:11:12.345Z",
        "runId": TICKET_ID,
        "selectionMode": "due_service_periods",
        "windowIdentity": "mixed_execution_windows",
        "executionWindowKinds": ["client_cadence_window", "weekly"],
    }
    code, _, err = run_main(capsys, "validate", "--catalog", "RECURRING_BILLING_RUN_STARTED", write(tmp_path, doc))
    assert code == 1
    assert "invalid $.payload.executionWindowKinds[1]: Invalid enum value 'weekly'" in err


def test_validate_capacity_threshold_date_is_any_non_empty_string(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """CAPACITY_THRESHOLD_REACHED.date is a non-empty string, not a date: "next tuesday" is valid, "" is not."""
    doc = {
        "tenantId": "acme",
        "occurredAt": "2026-01-23T10:11:12.345Z",
        "teamId": TICKET_ID,
        "date": "next tuesday",
        "capacityLimit": 10,
        "currentBooked": 11,
    }
    code, out, err = run_main(capsys, "validate", "CAPACITY_THRESHOLD_REACHED", write(tmp_path, doc))
    assert (code, err) == (0, "") and out.startswith("valid")
    code, _, err = run_main(capsys, "validate", "CAPACITY_THRESHOLD_REACHED", write(tmp_path, {**doc, "date": ""}))
    assert code == 1 and "invalid $.payload.date" in err


@pytest.mark.parametrize(
    ("event_type", "field", "values", "path"),
    [
        pytest.param("OUTBOUND_EMAIL_QUEUED", "to", ["not-an-email"], "$.payload.to[0]", id="queued-to"),
        pytest.param("OUTBOUND_EMAIL_QUEUED", "cc", ["a@b.co", "bad"], "$.payload.cc[1]", id="queued-cc"),
        pytest.param("INBOUND_EMAIL_REPLY_RECEIVED", "to", ["not-an-email"], "$.payload.to[0]", id="reply-to"),
    ],
)
def test_validate_email_list_items_must_be_emails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, event_type: str, field: str, values: list[str], path: str
) -> None:
    """Email address lists check each item (item_format email): the error names the item's path."""
    doc: dict[str, Any] = {
        "tenantId": "acme",
        "occurredAt": "2026-01-23T10:11:12.345Z",
        "messageId": TICKET_ID,
        "from": "desk@example.com",
        "to": ["ok@example.com"],
        "provider": "smtp",
    }
    if event_type == "INBOUND_EMAIL_REPLY_RECEIVED":  # a string message id, plus the thread and match
        doc |= {"messageId": "<m1@example.com>", "threadId": "thread-1", "matchedBy": "header"}
    code, _, err = run_main(capsys, "validate", event_type, write(tmp_path, doc))
    assert (code, err) == (0, ""), err
    code, _, err = run_main(capsys, "validate", event_type, write(tmp_path, {**doc, field: values}))
    assert code == 1
    assert err.startswith(f"bus validate: {event_type}: invalid {path}: ") and "email" in err


def test_validate_catalog_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--catalog`` checks the catalog shape: a legacy payload fails there."""
    code, out, err = run_main(capsys, "validate", "--catalog", "TICKET_UPDATED", write(tmp_path, LEGACY))
    assert (code, out) == (1, "")
    assert "TICKET_UPDATED: invalid $.payload.occurredAt: required field is missing" in err
    code, out, _ = run_main(capsys, "validate", "--catalog", "payload.TicketUpdated.v1", write(tmp_path, DOMAIN))
    assert (code, out) == (0, "valid (catalog)\n")


def test_validate_malformed_json_is_invalid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Bytes that are not JSON exit 1 with a malformed-JSON message."""
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    code, _, err = run_main(capsys, "validate", "TICKET_UPDATED", str(path))
    assert code == 1
    assert "TICKET_UPDATED: invalid $.payload: JSON is malformed" in err


def test_validate_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A file that cannot be read exits 2 with the reason."""
    code, out, err = run_main(capsys, "validate", "TICKET_UPDATED", str(tmp_path / "nope.json"))
    assert (code, out) == (2, "")
    assert err.startswith("bus validate: cannot read ")
    assert "No such file or directory" in err


def test_validate_needs_two_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing FILE argument is an argparse usage error (exit 2)."""
    code, _, err = run_main(capsys, "validate", "TICKET_UPDATED")
    assert code == 2
    assert "the following arguments are required: FILE|-" in err


@pytest.mark.parametrize("shape", ["bus", "catalog"])
def test_example_piped_into_validate_is_valid_for_every_type(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    """``bus catalog example T | bus validate T -`` exits 0 for each of the 282 types (both shapes)."""
    valid = 0
    for spec in REGISTRY:
        code, out, err = run_main(capsys, "catalog", "example", spec.event_type, "--shape", shape)
        assert (code, err) == (0, ""), err
        stdin = io.TextIOWrapper(io.BytesIO(out.encode()))
        monkeypatch.setattr("sys.stdin", stdin)
        argv = ["validate", *(["--catalog"] if shape == "catalog" else []), spec.event_type, "-"]
        code, out, err = run_main(capsys, *argv)
        assert (code, err) == (0, ""), f"{spec.event_type}: {err}"
        valid += out.startswith("valid")
    assert valid == len(REGISTRY) == 282


def test_example_of_an_unknown_type_suggests_names(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown type exits 2 and suggests the closest names, like the other catalog commands."""
    code, out, err = run_main(capsys, "catalog", "example", "TICKET_CREATD")
    assert (code, out) == (2, "") and "TICKET_CREATED" in err
