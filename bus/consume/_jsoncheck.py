"""The consume side's check of an entry's ``event`` field before it is decoded as an event.

Anybody who can XADD to a stream can put anything in it. Before the typed decode, the raw
``event`` bytes must be plain, unambiguous JSON (RFC 8259 as tightened by I-JSON, RFC 7493):

- at most ``max_payload_bytes`` (the publish side refuses larger events before any write);
- JSON that msgspec decodes: well-formed UTF-8, no ``NaN``/``Infinity``, integers of at most
  4,300 digits (Python's ``int_max_str_digits``) and floats within double range, nesting within
  the interpreter's recursion limit (about 900 levels in a consumer);
- no duplicate key in any object: parsers disagree on which value wins (JavaScript, msgspec,
  orjson and json keep the last, others the first or refuse), so a validator and a handler could
  read different tenants or ids from the same bytes.

``BusSettings.strict_json`` (``BUS_STRICT_JSON``, default true) turns the JSON checks off,
leaving the size check.

Cost: first the C scan of ``schemas/_speedups.c`` (``plain_json``), one pass over the bytes that
allocates nothing. It accepts only what it proves plain (no key spelt with an escape, numbers of
modest size, at most 64 levels and 128 keys per object) and the Python check below decides the
rest; without the C module (no compiler at install) every event takes the Python check.

The Python check: the untyped decode, then canonical compact JSON (what our publisher and the reference's
``JSON.stringify`` write) is recognised by re-encoding the decoded value and getting back the very
same bytes: such bytes cannot hold a duplicate key, since the re-encoded dict could not repeat it.
orjson re-encodes first (the cheaper encoder); msgspec's encoder is tried when orjson's spelling
differs (a float exponent written ``1e16``, not ``1e+16``, as our publisher does) or orjson cannot
write the value (an integer beyond 64 bits, deep nesting). Only other spellings (whitespace,
escapes, number formats) take the exact, slower scan for duplicate keys. Figures:
benchmarks/RESULTS.md, "Plain-JSON check".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from schemas import _native

__all__ = ["c_scan", "event_problem", "plain_event"]

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_DUMPS = orjson.dumps
#: The C scan: True when it proves an event plain (:func:`plain_event` would find no problem).
#: None when the package was built without a C compiler.
c_scan: Callable[[bytes], bool] | None = _native.plain_json


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return out


def event_problem(raw: bytes, max_bytes: int, *, strict: bool = True) -> str | None:
    """Why ``raw`` (an entry's ``event`` field) is not acceptable as plain JSON, or None if it is.

    ``strict=False`` (``BUS_STRICT_JSON=false``) checks the size only; the typed decode that
    follows still refuses malformed JSON, NaN and too deep nesting, but not duplicate keys (the
    last value wins) nor out-of-range numbers under keys the schema does not read.
    """
    return plain_event(raw, max_bytes, strict=strict)[0]


def plain_event(raw: bytes, max_bytes: int, *, strict: bool = True, scan: bool = True) -> tuple[str | None, Any]:
    """:func:`event_problem`, and the decoded value when the Python check decoded ``raw`` and it is
    exactly its compact encoding.

    The value (None otherwise, always when the C scan accepted) holds the payload's keys, which
    tell the registry which union shapes cannot match without a search of the bytes.
    ``scan=False``: the caller ran :data:`c_scan` already (it could not prove ``raw`` plain).
    """
    if len(raw) > max_bytes:
        return f"the event is {len(raw)} bytes, over max_payload_bytes ({max_bytes})", None
    if not strict or (scan and c_scan is not None and c_scan(raw)):
        return None, None
    try:
        value = _DECODER.decode(raw)
    except RecursionError:
        return "the event's JSON is nested too deeply (more levels than the decoder's recursion limit)", None
    except msgspec.DecodeError as exc:  # malformed, NaN/Infinity, a number out of range
        return f"the event is not valid JSON: {exc}", None
    try:
        if _DUMPS(value) == raw:
            return None, value
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, nesting deeper than orjson writes
        pass
    # Neither encoder writes a raw newline (``10``, an int: ``bytes in bytes`` costs more), so an
    # indented event goes straight to the scan.
    if 10 not in raw and _ENCODER.encode(value) == raw:
        return None, value
    try:
        json.loads(raw, object_pairs_hook=_pairs)
    except _DuplicateKeyError as exc:
        return f"the event's JSON has a duplicate key {exc.key[:100]!r} (parsers disagree on which value wins)", None
    except (ValueError, RecursionError) as exc:  # msgspec took it, so this is unexpected: be safe
        return f"the event's JSON could not be checked for duplicate keys: {exc}", None
    return None, None
