"""The description of one event type, as the registry holds it."""

from __future__ import annotations

from typing import Literal

import msgspec

from ._common import Payload

__all__ = ["EventSpec", "VariantKind"]

#: Which payload shape matched: the catalog's own, a bus-only object, or one side of a union.
VariantKind = Literal["catalog", "bus", "legacy", "domain"]


class EventSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Facts about one event type: names, category, status and the Structs that validate it.

    ``variants`` are what a publish accepts, tried in the reference's order (the first that
    matches wins: legacy before domain, except ``CONTRACT_*``, whose union lists the domain
    shape first); ``catalog_type`` is the shape the workflow side validates.
    """

    event_type: str
    schema_ref: str
    category: str
    status: Literal["emitted", "catalog_only"]
    legacy: bool
    in_catalog: bool
    deprecated: bool
    passthrough: bool
    name: str
    description: str
    catalog_type: type[Payload]
    variants: tuple[tuple[VariantKind, type[Payload]], ...]

    @property
    def is_union(self) -> bool:
        """True for the 15 types that accept a legacy and a domain shape."""
        return len(self.variants) > 1

    @property
    def bus_only(self) -> bool:
        """True for types the bus knows but the workflow catalog does not list."""
        return not self.in_catalog
