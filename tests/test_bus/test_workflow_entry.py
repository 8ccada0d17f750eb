"""The workflow entry's rules live in schemas; the codec's packed fast path follows them byte for byte."""

from __future__ import annotations

from typing import Any

import pytest

from bus._codec import Route, XaddPacker
from schemas import WORKFLOW_FIELDS, EventValidationError, WorkflowEvent, workflow_values

UUID = "5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f"
USER = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
TS = "2026-01-23T10:11:12.345Z"
DATA = b'{"x":1}'

PAYLOADS = [
    pytest.param({"tenantId": "t1", "actorUserId": USER}, id="actor"),
    pytest.param({"tenant": "t2", "userId": USER}, id="legacy-keys"),
    pytest.param({"tenantId": "", "tenant": "t3", "actorUserId": "", "userId": USER}, id="empty-falls-back"),
    pytest.param({"tenantId": 7, "eventName": "Named"}, id="non-string-tenant-and-name"),
    pytest.param({}, id="nothing"),
    pytest.param({"actorUserId": "bob"}, id="bad-user"),
    pytest.param({"userId": ["not", "hashable"]}, id="unhashable-user"),
]


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except EventValidationError as exc:
        return (exc.path, exc.rule)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("channels", [("global",), ("global", "internal-notifications")], ids=["one", "two"])
def test_fast_path_packs_the_schema_values(payload: dict[str, Any], channels: tuple[str, ...]) -> None:
    """Route.pack from a dict equals packing schemas.workflow_values, and fails where it fails."""
    packer = XaddPacker(1000)
    route = Route(packer, "TICKET_CREATED", channels, tuple(f"s:{c}" for c in channels), force=False, workflow=True)
    eid, ts = UUID.encode(), TS.encode()
    env_len = route.env_size + len(eid) + len(ts) + len(DATA)

    def general() -> bytes:
        values = workflow_values(UUID, "TICKET_CREATED", TS, payload, DATA)
        return route.pack(eid, ts, DATA, env_len, workflow=packer.workflow("workflow:events:global", values))

    assert _outcome(lambda: route.pack(eid, ts, DATA, env_len, payload)) == _outcome(general)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_struct_follows_the_same_rules(payload: dict[str, Any]) -> None:
    """WorkflowEvent.from_bus_event is workflow_values as a Struct: the same fields, the same errors."""
    hooks: dict[str, Any] = {"execution_id": UUID, "from_state": "a"}
    args = (UUID, "T", TS, payload, DATA)
    got = _outcome(lambda: list(WorkflowEvent.from_bus_event(*args, **hooks).to_fields().items()))
    expected = _outcome(lambda: list(zip(WORKFLOW_FIELDS, workflow_values(*args, **hooks), strict=True)))
    assert got == expected
