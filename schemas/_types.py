"""Constrained wire types shared by every payload: uuids, UTC timestamps, dates, emails, urls.

Datetimes stay strings on the wire and in the typed view: the reference accepts only ISO-8601
UTC with a ``Z`` suffix. Use :func:`to_iso` / :func:`parse_iso` to convert.

:data:`Uuid` and :data:`IsoDateTime` are plain strings to msgspec (their pattern is in the JSON
Schema only): the registry's decoders check them after the decode, every such string of a payload
in one pass (``schemas/_checks.py``), which costs less than msgspec's one ``re`` call per field.
Decode payloads through :data:`schemas.REGISTRY`; a bare ``msgspec.json.decode(data, type=...)``
checks their types but not these two patterns. :data:`StrictUuid` and :data:`StrictIsoDateTime`
are the same rules as msgspec patterns (what the registry reports an error with).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from time import time_ns
from typing import Annotated, Literal

from msgspec import Meta

__all__ = [
    "DATETIME_META",
    "DATETIME_PATTERN",
    "DATE_PATTERN",
    "EMAIL_PATTERN",
    "STRICT_DATETIME_PATTERN",
    "URL_PATTERN",
    "UUID_META",
    "UUID_PATTERN",
    "ActorType",
    "Email",
    "IsoDate",
    "IsoDateTime",
    "NonEmptyStr",
    "StrictIsoDateTime",
    "StrictUuid",
    "Url",
    "Uuid",
    "is_iso_datetime",
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

#: The JavaScript meaning of ``\d`` (ASCII digits only), which Python's ``re`` needs spelt out.
STRICT_DATETIME_PATTERN = "(?a)" + DATETIME_PATTERN

_UUID_DOC = "UUID, any 8-4-4-4-12 hex string"
_DATETIME_DOC = "ISO-8601 UTC timestamp ending in Z"
#: The markers of the two checked string types (the registry's checks find fields by them).
UUID_META = Meta(description=_UUID_DOC, extra_json_schema={"format": "uuid", "type": "string", "pattern": UUID_PATTERN})
DATETIME_META = Meta(
    description=_DATETIME_DOC, extra_json_schema={"format": "date-time", "type": "string", "pattern": DATETIME_PATTERN}
)
Uuid = Annotated[str, UUID_META]
IsoDateTime = Annotated[str, DATETIME_META]
StrictUuid = Annotated[str, Meta(pattern=UUID_PATTERN, description=_UUID_DOC, extra_json_schema={"format": "uuid"})]
StrictIsoDateTime = Annotated[
    str, Meta(pattern=STRICT_DATETIME_PATTERN, description=_DATETIME_DOC, extra_json_schema={"format": "date-time"})
]
IsoDate = Annotated[str, Meta(pattern=DATE_PATTERN, extra_json_schema={"format": "date"})]
Email = Annotated[str, Meta(pattern=EMAIL_PATTERN, extra_json_schema={"format": "email"})]
Url = Annotated[str, Meta(pattern=URL_PATTERN, extra_json_schema={"format": "uri"})]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
ActorType = Literal["USER", "CONTACT", "SYSTEM"]

_UUID_RE = re.compile(UUID_PATTERN)
_DATETIME_RE = re.compile(STRICT_DATETIME_PATTERN)


def is_uuid(value: object) -> bool:
    """Return True when ``value`` is a string the reference accepts as a uuid."""
    return isinstance(value, str) and _UUID_RE.match(value) is not None


def is_iso_datetime(value: object) -> bool:
    """Return True when ``value`` is a string the reference accepts as a timestamp (``...Z``)."""
    return isinstance(value, str) and _DATETIME_RE.match(value) is not None


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
    ms = time_ns() // 1_000_000
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
