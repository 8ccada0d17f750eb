"""Workflow correlation keys: which running workflow an event belongs to.

An explicit key (the publisher's ``correlationKey`` hook, written as
``workflow_correlation_key``) always wins. Otherwise the first present payload field of the
event type's list is used: by default ``ticketId``, ``clientId``, ``invoiceId``, ``projectId``,
``paymentId`` (the reference's order), with per-type overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["DEFAULT_CORRELATION_FIELDS", "CorrelationRules"]

DEFAULT_CORRELATION_FIELDS: tuple[str, ...] = ("ticketId", "clientId", "invoiceId", "projectId", "paymentId")


class CorrelationRules(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields tried in order, by default and per event type (``per_type`` replaces the default list)."""

    default: tuple[str, ...] = DEFAULT_CORRELATION_FIELDS
    per_type: dict[str, tuple[str, ...]] = {}

    def fields_for(self, event_type: str) -> tuple[str, ...]:
        """The fields tried for ``event_type``."""
        return self.per_type.get(event_type, self.default)

    def resolve(self, event_type: str, payload: Mapping[str, Any], explicit: str | None = None) -> str | None:
        """The explicit key, else the first non-empty string or integer field; None when nothing matches."""
        if explicit:
            return explicit
        for name in self.fields_for(event_type):
            value = payload.get(name)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
        return None
