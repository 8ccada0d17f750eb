"""schemas._speedups: the C plain-JSON scan accepts only what the Python check accepts (and the usual
events), and the C uuid/datetime check says exactly what the two patterns say, over edge inputs and
thousands of generated ones."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from bus.consume import _jsoncheck
from schemas import REGISTRY
from schemas._examples import example_payload
from schemas._speedups import ids_ok, lacks_key, plain_json
from schemas._types import STRICT_DATETIME_PATTERN, UUID_PATTERN

U = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
DT = "2026-01-23T10:11:12.345Z"
UUID_RE = re.compile(UUID_PATTERN)
DATETIME_RE = re.compile(STRICT_DATETIME_PATTERN)


def _python_problem(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The Python check's verdict (the C scan switched off)."""
    with monkeypatch.context() as m:
        m.setattr(_jsoncheck, "c_scan", None)
        return _jsoncheck.event_problem(raw, 1 << 30)


# --- plain_json -------------------------------------------------------------------------------

ACCEPTED = [
    b"{}",
    b"[]",
    b"0",
    b"-0",
    b'""',
    b' \t\r\n{ "a" : [ 1 , -2.5 , 3e10 , 4E-9 , true , false , null , { } , [ ] ] } \n',
    b'{"a":{"a":{"a":1}},"b":{"a":2}}',  # the same key in different objects
    b'{"s":"\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\u2028 \\uFFFF \\u0000"}',
    '{"s":"é ü € 𝄞 \u2028 \U0010ffff","é":1,"e":2}'.encode(),
    b'{"n":123456789012345678,"f":123456789012345678901234567890123456789.5e99}',
    b'{"ab":1,"ba":2,"a":3,"b":4,"":5}',
]

REFUSED = [
    (b"", "empty"),
    (b"   ", "only whitespace"),
    (b'{"a":1,"a":2}', "duplicate key"),
    (b'{"a":1,"b":{"c":1,"c":1}}', "nested duplicate key"),
    (b'{"a":1,"\\u0061":2}', "escaped key (left to Python)"),
    (b'{"\\n":1}', "escaped key (left to Python)"),
    (b'{"s":"\\ud800"}', "surrogate escape (left to Python)"),
    (b'{"s":"\\ud83d\\ude00"}', "surrogate pair escape (left to Python)"),
    (b'{"s":"\\x"}', "bad escape"),
    (b'{"s":"\\u12g4"}', "bad unicode escape"),
    (b'{"s":"a\x01b"}', "control character"),
    (b'{"s":"\xc0\xaf"}', "overlong UTF-8"),
    (b'{"s":"\xed\xa0\x80"}', "encoded surrogate"),
    (b'{"s":"\xf4\x90\x80\x80"}', "beyond U+10FFFF"),
    (b'{"s":"\xe2\x82"}', "truncated UTF-8"),
    (b'{"s":"\xff"}', "invalid byte"),
    (b"[1,]", "trailing comma"),
    (b'{"a":1,}', "trailing comma in object"),
    (b"[01]", "leading zero"),
    (b"[1.]", "no fraction digits"),
    (b"[1e]", "no exponent digits"),
    (b"[-]", "lone minus"),
    (b"[+1]", "plus sign"),
    (b"[1234567890123456789]", "19-digit integer (left to Python)"),
    (b"[1e100]", "3-digit exponent (left to Python)"),
    (b"[" + b"1" * 41 + b".0]", "41 significant digits (left to Python)"),
    (b"[NaN]", "NaN"),
    (b"[Infinity]", "Infinity"),
    (b"[tru]", "broken literal"),
    (b"{} {}", "two values"),
    (b"{}x", "trailing garbage"),
    (b'{"a" 1}', "no colon"),
    (b'{"a":1 "b":2}', "no comma"),
    (b"{1:2}", "non-string key"),
    (b'{"a":1]', "mismatched close"),
    (b"[1}", "mismatched close"),
    (b'{"a":[1,2}', "unclosed array"),
    (b'"abc', "unterminated string"),
    (b"[" * 65 + b"]" * 65, "65 levels (left to Python)"),
    (b"{" + b",".join(b'"k%d":1' % i for i in range(129)) + b"}", "129 keys (left to Python)"),
    (b"\xef\xbb\xbf{}", "byte order mark"),
]


@pytest.mark.parametrize("raw", ACCEPTED, ids=lambda raw: repr(raw[:24]))
def test_plain_json_accepts_plain_spellings(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Escapes in values, unicode, whitespace, every literal and number shape are proved plain, and
    the Python check agrees."""
    assert plain_json(raw)
    assert _python_problem(raw, monkeypatch) is None


@pytest.mark.parametrize(("raw", "why"), REFUSED, ids=[why for _, why in REFUSED])
def test_plain_json_refuses_what_it_cannot_prove(raw: bytes, why: str) -> None:
    """Invalid JSON, duplicate keys, and what the scan leaves to the Python check are not proved plain."""
    assert not plain_json(raw), why


def test_plain_json_depth_and_key_limits_are_exact() -> None:
    """64 levels and 128 keys per object are proved; one more is left to the Python check."""
    assert plain_json(b"[" * 64 + b"]" * 64)
    assert plain_json(b"{" + b",".join(b'"k%d":1' % i for i in range(128)) + b"}")
    wide = b",".join(b'"o%d":{%s}' % (i, b",".join(b'"k%d":1' % k for k in range(100))) for i in range(10))
    assert plain_json(b"{" + wide + b"}")  # many keys in all, few open at once


_SPECIAL = [b'"', b"\\", b"\\n", b"\\u00e9", b"\x00", b"\x1f", b"\x7f", b"\x80", b"\xc3\xa9", b"\xed\xa0\x80", b"\xff"]


@pytest.mark.parametrize("special", _SPECIAL, ids=repr)
def test_plain_json_string_bytes_at_every_offset(special: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a long string, a byte that needs a closer look is seen at every offset of an 8-byte word."""
    for before in range(20):
        for after in (0, 1, 7, 8, 9, 17):
            for key in (False, True):
                text = b"a" * before + special + b"b" * after
                raw = b'{"%s":1}' % text if key else b'{"k":"%s"}' % text
                python_ok = _python_problem(raw, monkeypatch) is None
                assert not plain_json(raw) or python_ok, raw  # never accepts what Python refuses
                if special in (b"\\n", b"\\u00e9", b"\x7f", b"\xc3\xa9") and not key:
                    assert plain_json(raw), raw  # valid in a value: proved plain wherever it sits
                if special in (b"\x00", b"\x1f", b"\x80", b"\xed\xa0\x80", b"\xff") or (key and special[:1] == b"\\"):
                    assert not plain_json(raw), raw


def test_plain_json_takes_bytes_only() -> None:
    """A str is a TypeError, not a verdict."""
    with pytest.raises(TypeError, match="bytes"):
        plain_json("{}")  # type: ignore[arg-type]


def _catalog_events() -> list[bytes]:
    out = []
    for event_type in REGISTRY.event_types:
        payload = example_payload(event_type)
        envelope = {"id": U, "eventType": event_type, "timestamp": DT, "payload": payload}
        out.append(msgspec.json.encode(envelope))
    return out


_ALPHABET = b'{}[]",:\\ 0123456789-+.eEu"ntrfa\x00\x1f\x7f\x80\xbf\xc3\xa9\xed\xf0\xff'


def _edited(items: list[Any], alphabet: Sequence[Any], rng: random.Random, edits: int) -> list[Any]:
    """``items`` after 1 to ``edits`` random edits: replace, insert, delete, or repeat a slice (a
    duplicated key or member, often, in JSON)."""
    out = list(items)
    for _ in range(rng.randint(1, edits)):
        i = rng.randrange(len(out) + 1)
        kind = rng.random()
        if kind < 0.4 and i < len(out):
            out[i] = rng.choice(alphabet)
        elif kind < 0.7:
            out.insert(i, rng.choice(alphabet))
        elif kind < 0.85 and i < len(out):
            del out[i]
        else:
            j = min(len(out), i + rng.randint(1, 40))
            out[j:j] = out[i:j]
    return out


def _mutate(raw: bytes, rng: random.Random) -> bytes:
    return bytes(_edited(list(raw), _ALPHABET, rng, 3))


def test_plain_json_never_accepts_what_python_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every catalog example (as published) is proved plain; of 20,000 mutations of them, each the
    scan proves is accepted by the Python check, and both verdicts occur often."""
    events = _catalog_events()
    for raw in events:
        assert plain_json(raw), raw[:120]
    rng = random.Random(2026)
    proved = refused = 0
    for n in range(20_000):
        raw = _mutate(events[n % len(events)], rng)
        if plain_json(raw):
            proved += 1
            assert _python_problem(raw, monkeypatch) is None, raw
            json.loads(raw)  # and any other parser takes it too
        else:
            refused += 1
    assert proved > 2_000 and refused > 2_000, (proved, refused)


# --- ids_ok -------------------------------------------------------------------------------------

_CHARS = "0123456789abcdefABCDEFgxzG-:.TtZz ,\n\u0660\u0663\uff11\u00e9\ud800"


def _variants(base: str, rng: random.Random, count: int) -> list[str]:
    out = [base, base[:-1], base + "0", "", base.upper(), base.lower()]
    return out + ["".join(_edited(list(base), _CHARS, rng, 2)) for _ in range(count)]


def test_ids_ok_says_exactly_what_the_patterns_say() -> None:
    """Mutations of uuids and of datetimes with 0 to 9 fraction digits, one by one and in lists:
    ids_ok is True exactly when every uuid matches UUID_PATTERN and every datetime
    STRICT_DATETIME_PATTERN, and both answers occur."""
    rng = random.Random(15)
    uuids = _variants(U, rng, 3000)
    bases = ["2026-01-23T10:11:12Z"] + [f"2026-12-31T23:59:59.{'123456789'[:n]}Z" for n in range(1, 10)]
    bases += ["0000-02-30T00:00:00Z", "2026-09-19T20:09:09.0Z", "1999-10-10T19:49:50Z"]
    datetimes = [v for base in bases for v in _variants(base, rng, 600)]
    answers = set()
    for value in uuids:
        expected = UUID_RE.match(value) is not None
        assert ids_ok([value], []) is expected, value
        assert ids_ok([U, value, U], DT) is expected, value
        answers.add(expected)
    for value in datetimes:
        expected = DATETIME_RE.match(value) is not None
        assert ids_ok([], value) is expected, value
        assert ids_ok([U], [DT, value]) is expected, value
        answers.add(expected)
    assert answers == {True, False}
    valid = [v for v in datetimes if DATETIME_RE.match(v)]
    assert len(valid) > 100 and len(set(datetimes)) - len(valid) > 1000


def test_ids_ok_refuses_non_strings_and_checks_its_arguments() -> None:
    """A non-string value is not valid; wrong arguments are a TypeError."""
    assert not ids_ok([None], [])  # type: ignore[list-item]
    assert not ids_ok([], [b"2026-01-23T10:11:12Z"])  # type: ignore[list-item]
    assert not ids_ok([], 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ids_ok((U,), [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ids_ok([U])  # type: ignore[call-arg]


def test_catalog_examples_decode_alike_with_and_without_the_c_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event type's example payload, and the same with its first uuid or datetime broken, gets
    the same value or error from decoders built with and without the C check."""
    from schemas import _checks

    shapes = {t: REGISTRY.get(t).variants[0][1] for t in REGISTRY.event_types}
    with_c = {t: _checks.CheckedDecoder(cls) for t, cls in shapes.items()}
    monkeypatch.setattr(_checks, "ids_ok", None)
    without = {t: _checks.CheckedDecoder(cls) for t, cls in shapes.items()}
    errors = 0
    for event_type, decoder in with_c.items():
        good = msgspec.json.encode(example_payload(event_type))
        broken = re.sub(rb'"(' + U[:8].encode() + rb"|\d{4}-\d\d-\d\dT)", rb'"x', good, count=1)
        for data in (good, broken):
            outcomes = []
            for dec in (decoder, without[event_type]):
                try:
                    outcomes.append(("ok", dec.decode(data)))
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    outcomes.append(("error", str(exc)))
            assert outcomes[0] == outcomes[1], (event_type, data[:200])
            errors += outcomes[0][0] == "error"
    assert errors > 50, errors


# --- lacks_key ----------------------------------------------------------------------------------


def test_lacks_key_answers_as_the_python_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over catalog examples, their mutations (escapes included) and every union shape's required
    keys: lacks_key gives the registry's Python answer, and both answers occur."""
    from schemas import _registry

    plans = [_registry.REGISTRY._plan(t) for t in REGISTRY.event_types]
    keysets = {(names, quoted, quoted_str) for plan in plans for _, _, names, quoted, quoted_str in plan if names}
    assert len(keysets) >= 5
    keysets |= {(frozenset({"a"}), (b'"a"',), ('"a"',)), (frozenset(), (), ())}
    rng = random.Random(7)
    datas = [msgspec.json.encode(example_payload(t)) for t in REGISTRY.event_types]
    datas += [_mutate(d, rng) for d in datas for _ in range(3)]
    datas += [b"", b'"', b'"a', b'a"', b'{"a":1}', b'{"\\u0061":1}', b'x"a"']
    monkeypatch.setattr(_registry, "lacks_key", None)
    answers = set()
    for data in datas:
        for names, quoted, quoted_str in keysets:
            expected = _registry._lacks(data, None, names, quoted, quoted_str)
            assert lacks_key(data, quoted) is expected, (data[:120], quoted)
            answers.add(expected)
    assert answers == {True, False}


def test_lacks_key_checks_its_arguments() -> None:
    """Wrong argument types are a TypeError, not an answer."""
    with pytest.raises(TypeError):
        lacks_key("{}", (b'"a"',))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        lacks_key(b"{}", [b'"a"'])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        lacks_key(b"{}", ('"a"',))  # type: ignore[arg-type]
