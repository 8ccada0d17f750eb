"""The AsyncAPI 3.0 document: valid against the official schema, every type, fan-out and groups as operations."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bus import WORKFLOW_STREAM, Keys
from bus._asyncapi import asyncapi_document
from bus.routing import EMAIL_EVENT_TYPES, NOTIFICATION_EVENT_TYPES
from schemas import REGISTRY, example_payload

SCHEMA = Path(__file__).parents[1] / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"
FANOUT = {"internal-notifications": NOTIFICATION_EVENT_TYPES, "emailservice::v7": EMAIL_EVENT_TYPES}


@cache
def document() -> dict[str, Any]:
    return asyncapi_document(version="1.2.3")  # the fan-out of bus.routing


def test_the_document_validates_against_the_asyncapi_3_schema() -> None:
    """jsonschema finds no error against the vendored official AsyncAPI 3.0.0 schema."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document())]
    assert errors == []
    broken = {**document(), "operations": {"x": {"channel": {"$ref": "#/channels/workflow"}}}}  # no action
    assert list(validator.iter_errors(broken))  # the check bites


def test_every_type_has_a_message_and_its_channels() -> None:
    """282 messages; a channel per global type, per fan-out copy, plus the workflow stream."""
    doc = document()
    types = {spec.event_type for spec in REGISTRY}
    assert set(doc["components"]["messages"]) == types | {"WorkflowEntry"} and len(types) == 282
    assert len(doc["channels"]) == 282 + len(NOTIFICATION_EVENT_TYPES) + len(EMAIL_EVENT_TYPES) + 1
    assert doc["channels"]["workflow"]["address"] == WORKFLOW_STREAM
    assert doc["info"]["version"] == "1.2.3"


def test_ticket_created_by_hand() -> None:
    """TICKET_CREATED: three channel copies as send operations, its union payload, its groups."""
    doc = document()
    keys = Keys()
    message = doc["components"]["messages"]["TICKET_CREATED"]
    envelope = message["payload"]
    assert envelope["properties"]["eventType"] == {"type": "string", "const": "TICKET_CREATED"}
    assert envelope["properties"]["payload"] == {
        "anyOf": [{"$ref": "#/components/schemas/TicketCreatedLegacy"}, {"$ref": "#/components/schemas/TicketCreated"}]
    }
    assert message["x-catalog-payload"] == {"$ref": "#/components/schemas/TicketCreated"}
    assert message["x-schema-ref"] == "payload.TicketCreated.v1"
    email = doc["channels"]["emailservice--v7.TICKET_CREATED"]
    assert email["address"] == keys.stream("emailservice::v7", "TICKET_CREATED")
    assert email["x-dead-letter"] == email["address"] + ":dead-letter"
    send = doc["operations"]["send.global.TICKET_CREATED"]
    assert send["action"] == "send"
    assert send["x-fanout"] == ["global", "internal-notifications", "emailservice::v7"]
    assert doc["operations"]["receive.internal-notifications.TICKET_CREATED"]["x-consumer-group"] == "event-processors"
    assert doc["operations"]["receive.workflow"]["x-consumer-group"] == "workflow-runtime-v2"
    assert "send.emailservice--v7.ASSET_CREATED" not in doc["operations"]  # not an email type


def _validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    """A validator of ``schema`` whose ``#/components/...`` refs resolve inside the document."""
    return jsonschema.Draft7Validator({**schema, "components": document()["components"]})


@pytest.mark.parametrize("event_type", [spec.event_type for spec in REGISTRY])
def test_the_embedded_schemas_accept_each_types_example_and_refuse_a_bad_one(event_type: str) -> None:
    """The message's bus and catalog payload schemas accept the type's example; a number as tenantId is refused."""
    message = document()["components"]["messages"][event_type]
    bus_shape = _validator(message["payload"]["properties"]["payload"])
    catalog = _validator(message["x-catalog-payload"])
    bus_example = example_payload(event_type)
    assert list(bus_shape.iter_errors(bus_example)) == []
    assert list(catalog.iter_errors(example_payload(event_type, shape="catalog"))) == []
    if "tenantId" in bus_example:
        assert list(bus_shape.iter_errors({**bus_example, "tenantId": 7}))


def test_default_fanout_is_the_routing_table() -> None:
    """Without ``fanout`` the document routes by bus.routing: the same as passing its two sets."""
    assert document() == asyncapi_document(fanout=FANOUT, version="1.2.3")


def test_the_cli_writes_the_document(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``bus catalog export --format asyncapi -o FILE`` writes the same valid document (282 types)."""
    from bus.cli import main

    out = tmp_path / "asyncapi.json"
    assert main(["catalog", "export", "--format", "asyncapi", "-o", str(out)]) == 0
    written = json.loads(out.read_text())
    assert "282 event types" in capsys.readouterr().err
    assert written["asyncapi"] == "3.0.0" and len(written["components"]["messages"]) == 283
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(written)) == []
