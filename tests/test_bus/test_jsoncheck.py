"""bus.consume._jsoncheck: the plain-JSON check accepts and refuses exactly what it did before its
fast paths changed (the previous implementation is kept here as the oracle), over edge inputs and
thousands of generated spellings: duplicate keys at any depth, escaped keys, unicode, number
spellings, whitespace, deep nesting and broken JSON. Every test runs twice: with the C scan in
front (schemas/_speedups.c) and with the Python check alone (a build without a C compiler)."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import orjson
import pytest

from bus.consume import _jsoncheck
from bus.consume._jsoncheck import event_problem, plain_event

MAX = 1 << 20

# --- The oracle: plain_event as it was before orjson wrote the canonical check (commit 2c45fc7). ---

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


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


def _old_plain_event(raw: bytes, max_bytes: int, *, strict: bool = True) -> tuple[str | None, Any]:
    if len(raw) > max_bytes:
        return f"the event is {len(raw)} bytes, over max_payload_bytes ({max_bytes})", None
    if not strict:
        return None, None
    try:
        value = _DECODER.decode(raw)
    except RecursionError:
        return "the event's JSON is nested too deeply (more levels than the decoder's recursion limit)", None
    except msgspec.DecodeError as exc:
        return f"the event is not valid JSON: {exc}", None
    if _ENCODER.encode(value) == raw:
        return None, value
    try:
        json.loads(raw, object_pairs_hook=_pairs)
    except _DuplicateKeyError as exc:
        return f"the event's JSON has a duplicate key {exc.key[:100]!r} (parsers disagree on which value wins)", None
    except (ValueError, RecursionError) as exc:
        return f"the event's JSON could not be checked for duplicate keys: {exc}", None
    return None, None


# --- Inputs. ---

EDGE: list[bytes] = [
    b"",
    b" ",
    b"{}",
    b"[]",
    b"[{}]",
    b'{"a":{}}',
    b"null",
    b"true",
    b"0",
    b"-0",
    b"-0.0",
    b"1E5",
    b"1e5",
    b"1.0e+2",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"1e16",
    b"1e+16",
    b"1e300",
    b"1e+300",
    b"5e-324",
    b"100000.0",
    b"01",
    b"1.",
    b".5",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"9" * 30,
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"9" * 4300,
    b"9" * 4301,
    b"9" * 5000,
    b'{"a":1,"a":1}',
    b'{"a":1,"a":2}',
    b'{"a":1,"\\u0061":2}',
    b'{"\\u0061":1,"a":2}',
    b'{"a":1,"b":{"c":1,"c":2}}',
    b'[{"x":[{"y":1,"y":2}]}]',
    b'{"a" :1,"a":2}',
    b'{ "a" : 1 , "a" : 2 }',
    b'{"a":1}\n',
    b' {"a":1}',
    b'{"a":1,"b":2}',
    b'{"a":"\\u00e9"}',
    b'{"a":"\xc3\xa9"}',
    b'{"\xc3\xa9":1,"\\u00e9":2}',
    b'{"a":"\\ud83d\\ude00"}',
    b'{"a":"\xf0\x9f\x98\x80"}',
    b'{"a":"\\ud800"}',
    b'{"a":"\\udc00"}',
    b'{"a":"\xed\xa0\x80"}',
    b'{"a":"\xff"}',
    b'{"a":"\\u2028"}',
    b'{"a":"\xe2\x80\xa8"}',
    b'{"a":"\\/"}',
    b'{"a":"/"}',
    b'{"a":"\\u001f"}',
    b'{"a":"\\u001F"}',
    b'{"a":"\x1f"}',
    b'{"a":"\\b\\f\\n\\r\\t"}',
    b'{"a":"\\"\\\\"}',
    b'{"a\\"":1,"a\\u0022":2}',
    b'{"a":1,}',
    b'{"a":1',
    b'{"a"}',
    b"\xef\xbb\xbf{}",
    b'{"a":1}{"a":1}',
    b'{"a":[1,2,3],"b":[{"c":null},{"c":true,"d":false}]}',
    b"[" * 250 + b"]" * 250,
    b"[" * 300 + b"]" * 300,
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 300 + b"1" + b"}" * 300,
    bytes(range(256)),
]

KEYS = ["a", "b", "tenantId", "id", "\u00e9", "\u2028", 'k"q', "a/b", "x\\y", "\U0001f600", "", "\x1f"]
STRINGS = ["", "open", "\u00e9t\u00e9", "\u2028", "\x7f", "tab\tnl\n", 'q"b\\', "\U0001f600", "</script>", "\x00"]
NUMBERS = [
    "0",
    "-0",
    "1",
    "-17",
    "0.1",
    "-0.0",
    "1.5",
    "100000.0",
    "100000",
    "1E5",
    "1e5",
    "1.0e+2",
    "1e16",
    "1e+16",
    "1e21",
    "1e+21",
    "1e-7",
    "5e-324",
    "1.7976931348623157e308",
    "1.7976931348623157e+308",
    "1e400",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "9" * 30,
    "9" * 4301,
    "01",
    "NaN",
    "1.",
]


class _Writer:
    """Writes a random JSON-like text, spelt in many ways; objects are pair lists, so keys can repeat."""

    def __init__(self, rng: random.Random, *, canonical: bool) -> None:
        self.rng = rng
        self.canonical = canonical

    def ws(self) -> str:
        if self.canonical or self.rng.random() > 0.1:
            return ""
        return self.rng.choice([" ", "\n", "\t", "\r\n", "  "])

    def string(self, text: str) -> str:
        rng = self.rng
        if self.canonical or rng.random() < 0.6:
            return orjson.dumps(text).decode()
        out = []
        for ch in text:  # escape some characters that need no escape, and spell escapes differently
            if rng.random() < 0.3 and ord(ch) < 0x10000:
                out.append(f"\\u{ord(ch):04x}" if rng.random() < 0.5 else f"\\u{ord(ch):04X}")
            elif ch == "/" and rng.random() < 0.5:
                out.append("\\/")
            else:
                out.append(orjson.dumps(ch).decode()[1:-1])
        return '"' + "".join(out) + '"'

    def value(self, depth: int) -> str:
        rng = self.rng
        kind = rng.random() if depth < 5 else 0.9
        if kind < 0.3:
            count = rng.randrange(5)
            pool = KEYS if rng.random() < 0.5 else KEYS[:3]  # a small pool repeats keys often
            keys = rng.sample(KEYS, count) if self.canonical else [rng.choice(pool) for _ in range(count)]
            items = [self.ws() + self.string(k) + self.ws() + ":" + self.ws() + self.value(depth + 1) for k in keys]
            return "{" + ",".join(items) + self.ws() + "}"
        if kind < 0.45:
            items = [self.ws() + self.value(depth + 1) for _ in range(rng.randrange(4))]
            return "[" + ",".join(items) + self.ws() + "]"
        if kind < 0.7:
            return self.string(rng.choice(STRINGS))
        if kind < 0.9:
            if self.canonical:
                return orjson.dumps(rng.choice([0, 1, -17, 0.1, 1.5, 1e-7, 2**63, 1e300, -0.0, 123.456])).decode()
            return rng.choice(NUMBERS)
        return rng.choice(["null", "true", "false"])

    def event(self) -> bytes:
        return (self.ws() + self.value(0) + self.ws()).encode("utf-8", "surrogatepass")


def _generated(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = []
    for n in range(count):
        raw = _Writer(rng, canonical=n % 3 == 0).event()
        if n % 7 == 0 and raw:  # broken JSON: truncated, or one byte changed
            cut = rng.randrange(len(raw))
            raw = raw[:cut] if rng.random() < 0.5 else raw[:cut] + bytes([rng.randrange(256)]) + raw[cut + 1 :]
        out.append(raw)
    return out


def _same(raw: bytes, max_bytes: int = MAX, *, strict: bool = True) -> tuple[str | None, Any]:
    """The new check's result, after asserting it matches the oracle's."""
    old_problem, old_value = _old_plain_event(raw, max_bytes, strict=strict)
    problem, value = plain_event(raw, max_bytes, strict=strict)
    assert problem == old_problem, raw[:200]
    # The Python check may hand on a value in more cases than the oracle, never another one; the
    # C scan hands on none.
    if old_value is not None and _jsoncheck.c_scan is None:
        assert value == old_value, raw[:200]
    if value is not None:
        assert value == msgspec.json.decode(raw), raw[:200]
    return problem, value


# --- Tests. ---


@pytest.fixture(autouse=True, params=["c", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which check runs first: the C scan (built by the install) or the Python check alone."""
    if request.param == "python":
        monkeypatch.setattr(_jsoncheck, "c_scan", None)
    else:
        assert _jsoncheck.c_scan is not None, "schemas._speedups was not built"
    return str(request.param)


@pytest.mark.parametrize("raw", EDGE, ids=lambda raw: repr(raw[:24]))
def test_edge_inputs_give_the_oracles_verdict(raw: bytes) -> None:
    """Each edge input gets the same problem text (or none) as the previous implementation."""
    _same(raw)


def test_generated_inputs_give_the_oracles_verdict(path: str) -> None:
    """6,000 generated spellings (a third canonical, a seventh broken) get the previous verdicts; the
    sample holds events accepted by each path and refused ones, so the comparison is not vacuous."""
    verdicts: dict[str, int] = {"accepted with value": 0, "accepted": 0, "duplicate": 0, "invalid": 0, "other": 0}
    for raw in _generated(6000, seed=15):
        problem, value = _same(raw)
        if problem is None:
            verdicts["accepted with value" if value is not None else "accepted"] += 1
        elif "duplicate key" in problem:
            verdicts["duplicate"] += 1
        elif "not valid JSON" in problem:
            verdicts["invalid"] += 1
        else:
            verdicts["other"] += 1
    kinds = ("accepted with value", "accepted", "duplicate", "invalid")
    assert min(verdicts[kind] for kind in kinds) > (300 if path == "python" else 100), verdicts


def test_size_and_strict_off_are_unchanged() -> None:
    """Over the limit is refused before any decode; strict off accepts anything within it."""
    for raw in (b'{"a":1,"a":2}', b"NaN", b"{}"):
        assert _same(raw, len(raw) - 1)[0] == f"the event is {len(raw)} bytes, over max_payload_bytes ({len(raw) - 1})"
        assert _same(raw, len(raw), strict=False) == (None, None)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"a":1,"a":2}', "a"),
        (b'{"a":1,"\\u0061":2}', "a"),
        (b'{"p":{"q":[{"r":{"s":1,"t":2,"s":3}}]}}', "s"),
        (b'{"id":"x","payload":{"tenantId":"a","tenantId":"b"}}', "tenantId"),
        (b'{ "k" : 1 , "k" : 1 }', "k"),
    ],
)
def test_duplicate_keys_are_refused_at_any_depth_and_spelling(raw: bytes, key: str) -> None:
    """A key repeated in one object (after unescaping, with or without whitespace) is named in the problem."""
    expected = f"the event's JSON has a duplicate key {key!r} (parsers disagree on which value wins)"
    assert event_problem(raw, MAX) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"id": "x", "payload": {"tenantId": "t", "n": 1, "f": 0.5, "l": [{"a": None}], "u": "\u00e9\u2028"}},
        {"big": 2**64 - 1, "small": -(2**63), "deep": [[[[{}]]]]},
        {"exp": 1e300, "tiny": 5e-324},
    ],
)
@pytest.mark.parametrize("encode", [orjson.dumps, msgspec.json.encode], ids=["orjson", "msgspec"])
def test_canonical_json_hands_on_its_decoded_value(value: dict[str, Any], encode: Any, path: str) -> None:
    """Compact JSON as orjson or msgspec (our publisher) writes it is accepted; the Python check
    hands on its decode (whose payload keys the registry reads), the C scan decodes nothing (it leaves
    integers of more than 18 digits and exponents of more than 2 to the Python check)."""
    raw = encode(value)
    scanned = path == "c" and "payload" in value
    assert plain_event(raw, MAX) == (None, None if scanned else value)


def _nested(levels: int) -> Any:
    value: Any = {"a": 1}
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("value", [{"big": 10**30}, {"deep": _nested(300)}], ids=["int", "deep"])
def test_values_orjson_cannot_write_take_msgspecs_canonical_check(value: dict[str, Any]) -> None:
    """An integer beyond 64 bits or nesting deeper than orjson writes: msgspec's compact spelling is
    still accepted with its decode."""
    raw = msgspec.json.encode(value)
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(value)
    assert plain_event(raw, MAX) == (None, value)
