"""example_payload: a valid payload for every event type and shape, decoding with the shape it names."""

from __future__ import annotations

import json

import pytest

from schemas import REGISTRY, UnknownEventTypeError, example_payload

TYPES = [spec.event_type for spec in REGISTRY]


@pytest.mark.parametrize("full", [True, False], ids=["full", "required-only"])
@pytest.mark.parametrize("event_type", TYPES)
def test_every_example_is_valid_for_the_bus_and_the_catalog(event_type: str, full: bool) -> None:
    """The bus-shape example passes the publish validation; the catalog-shape one the catalog's."""
    bus_shape = example_payload(event_type, full=full)
    REGISTRY.validate(event_type, bus_shape)
    catalog = example_payload(event_type, shape="catalog", full=full)
    REGISTRY.decode_catalog_payload(event_type, json.dumps(catalog))


def test_required_only_leaves_optional_fields_out() -> None:
    """required-only keeps exactly the required wire names (TICKET_CREATED's legacy shape)."""
    full = example_payload("TICKET_CREATED")
    short = example_payload("TICKET_CREATED", full=False)
    assert set(short) < set(full)
    assert {"tenantId", "ticketId", "userId"} <= set(short)


def test_unknown_type_raises() -> None:
    """An unknown event type raises UnknownEventTypeError, as the registry does."""
    with pytest.raises(UnknownEventTypeError):
        example_payload("TICKET_CREATD")
