"""Catalog v2 payload conventions, checked on the generated Structs of the workflow catalog.

Scope: the catalog shape of every type the workflow catalog lists (``in_catalog``), not the
legacy bus shapes. Where the catalog itself breaks a convention, the exception is listed below
with the reason; a new exception fails the test until it is added here on purpose.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from schemas import REGISTRY, EventSpec

V2_SPECS = [spec for spec in REGISTRY if spec.in_catalog]

#: The inventory events predate the v2 conventions and keep their own payloads: snake_case
#: keys, ``tenant`` instead of ``tenantId``, a ``timestamp`` (or nothing) instead of ``occurredAt``.
INVENTORY_SNAKE_CASE = {
    "INVENTORY_STOCK_LOW",
    "INVENTORY_PO_RECEIVED",
    "INVENTORY_SO_FULFILLED",
    "INVENTORY_RMA_CREATED",
    "INVENTORY_SALES_ORDER_CREATED",
    "INVENTORY_SALES_ORDER_UPDATED",
    "INVENTORY_SALES_ORDER_DELETED",
    "INVENTORY_PURCHASE_ORDER_CREATED",
    "INVENTORY_PURCHASE_ORDER_UPDATED",
    "INVENTORY_PURCHASE_ORDER_DELETED",
    "INVENTORY_TRANSFER_DISPATCHED",
    "INVENTORY_TRANSFER_RECEIVED",
    "INVENTORY_COUNT_SUBMITTED",
    "INVENTORY_COUNT_APPROVED",
}
#: The RMM alert events are legacy payloads carried into the catalog unchanged: a uuid
#: ``tenantId`` and ``triggeredAt``/``resolvedAt`` instead of ``occurredAt``.
RMM_LEGACY = {"RMM_ALERT_TRIGGERED", "RMM_ALERT_RESOLVED"}

#: ``previousX`` fields without a ``newX``, and why.
PREVIOUS_WITHOUT_NEW = {
    # After an unassignment there is no new owner: only the one that was removed.
    ("ASSET_UNASSIGNED", "previousOwnerType"),
    ("ASSET_UNASSIGNED", "previousOwnerId"),
    # The new primary contact is the event's own ``contactId``.
    ("CONTACT_PRIMARY_SET", "previousPrimaryContactId"),
    # The schedule entry's current state is ``status``; ``previousStatus`` is what it was.
    ("PROJECT_BILLING_SCHEDULE_ENTRY_CREATED", "previousStatus"),
    ("PROJECT_BILLING_SCHEDULE_ENTRY_UPDATED", "previousStatus"),
    ("PROJECT_BILLING_SCHEDULE_STATUS_CHANGED", "previousStatus"),
    ("PROJECT_BILLING_SCHEDULE_ENTRY_DELETED", "previousStatus"),
}

#: Types with ``changes`` but no ``updatedFields``: the project billing events carry a free
#: ``changes`` object (values of any shape, not ``{previous, new}``) without a field list.
CHANGES_WITHOUT_UPDATED_FIELDS = {
    "PROJECT_BILLING_CONFIG_CREATED",
    "PROJECT_BILLING_CONFIG_UPDATED",
    "PROJECT_BILLING_CONFIG_DELETED",
    "PROJECT_BILLING_SCHEDULE_ENTRY_CREATED",
    "PROJECT_BILLING_SCHEDULE_ENTRY_UPDATED",
    "PROJECT_BILLING_SCHEDULE_STATUS_CHANGED",
    "PROJECT_BILLING_SCHEDULE_ENTRY_DELETED",
}

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def wire_fields(spec: EventSpec) -> dict[str, msgspec.structs.FieldInfo]:
    """Top-level fields of the catalog shape, by wire name."""
    return {f.encode_name: f for f in msgspec.structs.fields(spec.catalog_type)}


def params(exclude: frozenset[str] | set[str] = frozenset()) -> list[Any]:
    """The v2 catalog specs minus ``exclude``, id = event type."""
    return [pytest.param(s, id=s.event_type) for s in V2_SPECS if s.event_type not in exclude]


def test_scope_is_the_166_catalog_types() -> None:
    """The conventions apply to the 166 types of the workflow catalog; the exception lists name real types."""
    assert len(V2_SPECS) == 166
    named = INVENTORY_SNAKE_CASE | RMM_LEGACY | CHANGES_WITHOUT_UPDATED_FIELDS | {t for t, _ in PREVIOUS_WITHOUT_NEW}
    assert named <= {s.event_type for s in V2_SPECS}


@pytest.mark.parametrize("spec", params(INVENTORY_SNAKE_CASE))
def test_top_level_keys_are_camel_case(spec: EventSpec) -> None:
    """Every top-level wire key is camelCase."""
    assert [name for name in wire_fields(spec) if not CAMEL.match(name)] == []


@pytest.mark.parametrize("spec", params(INVENTORY_SNAKE_CASE))
def test_tenant_id_is_required(spec: EventSpec) -> None:
    """``tenantId`` is a required field."""
    fields = wire_fields(spec)
    assert "tenantId" in fields
    assert fields["tenantId"].required


@pytest.mark.parametrize("spec", params(INVENTORY_SNAKE_CASE | RMM_LEGACY))
def test_occurred_at_is_required(spec: EventSpec) -> None:
    """``occurredAt`` is a required field."""
    fields = wire_fields(spec)
    assert "occurredAt" in fields
    assert fields["occurredAt"].required


@pytest.mark.parametrize("spec", params())
def test_actor_fields_are_optional_and_typed(spec: EventSpec) -> None:
    """Where present, ``actorType`` is USER|CONTACT|SYSTEM and the actor ids are uuids, all optional."""
    fields = wire_fields(spec)
    types = {
        "actorType": ["CONTACT", "SYSTEM", "USER"],
        "actorUserId": "uuid",
        "actorContactId": "uuid",
    }
    for name, expected in types.items():
        if name not in fields:
            continue
        assert not fields[name].required, name
        info = msgspec.inspect.type_info(fields[name].type)
        if expected == "uuid":
            assert isinstance(info, msgspec.inspect.Metadata)
            assert (info.extra_json_schema or {}).get("format") == "uuid", name
        else:
            assert isinstance(info, msgspec.inspect.LiteralType)
            assert sorted(map(str, info.values)) == expected


def test_previous_without_new_exceptions_are_exactly_the_listed_ones() -> None:
    """Every ``previousX`` has a ``newX``, except the documented exceptions (and those still exist)."""
    found = set()
    for spec in V2_SPECS:
        names = wire_fields(spec)
        for name in names:
            if name.startswith("previous") and name[8:9].isupper() and "new" + name[8:] not in names:
                found.add((spec.event_type, name))
    assert found == PREVIOUS_WITHOUT_NEW


@pytest.mark.parametrize("spec", params())
def test_every_previous_has_a_new(spec: EventSpec) -> None:
    """``previousX`` comes with ``newX`` (same type), unless listed in PREVIOUS_WITHOUT_NEW."""
    fields = wire_fields(spec)
    for name, info in fields.items():
        if not name.startswith("previous") or not name[8:9].isupper():
            continue
        if (spec.event_type, name) in PREVIOUS_WITHOUT_NEW:
            continue
        new = fields["new" + name[8:]]
        prev_type = msgspec.inspect.type_info(info.type)
        new_type = msgspec.inspect.type_info(new.type)
        assert type(prev_type) is type(new_type), name


def test_changes_without_updated_fields_exceptions_are_exactly_the_listed_ones() -> None:
    """``updatedFields`` and ``changes`` appear together, except the documented exceptions."""
    found = set()
    for spec in V2_SPECS:
        names = wire_fields(spec)
        if ("updatedFields" in names) != ("changes" in names):
            found.add(spec.event_type)
    assert found == CHANGES_WITHOUT_UPDATED_FIELDS


@pytest.mark.parametrize("spec", params(CHANGES_WITHOUT_UPDATED_FIELDS))
def test_updated_fields_and_changes_go_together(spec: EventSpec) -> None:
    """A payload has both ``updatedFields`` (list of str) and ``changes`` ({path: {previous, new}}) or neither."""
    fields = wire_fields(spec)
    assert ("updatedFields" in fields) == ("changes" in fields)
    if "changes" in fields:
        doc = {"updatedFields": ["status"], "changes": {"status": {"previous": "open", "new": "closed"}}}
        value = msgspec.convert(doc, msgspec.defstruct("Probe", [(k, fields[k].type) for k in doc]))
        assert msgspec.to_builtins(value) == doc
