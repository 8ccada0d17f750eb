"""Errors raised by the schema layer.

SchemaError
 +-- UnknownEventTypeError   (also a LookupError)
 +-- UnknownSchemaRefError   (also a LookupError)
 +-- EventValidationError    (also a ValueError)
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "EventValidationError",
    "SchemaError",
    "UnknownEventTypeError",
    "UnknownSchemaRefError",
]


class SchemaError(Exception):
    """Root of the schema layer's errors."""


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


class UnknownEventTypeError(SchemaError, LookupError):
    """An event type that the registry does not know."""

    def __init__(self, event_type: str, known: Iterable[str] = ()) -> None:
        self.event_type = event_type
        super().__init__(f"unknown event type {event_type!r}{_suggest(event_type, known)}")


class UnknownSchemaRefError(SchemaError, LookupError):
    """A ``payload.<PascalCase>.v1`` reference that the registry does not know."""

    def __init__(self, ref: str, known: Iterable[str] = ()) -> None:
        self.ref = ref
        super().__init__(f"unknown schema ref {ref!r}{_suggest(ref, known)}")


class EventValidationError(SchemaError, ValueError):
    """A payload or envelope that breaks its schema.

    ``event_type`` names the event, ``path`` the field as a JSON path
    (``$.payload.changes.status.previous``) and ``rule`` what was expected.
    """

    def __init__(self, event_type: str, path: str, rule: str) -> None:
        self.event_type = event_type
        self.path = path
        self.rule = rule
        super().__init__(f"{event_type or 'event'}: invalid {path}: {rule}")
