"""Ticket builders: field transitions, assignment, messages, time, merge/split, SLA stages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from publishers.builders import (
    SlaStageSnapshot,
    TicketMessage,
    TicketSnapshot,
    TicketTimeEntry,
    sla_stage_changed,
    sla_stage_overdue,
    ticket_changed,
    ticket_merged,
    ticket_message_added,
    ticket_split,
    ticket_time_entry_added,
)
from schemas import REGISTRY

from ._factories import NOW, NOW_ISO, USER, check, ctx_at, later, make_ctx, only, types, uid, wire

TICKET = uid("ticket")
BOARD_A, BOARD_B = uid("board-a"), uid("board-b")
AGENT, TEAM = uid("agent"), uid("team")


def make_ticket(**overrides: Any) -> TicketSnapshot:
    """An open, unassigned ticket on board A; override any field."""
    fields: dict[str, Any] = {
        "ticket_id": TICKET,
        "status_id": "open",
        "title": "Printer on fire",
        "priority_id": "p3",
        "board_id": BOARD_A,
    }
    fields.update(overrides)
    return TicketSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param({}, {}, [], id="nothing-changed"),
        pytest.param({}, {"status_id": "pending"}, ["TICKET_STATUS_CHANGED", "TICKET_UPDATED"], id="status"),
        pytest.param(
            {"status_id": "closed", "is_closed": True},
            {"status_id": "open"},
            ["TICKET_STATUS_CHANGED", "TICKET_REOPENED", "TICKET_UPDATED"],
            id="reopened",
        ),
        pytest.param(
            {"status_id": "resolved", "is_closed": True},
            {"status_id": "closed", "is_closed": True},
            ["TICKET_STATUS_CHANGED", "TICKET_UPDATED"],
            id="closed-to-closed-is-no-reopen",
        ),
        pytest.param({}, {"priority_id": "p1"}, ["TICKET_PRIORITY_CHANGED", "TICKET_UPDATED"], id="priority"),
        pytest.param({"priority_id": None}, {"priority_id": "p1"}, ["TICKET_UPDATED"], id="priority-first-set"),
        pytest.param({}, {"board_id": BOARD_B}, ["TICKET_QUEUE_CHANGED", "TICKET_UPDATED"], id="queue"),
        pytest.param({}, {"escalated": True}, ["TICKET_ESCALATED", "TICKET_UPDATED"], id="escalated"),
        pytest.param({"escalated": True}, {"escalated": False}, ["TICKET_UPDATED"], id="de-escalated"),
        pytest.param({}, {"assignee_id": AGENT}, ["TICKET_ASSIGNED", "TICKET_UPDATED"], id="assigned"),
        pytest.param({"assignee_id": AGENT}, {}, ["TICKET_UNASSIGNED", "TICKET_UPDATED"], id="unassigned"),
        pytest.param({}, {"title": "Printer fixed"}, ["TICKET_UPDATED"], id="title-only"),
        pytest.param({}, {"custom_fields": {"site": "HQ"}}, ["TICKET_UPDATED"], id="custom-field"),
    ],
)
def test_ticket_changed_detects_each_transition(
    before: dict[str, Any], after: dict[str, Any], expected: list[str]
) -> None:
    """Each field transition gives its own event, in order, plus TICKET_UPDATED; no change gives none."""
    events = check(ticket_changed(make_ticket(**before), make_ticket(**after), make_ctx()))
    assert types(events) == expected


def test_status_change_sets_hooks_and_payload() -> None:
    """A status change carries previous/new ids, reason, the from/to hooks and the ticket correlation."""
    events = check(ticket_changed(make_ticket(), make_ticket(status_id="pending"), make_ctx(), reason="waiting"))
    ev = only(events, "TICKET_STATUS_CHANGED")
    assert (ev.from_state, ev.to_state, ev.correlation_key) == ("open", "pending", TICKET)
    expected = {
        "previousStatusId": "open",
        "newStatusId": "pending",
        "reason": "waiting",
        "changedAt": NOW_ISO,
        "actorType": "USER",
        "actorUserId": USER,
    }
    doc = wire(ev)
    assert {k: doc.get(k) for k in expected} == expected


def test_assignment_keeps_the_legacy_user_id() -> None:
    """TICKET_ASSIGNED carries previous/new assignee and the legacy ``userId`` (so legacy consumers match)."""
    before = make_ticket(assignee_id=uid("old-agent"))
    ev = only(check(ticket_changed(before, make_ticket(assignee_id=AGENT), make_ctx())), "TICKET_ASSIGNED")
    doc = wire(ev)
    assert doc["userId"] == doc["newAssigneeId"] == doc["assignedToUserId"] == AGENT
    assert doc["previousAssigneeId"] == uid("old-agent")
    assert doc["assignedByUserId"] == USER
    typed = REGISTRY.decode_payload("TICKET_ASSIGNED", msgspec.json.encode(ev.payload))
    assert typed.variant == "legacy"


def test_team_assignment_has_no_legacy_user_id() -> None:
    """A team is no user: no ``userId``/``assignedToUserId``, and the domain shape matches."""
    after = make_ticket(assignee_id=TEAM, assignee_type="team")
    ev = only(check(ticket_changed(make_ticket(), after, make_ctx())), "TICKET_ASSIGNED")
    doc = wire(ev)
    assert "userId" not in doc and "assignedToUserId" not in doc
    assert doc["newAssigneeType"] == "team"
    assert REGISTRY.decode_payload("TICKET_ASSIGNED", msgspec.json.encode(ev.payload)).variant == "domain"


def test_unassigned_names_the_previous_assignee() -> None:
    """TICKET_UNASSIGNED says who had the ticket."""
    ev = only(check(ticket_changed(make_ticket(assignee_id=AGENT), make_ticket(), make_ctx())), "TICKET_UNASSIGNED")
    assert wire(ev)["previousAssigneeId"] == AGENT
    assert wire(ev)["previousAssigneeType"] == "user"


def test_updated_lists_fields_and_changes() -> None:
    """TICKET_UPDATED lists every changed path with previous and new values."""
    after = make_ticket(title="New", custom_fields={"site": "HQ"}, due_at=datetime(2026, 3, 11, tzinfo=NOW.tzinfo))
    doc = wire(only(check(ticket_changed(make_ticket(), after, make_ctx())), "TICKET_UPDATED"))
    assert doc["updatedFields"] == ["title", "dueAt", "customFields.site"]
    assert doc["changes"]["title"] == {"previous": "Printer on fire", "new": "New"}
    assert doc["changes"]["dueAt"] == {"previous": None, "new": "2026-03-11T00:00:00.000Z"}
    assert doc["updatedByUserId"] == USER


def test_keys_are_deterministic_and_time_scoped() -> None:
    """Same change and ctx give the same keys; the same transition at another time gives new ones."""
    b, a = make_ticket(), make_ticket(status_id="pending", assignee_id=AGENT)
    first = [e.idempotency_key for e in ticket_changed(b, a, make_ctx())]
    again = [e.idempotency_key for e in ticket_changed(b, a, make_ctx())]
    other = [e.idempotency_key for e in ticket_changed(b, a, ctx_at(later(days=1)))]
    assert first == again
    assert not set(first) & set(other)
    assert first[0] == f"ticket_status_changed:{TICKET}:open->pending:{NOW_ISO}"


def test_different_tickets_are_refused() -> None:
    """Comparing two different tickets is a programming error."""
    with pytest.raises(ValueError, match="different tickets"):
        ticket_changed(make_ticket(), make_ticket(ticket_id=uid("other")), make_ctx())


def make_message(**overrides: Any) -> TicketMessage:
    """A public portal message by an agent."""
    fields: dict[str, Any] = {
        "ticket_id": TICKET,
        "message_id": uid("message"),
        "author_id": AGENT,
        "author_type": "user",
        "channel": "portal",
    }
    fields.update(overrides)
    return TicketMessage(**fields)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({}, ["TICKET_MESSAGE_ADDED"], id="agent-public"),
        pytest.param({"is_internal": True}, ["TICKET_MESSAGE_ADDED", "TICKET_INTERNAL_NOTE_ADDED"], id="note"),
        pytest.param(
            {"author_type": "contact", "author_id": uid("contact"), "channel": "email"},
            ["TICKET_MESSAGE_ADDED", "TICKET_CUSTOMER_REPLIED"],
            id="customer-reply",
        ),
    ],
)
def test_message_added(overrides: dict[str, Any], expected: list[str]) -> None:
    """Every message is added; internal notes and customer replies add their own event."""
    events = check(ticket_message_added(make_message(**overrides), make_ctx()))
    assert types(events) == expected
    assert all(e.idempotency_key and uid("message") in e.idempotency_key for e in events)


def test_message_visibility_and_attachments() -> None:
    """Visibility follows is_internal; attachmentsCount is sent only when positive."""
    ev = ticket_message_added(make_message(is_internal=True, attachments_count=2), make_ctx())[0]
    assert wire(ev)["visibility"] == "internal"
    assert wire(ev)["attachmentsCount"] == 2
    assert "attachmentsCount" not in wire(ticket_message_added(make_message(), make_ctx())[0])


@pytest.mark.parametrize(
    ("minutes", "count"),
    [pytest.param(30, 1, id="positive"), pytest.param(0, 0, id="zero"), pytest.param(-5, 0, id="negative")],
)
def test_time_entry_added_needs_time(minutes: int, count: int) -> None:
    """A time entry event needs a positive duration."""
    entry = TicketTimeEntry(ticket_id=TICKET, time_entry_id=uid("te"), minutes=minutes, billable=True)
    assert len(check(ticket_time_entry_added(entry, make_ctx()))) == count


def test_merge_and_split() -> None:
    """Merging carries source and target; split dedupes new ids and drops the original."""
    merged = check(ticket_merged(TICKET, uid("target"), make_ctx(), reason="duplicate"))
    assert wire(merged[0])["targetTicketId"] == uid("target")
    split = check(ticket_split(TICKET, [uid("n1"), uid("n1"), TICKET, uid("n2")], make_ctx()))
    assert wire(split[0])["newTicketIds"] == [uid("n1"), uid("n2")]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: ticket_merged(TICKET, TICKET, make_ctx()), id="merge-into-itself"),
        pytest.param(lambda: ticket_split(TICKET, [], make_ctx()), id="split-into-nothing"),
        pytest.param(lambda: ticket_split(TICKET, [TICKET], make_ctx()), id="split-into-itself"),
    ],
)
def test_merge_split_without_effect_emit_nothing(call: Any) -> None:
    """A merge or split that changes nothing emits nothing."""
    assert call() == []


def make_stage(**overrides: Any) -> SlaStageSnapshot:
    """An active response stage entered an hour ago, due in an hour."""
    fields: dict[str, Any] = {
        "ticket_id": TICKET,
        "sla_policy_id": uid("policy"),
        "stage": "response",
        "status": "active",
        "entered_at": NOW - timedelta(hours=1),
        "target_at": NOW + timedelta(hours=1),
    }
    fields.update(overrides)
    return SlaStageSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {}, ["TICKET_SLA_STAGE_ENTERED"], id="first-seen-active"),
        pytest.param({"status": "pending"}, {}, ["TICKET_SLA_STAGE_ENTERED"], id="pending-to-active"),
        pytest.param({}, {"status": "met", "met_at": NOW}, ["TICKET_SLA_STAGE_MET"], id="met"),
        pytest.param({}, {"status": "breached"}, ["TICKET_SLA_STAGE_BREACHED"], id="breached"),
        pytest.param(
            None, {"status": "met"}, ["TICKET_SLA_STAGE_ENTERED", "TICKET_SLA_STAGE_MET"], id="seen-already-met"
        ),
        pytest.param({}, {}, [], id="still-active"),
        pytest.param({"status": "met"}, {"status": "met"}, [], id="still-met"),
        pytest.param({"status": "pending"}, {"status": "pending"}, [], id="still-pending"),
    ],
)
def test_sla_stage_transitions(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """SLA events follow the stage's state changes and nothing else."""
    prev = None if before is None else make_stage(**before)
    assert types(check(sla_stage_changed(prev, make_stage(**after), make_ctx()))) == expected


def test_sla_breach_reports_overdue_seconds() -> None:
    """A breach says by how much the target was missed."""
    stage = make_stage(status="breached", target_at=NOW - timedelta(minutes=5), breached_at=NOW)
    ev = check(sla_stage_changed(make_stage(), stage, make_ctx()))[0]
    assert wire(ev)["overdueBySeconds"] == 300
    assert (ev.from_state, ev.to_state) == ("active", "breached")


@pytest.mark.parametrize(
    ("target", "last_checked", "status", "count"),
    [
        pytest.param(later(minutes=-1), later(minutes=-10), "active", 1, id="target-passed-since-last-check"),
        pytest.param(later(minutes=-20), later(minutes=-10), "active", 0, id="already-past-at-last-check"),
        pytest.param(later(minutes=5), later(minutes=-10), "active", 0, id="not-yet-due"),
        pytest.param(later(minutes=-1), later(minutes=-10), "met", 0, id="met-in-time"),
    ],
)
def test_sla_overdue_scan_needs_a_crossing(target: datetime, last_checked: datetime, status: str, count: int) -> None:
    """The clock-driven breach fires only for an active stage whose target passed since the last check."""
    stage = make_stage(target_at=target, status=status)
    assert len(check(sla_stage_overdue(stage, make_ctx(), last_checked_at=last_checked))) == count


def test_sla_breach_key_is_shared_by_both_paths() -> None:
    """State-driven and clock-driven breach detection produce the same key, so only one is published."""
    stage = make_stage(target_at=later(minutes=-1))
    by_scan = sla_stage_overdue(stage, make_ctx(), last_checked_at=later(minutes=-10))
    by_state = sla_stage_changed(stage, msgspec.structs.replace(stage, status="breached"), make_ctx())
    assert by_scan[0].idempotency_key == by_state[0].idempotency_key
