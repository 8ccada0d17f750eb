"""Scheduling builders: appointments, schedule blocks, capacity crossing, technician dispatch."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from publishers.builders import (
    AppointmentSnapshot,
    ScheduleEntrySnapshot,
    appointment_changed,
    capacity_changed,
    hours_by_utc_date,
    is_schedule_block,
    schedule_block_changed,
    schedule_entry_changed,
    technician_dispatch_changed,
)

from ._factories import NOW, NOW_ISO, USER, check, make_ctx, only, types, uid, wire

APPT, TICKET, AGENT = uid("appointment"), uid("ticket"), uid("agent")
TECH_A, TECH_B = uid("tech-a"), uid("tech-b")


def make_appointment(**overrides: Any) -> AppointmentSnapshot:
    """A scheduled one-hour appointment tomorrow on a ticket."""
    fields: dict[str, Any] = {
        "appointment_id": APPT,
        "start_at": NOW + timedelta(days=1),
        "end_at": NOW + timedelta(days=1, hours=1),
        "timezone": "Europe/Berlin",
        "ticket_id": TICKET,
    }
    fields.update(overrides)
    return AppointmentSnapshot(**fields)


def test_appointment_created() -> None:
    """A new appointment gives APPOINTMENT_CREATED keyed by its id, creator from the actor."""
    ev = only(check(appointment_changed(None, make_appointment(assignee_id=AGENT), make_ctx())), "APPOINTMENT_CREATED")
    assert ev.idempotency_key == f"appointment_created:{APPT}"
    assert wire(ev)["createdByUserId"] == USER
    assert wire(ev)["assigneeId"] == AGENT


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param({}, {}, [], id="nothing-changed"),
        pytest.param({}, {"start_at": NOW + timedelta(days=2)}, ["APPOINTMENT_RESCHEDULED"], id="moved"),
        pytest.param({}, {"status": "Cancelled"}, ["APPOINTMENT_CANCELED"], id="cancelled-spelling"),
        pytest.param({}, {"status": "canceled"}, ["APPOINTMENT_CANCELED"], id="canceled"),
        pytest.param({}, {"status": "COMPLETED"}, ["APPOINTMENT_COMPLETED"], id="completed-any-case"),
        pytest.param({}, {"status": "No-Show", "no_show_party": "agent"}, ["APPOINTMENT_NO_SHOW"], id="no-show"),
        pytest.param({"status": "canceled"}, {"status": "Cancelled"}, [], id="same-status-other-spelling"),
        pytest.param({}, {"status": "confirmed"}, [], id="other-status"),
        pytest.param({}, {"assignee_id": AGENT}, ["APPOINTMENT_ASSIGNED"], id="assigned"),
        pytest.param({"assignee_id": AGENT}, {}, [], id="unassigned-has-no-event"),
    ],
)
def test_appointment_transitions(before: dict[str, Any], after: dict[str, Any], expected: list[str]) -> None:
    """Each appointment transition gives its event; nothing else does."""
    events = check(appointment_changed(make_appointment(**before), make_appointment(**after), make_ctx()))
    assert types(events) == expected


def test_rescheduled_payload_and_status_hooks() -> None:
    """Reschedule carries both slots; status events carry normalised from/to hooks."""
    after = make_appointment(start_at=NOW + timedelta(days=2), end_at=NOW + timedelta(days=2, hours=1))
    doc = wire(check(appointment_changed(make_appointment(), after, make_ctx()))[0])
    assert doc["previousStartAt"] == "2026-03-11T12:00:00.000Z"
    assert doc["newStartAt"] == "2026-03-12T12:00:00.000Z"
    ev = check(appointment_changed(make_appointment(), make_appointment(status="No Show"), make_ctx()))[0]
    assert (ev.from_state, ev.to_state, ev.correlation_key) == ("scheduled", "no_show", TICKET)
    assert wire(ev)["party"] == "customer"


def make_entry(**overrides: Any) -> ScheduleEntrySnapshot:
    """A private ad-hoc entry owned by one user: a schedule block."""
    fields: dict[str, Any] = {
        "entry_id": uid("entry"),
        "start_at": NOW,
        "end_at": NOW + timedelta(hours=2),
        "work_item_type": "ad_hoc",
        "is_private": True,
        "assigned_user_ids": (AGENT,),
        "title": "Dentist",
    }
    fields.update(overrides)
    return ScheduleEntrySnapshot(**fields)


@pytest.mark.parametrize(
    ("overrides", "is_block"),
    [
        pytest.param({}, True, id="private-ad-hoc-one-owner"),
        pytest.param({"is_private": False}, False, id="public"),
        pytest.param({"work_item_type": "ticket", "work_item_id": TICKET}, False, id="work-item"),
        pytest.param({"assigned_user_ids": (AGENT, TECH_A)}, False, id="two-owners"),
        pytest.param({"assigned_user_ids": ()}, False, id="no-owner"),
        pytest.param({"work_item_type": "AD_HOC"}, True, id="type-any-case"),
    ],
)
def test_is_schedule_block(overrides: dict[str, Any], is_block: bool) -> None:
    """A block is a private ad-hoc entry with no work item and exactly one owner."""
    assert is_schedule_block(make_entry(**overrides)) is is_block


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {}, ["SCHEDULE_BLOCK_CREATED"], id="created-as-block"),
        pytest.param({}, None, ["SCHEDULE_BLOCK_DELETED"], id="block-deleted"),
        pytest.param({"is_private": False}, {}, ["SCHEDULE_BLOCK_CREATED"], id="became-block"),
        pytest.param({}, {"is_private": False}, ["SCHEDULE_BLOCK_DELETED"], id="stopped-being-block"),
        pytest.param({}, {"end_at": NOW + timedelta(hours=3)}, [], id="block-stays-block"),
        pytest.param(None, {"is_private": False}, [], id="created-not-block"),
        pytest.param({"is_private": False}, None, [], id="non-block-deleted"),
    ],
)
def test_schedule_block_changes(
    before: dict[str, Any] | None, after: dict[str, Any] | None, expected: list[str]
) -> None:
    """Block events fire when an entry becomes or stops being a block, and only then."""
    prev = None if before is None else make_entry(**before)
    new = None if after is None else make_entry(**after)
    assert types(check(schedule_block_changed(prev, new, make_ctx(), timezone="UTC"))) == expected


@pytest.mark.parametrize(
    ("title", "notes", "reason"),
    [
        pytest.param("Dentist", None, "Dentist", id="title"),
        pytest.param("Busy", "school run", "school run", id="busy-uses-notes"),
        pytest.param("busy", None, None, id="busy-without-notes"),
    ],
)
def test_schedule_block_reason_inferred(title: str, notes: str | None, reason: str | None) -> None:
    """The block reason is the title unless it is just "Busy", then the notes."""
    ev = check(schedule_block_changed(None, make_entry(title=title, notes=notes), make_ctx(), timezone="UTC"))[0]
    doc = wire(ev)
    assert doc.get("reason") == reason
    assert doc["ownerId"] == AGENT and doc["ownerType"] == "user"


def visit(**overrides: Any) -> ScheduleEntrySnapshot:
    """A ticket visit with two technicians."""
    fields: dict[str, Any] = {
        "entry_id": uid("visit"),
        "start_at": NOW,
        "end_at": NOW + timedelta(hours=1),
        "work_item_type": "ticket",
        "work_item_id": TICKET,
        "assigned_user_ids": (TECH_A, TECH_B),
        "status": "scheduled",
    }
    fields.update(overrides)
    return ScheduleEntrySnapshot(**fields)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param("en_route", "TECHNICIAN_EN_ROUTE", id="en_route"),
        pytest.param("En Route", "TECHNICIAN_EN_ROUTE", id="En-Route-spaces"),
        pytest.param("EN-ROUTE", "TECHNICIAN_EN_ROUTE", id="EN-ROUTE"),
        pytest.param("enroute", "TECHNICIAN_EN_ROUTE", id="enroute"),
        pytest.param("Arrived", "TECHNICIAN_ARRIVED", id="arrived"),
        pytest.param("on-site", "TECHNICIAN_ARRIVED", id="on-site"),
        pytest.param("OnSite", "TECHNICIAN_ARRIVED", id="OnSite"),
        pytest.param("Checked Out", "TECHNICIAN_CHECKED_OUT", id="checked-out"),
        pytest.param("checkedout", "TECHNICIAN_CHECKED_OUT", id="checkedout"),
    ],
)
def test_technician_status_variants(status: str, expected: str) -> None:
    """Every spelling of a dispatch status gives one event per assigned technician."""
    events = check(technician_dispatch_changed(visit(), visit(status=status), make_ctx()))
    assert types(events) == [expected, expected]
    assert sorted(wire(e)["technicianUserId"] for e in events) == sorted([TECH_A, TECH_B])
    assert all(wire(e)["ticketId"] == TICKET and wire(e)["appointmentId"] == uid("visit") for e in events)
    assert len({e.idempotency_key for e in events}) == 2


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param({"status": "en route"}, {"status": "EN_ROUTE"}, [], id="same-status-respelled"),
        pytest.param({}, {"status": "confirmed"}, [], id="other-status"),
        pytest.param({}, {}, [], id="nothing-changed"),
        pytest.param({"assigned_user_ids": (TECH_A,)}, {}, ["TECHNICIAN_DISPATCHED"], id="one-technician-added"),
        pytest.param({}, {"assigned_user_ids": (TECH_A,)}, [], id="technician-removed"),
        pytest.param(
            {"work_item_type": "ad_hoc"}, {"work_item_type": "ad_hoc", "status": "en route"}, [], id="not-a-visit"
        ),
    ],
)
def test_technician_events_need_a_transition(
    before: dict[str, Any], after: dict[str, Any], expected: list[str]
) -> None:
    """Technician events need a newly assigned technician or a status entered, on a visit."""
    assert types(check(technician_dispatch_changed(visit(**before), visit(**after), make_ctx()))) == expected


def test_new_visit_dispatches_every_technician() -> None:
    """A new visit dispatches all its technicians, dispatcher from the actor."""
    events = check(technician_dispatch_changed(None, visit(work_item_type="Appointment_Request"), make_ctx()))
    assert types(events) == ["TECHNICIAN_DISPATCHED"] * 2
    assert all(wire(e)["dispatchedByUserId"] == USER for e in events)
    assert all("ticketId" not in wire(e) for e in events)


def test_schedule_entry_changed_combines_blocks_and_dispatch() -> None:
    """One call gives block events and technician events of the same change."""
    block = make_entry()
    assert types(schedule_entry_changed(None, block, make_ctx(), timezone="UTC")) == ["SCHEDULE_BLOCK_CREATED"]
    assert types(schedule_entry_changed(visit(), visit(status="arrived"), make_ctx(), timezone="UTC")) == [
        "TECHNICIAN_ARRIVED",
        "TECHNICIAN_ARRIVED",
    ]
    assert types(schedule_entry_changed(block, None, make_ctx(), timezone="UTC")) == ["SCHEDULE_BLOCK_DELETED"]


@pytest.mark.parametrize(
    ("before", "after", "count"),
    [
        pytest.param(6.0, 8.0, 1, id="reaches-limit"),
        pytest.param(7.5, 9.25, 1, id="jumps-over"),
        pytest.param(8.0, 9.0, 0, id="already-over"),
        pytest.param(9.0, 7.0, 0, id="drops"),
        pytest.param(2.0, 4.0, 0, id="stays-under"),
    ],
)
def test_capacity_threshold_only_on_crossing(before: float, after: float, count: int) -> None:
    """CAPACITY_THRESHOLD_REACHED only when booked hours cross the limit upwards."""
    events = check(
        capacity_changed(
            team_id=uid("team"),
            day=date(2026, 3, 10),
            capacity_limit=8,
            before_booked=before,
            after_booked=after,
            ctx=make_ctx(),
        )
    )
    assert len(events) == count
    if events:
        doc = wire(events[0])
        assert (doc["date"], doc["capacityLimit"], doc["currentBooked"], doc["triggeredAt"]) == (
            "2026-03-10",
            8,
            after,
            NOW_ISO,
        )
        assert events[0].idempotency_key == f"capacity-threshold-reached:{uid('team')}:2026-03-10"


def test_hours_by_utc_date_splits_at_midnight() -> None:
    """An entry over midnight books its hours on both UTC days."""
    start = datetime(2026, 3, 10, 22, tzinfo=NOW.tzinfo)
    assert hours_by_utc_date(start, start + timedelta(hours=3)) == {date(2026, 3, 10): 2.0, date(2026, 3, 11): 1.0}
    assert hours_by_utc_date(start, start) == {}
