"""Constrained wire types shared by every payload: uuids, UTC timestamps, dates, emails, urls.

Datetimes stay strings on the wire and in the typed view: the reference accepts only ISO-8601
UTC with a ``Z`` suffix, and a string with a pattern is the one msgspec type that rejects
``+00:00`` and naive values at decode time. Use :func:`to_iso` / :func:`parse_iso` to convert.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from msgspec import Meta

__all__ = [
    "DATETIME_PATTERN",
    "DATE_PATTERN",
    "EMAIL_PATTERN",
    "URL_PATTERN",
    "UUID_PATTERN",
    "ActorType",
    "Email",
    "IsoDate",
    "IsoDateTime",
    "NonEmptyStr",
    "Url",
    "Uuid",
    "is_uuid",
    "parse_iso",
    "to_iso",
    "utc_now_iso",
]

# ``\Z``, not ``$``: Python's ``$`` also matches before a trailing newline, JavaScript's does not.
# The JSON Schema export writes ``$`` (ECMA-262 semantics).
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
DATETIME_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?Z\Z"
DATE_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\Z"
EMAIL_PATTERN = r"^[^\s@]+@[^\s@]+\.[^\s@]+\Z"
URL_PATTERN = r"^[A-Za-z][A-Za-z0-9+.\-]*://[^\s]+\Z"

Uuid = Annotated[
    str,
    Meta(pattern=UUID_PATTERN, description="UUID, any 8-4-4-4-12 hex string", extra_json_schema={"format": "uuid"}),
]
IsoDateTime = Annotated[
    str,
    Meta(
        pattern=DATETIME_PATTERN,
        description="ISO-8601 UTC timestamp ending in Z",
        extra_json_schema={"format": "date-time"},
    ),
]
IsoDate = Annotated[str, Meta(pattern=DATE_PATTERN, extra_json_schema={"format": "date"})]
Email = Annotated[str, Meta(pattern=EMAIL_PATTERN, extra_json_schema={"format": "email"})]
Url = Annotated[str, Meta(pattern=URL_PATTERN, extra_json_schema={"format": "uri"})]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
ActorType = Literal["USER", "CONTACT", "SYSTEM"]

_UUID_RE = re.compile(UUID_PATTERN)
_DATETIME_RE = re.compile(DATETIME_PATTERN)


def is_uuid(value: object) -> bool:
    """Return True when ``value`` is a string the reference accepts as a uuid."""
    return isinstance(value, str) and _UUID_RE.match(value) is not None


def to_iso(value: datetime) -> str:
    """Format an aware UTC datetime the way the reference writes it (millisecond precision, ``Z``).

    Naive datetimes and non-UTC offsets are rejected rather than silently converted.
    """
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"naive datetime {value!r} has no timezone; pass an aware UTC datetime")
    if offset != timedelta(0):
        raise ValueError(f"datetime {value.isoformat()} is not UTC; convert it with .astimezone(timezone.utc)")
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


#: ``[(millisecond, its ISO string)]`` and ``[(second, its head)]``; replaced whole, so a reader
#: never sees half an update.
_NOW: list[tuple[int, str]] = [(-1, "")]
_SECOND: list[tuple[int, str]] = [(-1, "")]


def utc_now_iso() -> str:
    """The current UTC time as JavaScript's ``toISOString()`` writes it: ``2026-01-23T10:11:12.345Z``.

    Built once per millisecond (the publish path asks for it on every event).
    """
    ms = time.time_ns() // 1_000_000
    cached = _NOW[0]
    if cached[0] == ms:
        return cached[1]
    sec, frac = divmod(ms, 1000)
    head = _SECOND[0]
    if head[0] != sec:
        head = _SECOND[0] = (sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)))
    text = f"{head[1]}{frac:03d}Z"
    _NOW[0] = (ms, text)
    return text


def parse_iso(value: str) -> datetime:
    """Parse a wire timestamp (``...Z``) into an aware UTC datetime; other forms raise ValueError."""
    if _DATETIME_RE.match(value) is None:
        raise ValueError(f"{value!r} is not an ISO-8601 UTC timestamp ending in Z")
    head, _, frac = value[:-1].partition(".")
    micro = int((frac + "000000")[:6]) if frac else 0
    return datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(microsecond=micro, tzinfo=UTC)
