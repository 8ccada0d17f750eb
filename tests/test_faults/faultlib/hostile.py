"""Hostile stream entries for the input fault tests: raw ``event`` bytes no publisher of ours
would write (a foreign or compromised writer XADDs them), each with the dead-letter reason the
consumer must give.

Every builder returns a fresh entry (new event id) so a thousand of them are a thousand events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import NamedTuple

from schemas import utc_now_iso

__all__ = ["GARBAGE", "HOSTILE", "Hostile", "envelope", "payload_json"]


class Hostile(NamedTuple):
    """One hostile kind: a name, the ``event`` bytes, and a text its ``lastError`` must contain."""

    kind: str
    event: bytes
    reason: str


def payload_json(tenant: str = "tenant-faults", *, extra: bytes = b"") -> bytes:
    """A valid TICKET_CREATED payload (domain shape) as compact JSON, with ``extra`` spliced in
    before the closing brace (``extra`` starts with a comma)."""
    return f'{{"tenantId":"{tenant}","occurredAt":"{utc_now_iso()}","ticketId":"{uuid.uuid4()}"'.encode() + extra + b"}"


def envelope(payload: bytes, *, event_type: str = "TICKET_CREATED", event_id: str | None = None) -> bytes:
    """The envelope JSON around raw payload bytes, as the reference writes it (compact)."""
    head = f'{{"id":"{event_id or uuid.uuid4()}","eventType":"{event_type}","timestamp":"{utc_now_iso()}","payload":'
    return head.encode() + payload + b"}"


def _deep() -> Hostile:
    nested = b"[" * 10_000 + b"]" * 10_000
    return Hostile("deep-nesting", envelope(payload_json(extra=b',"nested":' + nested)), "nested too deeply")


def _huge() -> Hostile:
    field = b'"' + b"x" * 2_000_000 + b'"'
    return Hostile("2M-char-field", envelope(payload_json(extra=b',"note":' + field)), "over max_payload_bytes")


def _big_number() -> Hostile:
    # In an unknown key: the typed decode would skip it, so only the plain-JSON check sees it.
    number = b"9" * 5_000
    return Hostile("5000-digit-number", envelope(payload_json(extra=b',"amount":' + number)), "out of range")


def _nan() -> Hostile:
    return Hostile("NaN", envelope(payload_json(extra=b',"ratio":NaN')), "not valid JSON")


def _duplicate_key() -> Hostile:
    # Two tenants in one payload: msgspec and JSON.parse keep the last, other parsers the first.
    payload = payload_json("tenant-a", extra=b',"tenantId":"tenant-b"')
    return Hostile("duplicate-key", envelope(payload), "duplicate key 'tenantId'")


#: The five hostile kinds of issue #7, in the order a test cycles through them.
HOSTILE: tuple[Callable[[], Hostile], ...] = (_deep, _huge, _big_number, _nan, _duplicate_key)


#: Raw garbage a foreign writer could XADD: ``(kind, fields, reason in lastError)``.
GARBAGE: tuple[tuple[str, dict[bytes, bytes], str], ...] = (
    ("no-event-field", {b"data": b"hello"}, "no `event` field"),
    ("not-json", {b"event": b"this is not json"}, "not valid JSON"),
    ("binary", {b"event": bytes(range(256))}, "not valid JSON"),
    ("json-array", {b"event": b"[1,2,3]"}, "Expected `object`"),
    ("empty", {b"event": b""}, "not valid JSON"),
    ("payload-not-object", {b"event": envelope(b'"just a string"')}, "Expected `object`"),
    ("unknown-type", {b"event": envelope(payload_json(), event_type="NO_SUCH_EVENT")}, "unknown event type"),
    ("schema-violation", {b"event": envelope(b'{"tenantId":"t","ticketId":"not-a-uuid"}')}, "$.payload"),
)
