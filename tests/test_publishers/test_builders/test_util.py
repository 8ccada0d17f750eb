"""Shared builder helpers: envelope, diffs, keys, threshold and window crossings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from publishers._context import Actor
from publishers.builders import _util
from schemas import FieldChange, Payload

from ._factories import NOW, NOW_ISO, TENANT, USER, make_ctx, uid


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        pytest.param(Actor.user(USER), {"actor_type": "USER", "actor_user_id": USER}, id="user"),
        pytest.param(
            Actor.contact(uid("contact")),
            {"actor_type": "CONTACT", "actor_contact_id": uid("contact")},
            id="contact",
        ),
        pytest.param(Actor.system(), {"actor_type": "SYSTEM"}, id="system"),
        pytest.param(None, {}, id="no-actor"),
    ],
)
def test_envelope_overlays_the_actor(actor: Actor | None, expected: dict[str, Any]) -> None:
    """The envelope holds tenant and time from the ctx plus exactly the actor's reference fields."""
    env = _util.envelope(make_ctx(actor=actor))
    assert env == {"tenant_id": TENANT, "occurred_at": NOW_ISO, **expected}


def test_builders_refuse_a_ctx_without_time() -> None:
    """A ctx without occurred_at is refused: builders never read the clock."""
    with pytest.raises(ValueError, match="occurred_at"):
        _util.envelope(make_ctx(occurred_at=None))


def test_actor_user_id_only_for_users() -> None:
    """``...ByUserId`` is filled for a user actor and left out otherwise."""
    assert _util.actor_user_id(make_ctx()) == USER
    assert _util.actor_user_id(make_ctx(actor=Actor.system())) is msgspec.UNSET


class _Snap(msgspec.Struct, frozen=True, kw_only=True):
    entity_id: str
    client_name: str | None = None
    due_at: datetime | None = None
    amount: Decimal = Decimal(0)
    custom_fields: dict[str, Any] = {}


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param(_Snap(entity_id="a"), {}, id="nothing-changed"),
        pytest.param(
            _Snap(entity_id="a", client_name="Acme"),
            {"clientName": FieldChange(previous=None, new="Acme")},
            id="camel-case-path",
        ),
        pytest.param(
            _Snap(entity_id="a", custom_fields={"region": "eu"}),
            {"customFields.region": FieldChange(previous=None, new="eu")},
            id="nested-dotted-path",
        ),
        pytest.param(
            _Snap(entity_id="a", due_at=datetime(2026, 1, 1, tzinfo=UTC)),
            {"dueAt": FieldChange(previous=None, new="2026-01-01T00:00:00.000Z")},
            id="datetime-as-wire-string",
        ),
        pytest.param(
            _Snap(entity_id="a", amount=Decimal("1.50")),
            {"amount": FieldChange(previous="0", new="1.50")},
            id="decimal-as-string",
        ),
    ],
)
def test_diff_entities_reports_changed_paths(after: _Snap, expected: dict[str, FieldChange]) -> None:
    """Only differing fields appear, as camelCase (dotted for nested maps) with JSON values."""
    diff = _util.diff_entities(_Snap(entity_id="a"), after, ignore=("entity_id",))
    assert diff.changes == expected
    assert diff.updated_fields == list(expected)
    assert bool(diff) is bool(expected)


def test_diff_entities_treats_equal_instants_in_other_zones_as_equal() -> None:
    """The same instant written in another offset is not a change."""
    utc = _Snap(entity_id="a", due_at=datetime(2026, 1, 1, 12, tzinfo=UTC))
    cet = _Snap(entity_id="a", due_at=datetime(2026, 1, 1, 13, tzinfo=timezone(timedelta(hours=1))))
    assert not _util.diff_entities(utc, cet)


def test_diff_entities_accepts_mappings() -> None:
    """Plain mappings diff like Structs, restricted to ``fields`` when given."""
    diff = _util.diff_entities({"a_b": 1, "c": 1}, {"a_b": 2, "c": 2}, fields=["a_b"])
    assert diff.updated_fields == ["aB"]


@pytest.mark.parametrize(
    ("before", "after", "limit", "crossed"),
    [
        pytest.param(7.0, 8.0, 8.0, True, id="reaches-limit"),
        pytest.param(7.99, 9.0, 8.0, True, id="jumps-over"),
        pytest.param(8.0, 9.0, 8.0, False, id="already-at-limit"),
        pytest.param(9.0, 7.0, 8.0, False, id="goes-down"),
        pytest.param(1.0, 2.0, 8.0, False, id="stays-below"),
        pytest.param(0.0, 5.0, 0.0, False, id="no-limit"),
    ],
)
def test_threshold_crossed_only_upwards(before: float, after: float, limit: float, crossed: bool) -> None:
    """A threshold is crossed only when before < limit <= after, with a positive limit."""
    assert _util.threshold_crossed(before, after, limit) is crossed


_W = timedelta(days=7)


@pytest.mark.parametrize(
    ("target_before", "target_after", "now_before", "entered"),
    [
        pytest.param(None, NOW + timedelta(days=3), NOW, True, id="set-inside"),
        pytest.param(NOW + timedelta(days=30), NOW + timedelta(days=3), NOW, True, id="moved-inside"),
        pytest.param(NOW + timedelta(days=4), NOW + timedelta(days=3), NOW, False, id="was-inside"),
        pytest.param(None, NOW + timedelta(days=8), NOW, False, id="outside"),
        pytest.param(None, NOW - timedelta(days=1), NOW, False, id="past"),
        pytest.param(
            NOW + timedelta(days=6), NOW + timedelta(days=6), NOW - timedelta(days=2), True, id="time-moved-it-in"
        ),
        pytest.param(
            NOW + timedelta(days=6), NOW + timedelta(days=6), NOW - timedelta(hours=1), False, id="scan-again"
        ),
    ],
)
def test_window_entered_needs_a_crossing(
    target_before: datetime | None, target_after: datetime, now_before: datetime, entered: bool
) -> None:
    """A deadline counts once: when it enters the window, not while it stays in it."""
    got = _util.window_entered(
        target_before=target_before, target_after=target_after, now_before=now_before, now_after=NOW, window=_W
    )
    assert got is entered


def test_window_entered_respects_the_minimum() -> None:
    """A deadline closer than the minimum is not inside the window."""
    soon = NOW + timedelta(hours=5)
    assert not _util.window_entered(
        target_before=None, target_after=soon, now_before=NOW, now_after=NOW, window=_W, minimum=timedelta(hours=24)
    )


@pytest.mark.parametrize(
    ("target", "today_before", "entered"),
    [
        pytest.param(date(2026, 4, 9), date(2026, 3, 9), True, id="day-30-enters"),
        pytest.param(date(2026, 4, 9), date(2026, 3, 10), False, id="already-inside"),
        pytest.param(date(2026, 4, 10), date(2026, 3, 9), False, id="day-31-outside"),
        pytest.param(date(2026, 3, 10), date(2026, 3, 9), False, id="today-was-inside-yesterday"),
    ],
)
def test_date_window_entered(target: date, today_before: date, entered: bool) -> None:
    """The calendar-day window includes the deadline day and the 30th day ahead, and counts once."""
    got = _util.date_window_entered(
        target_before=target,
        target_after=target,
        today_before=today_before,
        today_after=date(2026, 3, 10),
        window_days=30,
    )
    assert got is entered


def test_time_bucket_groups_five_minutes() -> None:
    """Times in the same 5-minute slot share a bucket; the next slot does not."""
    size = timedelta(minutes=5)
    assert _util.time_bucket(NOW, size) == _util.time_bucket(NOW + timedelta(minutes=4, seconds=59), size)
    assert _util.time_bucket(NOW, size) + 1 == _util.time_bucket(NOW + timedelta(minutes=5), size)


def test_idem_key_format() -> None:
    """Keys are the lowercased type then the parts, ``-`` standing for None."""
    assert _util.idem_key("TICKET_UPDATED", "t", None, 3) == "ticket_updated:t:-:3"


def test_days_until_rounds_up() -> None:
    """Part of a day counts as a day; the past counts as zero."""
    assert _util.days_until(NOW + timedelta(hours=23), NOW) == 1
    assert _util.days_until(NOW - timedelta(hours=1), NOW) == 0


@pytest.mark.parametrize("value", [pytest.param(1.5, id="float"), pytest.param(True, id="bool")])
def test_money_refuses_inexact_types(value: Any) -> None:
    """Money is a string on the wire; floats (and bools) are refused."""
    with pytest.raises(TypeError):
        _util.money(value)


def test_norm_status_ignores_case_and_separators() -> None:
    """Status names compare case- and separator-insensitively."""
    assert _util.norm_status(" En-Route ") == _util.norm_status("en route") == "en_route"


def test_iso_converts_to_utc_and_refuses_naive() -> None:
    """Aware datetimes become ``...Z`` in UTC; naive ones are refused."""
    assert _util.iso(datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == "2026-01-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="naive"):
        _util.iso(datetime(2026, 1, 1))


def test_emit_refuses_a_struct_that_is_no_event_payload() -> None:
    """emit() derives the event type from the registry and refuses unknown Structs."""

    class Stray(Payload, frozen=True, kw_only=True):
        x: int = 0

    with pytest.raises(TypeError, match="Stray"):
        _util.emit(Stray())


def test_digest_is_order_independent_for_mappings() -> None:
    """Fingerprints of equal mappings match whatever their key order."""
    assert _util.digest({"a": 1, "b": 2}) == _util.digest({"b": 2, "a": 1})
    assert _util.digest({"a": 1}) != _util.digest({"a": 2})


def test_ctx_now_is_the_occurred_at() -> None:
    """The builder's "now" is exactly the ctx time."""
    assert _util.ctx_now(make_ctx()) == NOW
