"""The one-pass uuid/datetime checks accept and reject exactly what the patterns do, with the same
errors, with the C check (schemas/_speedups.c) and with the Python one (a build without a compiler)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from schemas import REGISTRY, EventValidationError, _checks, events
from schemas._checks import CheckedDecoder, _strict
from schemas._types import is_iso_datetime, is_uuid

U1 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
U2 = "A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D"
DT = "2026-01-23T10:11:12.345Z"

#: Strings near the two rules' edges: commas and separators, hex letters in dates, non-ASCII digits,
#: ranges, fraction lengths, escapes and lone surrogates, the template's own letter ``x``.
TRICKY = [
    U1,
    U2,
    U1.upper(),
    "",
    U1[:-1],
    U1 + "0",
    U1 + "\n",
    U1.replace("-", ""),
    U1.replace("a", "g"),
    U1.replace("7", "x"),
    U1.replace("-", ",", 1),
    f"{U1},{U1}",
    f"{U1[:20]},{U1[20:]}",
    U1.replace("7", "\uff17"),
    U1[:-1] + "\ud800",
    DT,
    "2026-01-23T10:11:12Z",
    "2026-01-23T10:11:12.1Z",
    "2026-01-23T10:11:12.123456Z",
    "2026-01-23T10:11:12.1234567Z",
    "2026-01-23T10:11:12.123456789012345Z",
    "2026-01-23T10:11:12.Z",
    "2026-01-23T10:11:12.12a4Z",
    "2026-01-23T10:11:12.123456aZ",
    "2026-0a-23T10:11:12Z",
    "2026-01-23t10:11:12Z",
    "2026-01-23 10:11:12Z",
    "2026-01-23T10:11:12.345+00:00",
    "2026-01-23T10:11:12.345",
    "2026-01-23T10:11Z",
    "20260123T101112Z",
    "2026-02-30T10:11:12Z",
    "2026-02-31T23:59:59.999Z",
    "0000-01-01T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-00-01T00:00:00Z",
    "2026-01-32T00:00:00Z",
    "2026-01-00T00:00:00Z",
    "2026-01-23T24:00:00Z",
    "2026-01-23T23:60:00Z",
    "2026-01-23T23:59:60Z",
    "\uff12\uff10\uff12\uff16-01-23T10:11:12Z",
    "\u0662\u0660\u0662\u0666-01-23T10:11:12Z",
    f"{DT},{DT}",
    DT + "\n",
    "x" * 36,
]

#: Struct -> a valid document and the wire paths of its uuid/datetime values.
CASES: list[tuple[type[Any], dict[str, Any], list[tuple[str | int, ...]]]] = [
    (
        events.TicketUpdated,
        {"tenantId": "t", "occurredAt": DT, "ticketId": U1, "actorUserId": U2, "updatedByUserId": U1},
        [("occurredAt",), ("ticketId",), ("actorUserId",), ("updatedByUserId",), ("actorContactId",)],
    ),
    (
        events.TicketSplit,
        {"tenantId": "t", "occurredAt": DT, "originalTicketId": U1, "newTicketIds": [U1, U2], "splitAt": DT},
        [("occurredAt",), ("splitAt",), ("originalTicketId",), ("newTicketIds", 0), ("newTicketIds", 1)],
    ),
    (
        events.TicketCreatedLegacy,
        {"tenantId": U1, "ticketId": U2, "userId": U1, "comment": {"id": U2, "content": "c", "author": "a"}},
        [("tenantId",), ("comment", "id"), ("userId",)],
    ),
    (
        events.AppointmentRescheduled,
        dict(
            tenantId="t",
            occurredAt=DT,
            appointmentId=U1,
            previousStartAt=DT,
            previousEndAt="2026-01-23T10:11:12Z",
            newStartAt=DT,
            newEndAt=DT,
            timezone="UTC",
        ),
        [("occurredAt",), ("previousEndAt",), ("newEndAt",), ("appointmentId",)],
    ),
]


def _with(doc: dict[str, Any], path: tuple[str | int, ...], value: str) -> bytes:
    """``doc`` with ``value`` at ``path``, as JSON (a lone surrogate as its escape)."""
    out: Any = msgspec.json.decode(msgspec.json.encode(doc))
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    try:
        return msgspec.json.encode(out)
    except UnicodeEncodeError:
        return json.dumps(out).encode()


def _outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return "error", str(exc)


@pytest.fixture(params=["c", "python"])
def native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the decoders built in the test use the C check (the default build) or the Python one."""
    if request.param == "python":
        monkeypatch.setattr(_checks, "ids_ok", None)
    else:
        assert _checks.ids_ok is not None, "schemas._speedups was not built"
    return request.param == "c"


@pytest.mark.parametrize(("cls", "doc", "paths"), [pytest.param(*c, id=c[0].__name__) for c in CASES])
def test_checked_decoder_agrees_with_the_patterns(
    cls: type[Any], doc: dict[str, Any], paths: list[Any], native: bool
) -> None:
    """Every tricky value in every uuid/datetime position: same value or same error as the patterns' decoder."""
    strict = msgspec.json.Decoder(_strict(cls, {})).decode
    decoder = CheckedDecoder(cls)
    assert ("ids_ok(" in decoder.attempt.source) == native  # type: ignore[attr-defined]
    assert decoder.decode(msgspec.json.encode(doc)) == msgspec.json.decode(msgspec.json.encode(doc), type=cls)
    for path in paths:
        for value in TRICKY:
            data = _with(doc, path, value)
            expected = _outcome(strict, data)
            got = _outcome(decoder.decode, data)
            if expected[0] == "ok":
                assert got == ("ok", msgspec.json.decode(data, type=cls)), (path, value)
            else:
                assert got == expected, (path, value)
            assert (decoder.attempt(data) is not None) == (expected[0] == "ok"), (path, value)


def test_a_value_cannot_hide_a_comma_between_two_uuids() -> None:
    """One field holding ``uuid,uuid`` (in place of two values) is rejected, in a field and in a list."""
    data = msgspec.json.encode({"tenantId": "t", "occurredAt": DT, "ticketId": f"{U1},{U2}"})
    with pytest.raises(EventValidationError) as info:
        REGISTRY.decode_payload("TICKET_UPDATED", data)
    assert info.value.path == "$.payload.ticketId"
    split = {"tenantId": "t", "occurredAt": DT, "originalTicketId": U1, "newTicketIds": [f"{U1},{U2}"]}
    with pytest.raises(EventValidationError) as info:
        REGISTRY.decode_payload("TICKET_SPLIT", msgspec.json.encode(split))
    assert info.value.path == "$.payload.newTicketIds[0]"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\uff12\uff10\uff12\uff16-01-23T10:11:12Z", id="fullwidth"),
        pytest.param("\u0662\u0660\u0662\u0666-01-23T10:11:12Z", id="arabic-indic"),
    ],
)
def test_datetimes_take_ascii_digits_only(value: str) -> None:
    """Non-ASCII digits are refused, as JavaScript's ``\\d`` (the reference's) refuses them."""
    assert not is_iso_datetime(value)
    data = msgspec.json.encode({"tenantId": "t", "occurredAt": value, "ticketId": U1})
    with pytest.raises(EventValidationError) as info:
        REGISTRY.decode_payload("TICKET_CREATED", data)
    assert info.value.path == "$.payload.occurredAt"


def test_values_fromisoformat_refuses_but_the_pattern_allows_are_accepted() -> None:
    """A 30 February, year 0000 and 9 fraction digits are valid: the strict twin has the last word."""
    for value in ("2026-02-30T10:11:12Z", "0000-01-01T00:00:00Z", "2026-01-23T10:11:12.123456789Z"):
        data = msgspec.json.encode({"tenantId": "t", "occurredAt": value, "ticketId": U1})
        assert REGISTRY.decode_payload("TICKET_CREATED", data).value.occurred_at == value


def test_convert_checks_the_same_rules(native: bool) -> None:
    """``CheckedDecoder.convert`` of builtins refuses a bad uuid with the field's path, and accepts a good one."""
    decoder = CheckedDecoder(events.TicketCreatedLegacy)
    good = {"tenantId": U1, "ticketId": U2, "userId": U1}
    assert decoder.convert(good).user_id == U1
    with pytest.raises(msgspec.ValidationError, match=r"userId"):
        decoder.convert({**good, "userId": "nope"})
    assert is_uuid(U2) and not is_uuid(U1 + "\n")
