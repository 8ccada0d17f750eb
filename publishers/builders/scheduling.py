"""Scheduling builders: appointments, schedule blocks, team capacity, technician dispatch.

Idempotency keys: creation-like facts carry the entity id (``appointment_created:<id>``);
transitions that can repeat carry entity, transition and ``ctx.occurred_at``; capacity
uses the reference's own key, ``capacity-threshold-reached:<teamId>:<date>`` (once per team
and day: dedupe keeps a day from alerting twice).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import msgspec

from schemas.events.scheduling import (
    AppointmentAssigned,
    AppointmentCanceled,
    AppointmentCompleted,
    AppointmentCreated,
    AppointmentNoShow,
    AppointmentRescheduled,
    CapacityThresholdReached,
    ScheduleBlockCreated,
    ScheduleBlockDeleted,
    TechnicianArrived,
    TechnicianCheckedOut,
    TechnicianDispatched,
    TechnicianEnRoute,
)

from .._context import DomainEvent, PublishContext
from ._util import (
    actor_user_id,
    as_utc,
    ctx_now,
    emit,
    envelope,
    iso,
    iso_opt,
    norm_status,
    opt,
    text_opt,
    threshold_crossed,
)
from ._util import idem_key as key

__all__ = [
    "AppointmentSnapshot",
    "ScheduleEntrySnapshot",
    "appointment_changed",
    "capacity_changed",
    "hours_by_utc_date",
    "is_schedule_block",
    "schedule_block_changed",
    "schedule_entry_changed",
    "technician_dispatch_changed",
]

AssigneeType = Literal["user", "team"]

_CANCELED = {"canceled", "cancelled"}
_COMPLETED = {"completed", "complete", "done"}
_NO_SHOW = {"no_show", "noshow"}
_EN_ROUTE = {"en_route", "enroute"}
_ARRIVED = {"arrived", "on_site", "onsite"}
_CHECKED_OUT = {"checked_out", "checkedout"}
_DISPATCH_WORK_ITEMS = {"ticket", "appointment_request"}
_TECH_STATES = (("en_route", _EN_ROUTE), ("arrived", _ARRIVED), ("checked_out", _CHECKED_OUT))


class AppointmentSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """An appointment as builders see it; ``status`` is free text, matched case-insensitively."""

    appointment_id: str
    start_at: datetime
    end_at: datetime
    timezone: str
    status: str = "scheduled"
    ticket_id: str | None = None
    assignee_id: str | None = None
    assignee_type: AssigneeType = "user"
    location: str | None = None
    outcome: str | None = None
    no_show_party: Literal["customer", "agent"] = "customer"
    created_at: datetime | None = None


def appointment_changed(
    before: AppointmentSnapshot | None, after: AppointmentSnapshot, ctx: PublishContext, *, reason: str | None = None
) -> list[DomainEvent]:
    """Events of an appointment change; ``before=None`` is a creation.

    APPOINTMENT_CREATED (creation only); APPOINTMENT_RESCHEDULED (start or end moved);
    APPOINTMENT_CANCELED / _COMPLETED / _NO_SHOW when the status enters canceled|cancelled,
    completed|done, no show (any case or separator; hooks from/to = normalised statuses);
    APPOINTMENT_ASSIGNED when a new assignee is set. Nothing changed -> ``[]``.
    Keys: ``appointment_created:<id>``, otherwise ``<type>:<id>:<transition>:<occurredAt>``.
    """
    aid = after.appointment_id
    corr = after.ticket_id or aid
    at = iso(ctx_now(ctx))
    ticket = opt(after.ticket_id)
    why = text_opt(reason)
    if before is None:
        return [
            emit(
                AppointmentCreated(
                    **envelope(ctx),
                    appointment_id=aid,
                    ticket_id=ticket,
                    start_at=iso(after.start_at),
                    end_at=iso(after.end_at),
                    timezone=after.timezone,
                    assignee_id=opt(after.assignee_id),
                    assignee_type=after.assignee_type if after.assignee_id else msgspec.UNSET,
                    created_by_user_id=actor_user_id(ctx),
                    created_at=iso(after.created_at or ctx_now(ctx)),
                    location=text_opt(after.location),
                ),
                key=key("APPOINTMENT_CREATED", aid),
                correlation=corr,
            )
        ]
    if before.appointment_id != aid:
        raise ValueError(f"before and after are different appointments ({before.appointment_id} != {aid})")

    events: list[DomainEvent] = []
    if (as_utc(before.start_at), as_utc(before.end_at)) != (as_utc(after.start_at), as_utc(after.end_at)):
        moved = f"{iso(before.start_at)}->{iso(after.start_at)}"
        events.append(
            emit(
                AppointmentRescheduled(
                    **envelope(ctx),
                    appointment_id=aid,
                    ticket_id=ticket,
                    previous_start_at=iso(before.start_at),
                    previous_end_at=iso(before.end_at),
                    new_start_at=iso(after.start_at),
                    new_end_at=iso(after.end_at),
                    timezone=after.timezone,
                    rescheduled_at=at,
                    reason=why,
                ),
                key=key("APPOINTMENT_RESCHEDULED", aid, moved, at),
                correlation=corr,
            )
        )

    old, new = norm_status(before.status), norm_status(after.status)
    if old != new:
        hooks = {"from_state": old, "to_state": new, "correlation": corr}
        transition = f"{old}->{new}"
        if new in _CANCELED and old not in _CANCELED:
            payload: AppointmentCanceled | AppointmentCompleted | AppointmentNoShow | None = AppointmentCanceled(
                **envelope(ctx), appointment_id=aid, ticket_id=ticket, canceled_at=at, reason=why
            )
        elif new in _COMPLETED and old not in _COMPLETED:
            payload = AppointmentCompleted(
                **envelope(ctx), appointment_id=aid, ticket_id=ticket, completed_at=at, outcome=text_opt(after.outcome)
            )
        elif new in _NO_SHOW and old not in _NO_SHOW:
            payload = AppointmentNoShow(
                **envelope(ctx), appointment_id=aid, ticket_id=ticket, marked_at=at, party=after.no_show_party
            )
        else:
            payload = None
        if payload is not None:
            ev = emit(payload, **hooks)
            events.append(msgspec.structs.replace(ev, idempotency_key=key(ev.event_type, aid, transition, at)))

    if after.assignee_id and (before.assignee_id, before.assignee_type) != (after.assignee_id, after.assignee_type):
        events.append(
            emit(
                AppointmentAssigned(
                    **envelope(ctx),
                    appointment_id=aid,
                    ticket_id=ticket,
                    previous_assignee_id=opt(before.assignee_id),
                    previous_assignee_type=before.assignee_type if before.assignee_id else msgspec.UNSET,
                    new_assignee_id=after.assignee_id,
                    new_assignee_type=after.assignee_type,
                    assigned_at=at,
                ),
                key=key("APPOINTMENT_ASSIGNED", aid, f"{before.assignee_id or 'none'}->{after.assignee_id}", at),
                correlation=corr,
            )
        )
    return events


class ScheduleEntrySnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A calendar entry: a block, a ticket visit, an appointment request, a task slot."""

    entry_id: str
    start_at: datetime
    end_at: datetime
    work_item_type: str | None = None
    work_item_id: str | None = None
    is_private: bool = False
    assigned_user_ids: tuple[str, ...] = ()
    status: str | None = None
    title: str | None = None
    notes: str | None = None
    created_at: datetime | None = None


def _users(entry: ScheduleEntrySnapshot | None) -> list[str]:
    return [] if entry is None else list(dict.fromkeys(u for u in entry.assigned_user_ids if u))


def is_schedule_block(entry: ScheduleEntrySnapshot | None) -> bool:
    """A schedule block is a private ad-hoc entry with no work item and exactly one owner."""
    return (
        entry is not None
        and entry.is_private
        and norm_status(entry.work_item_type) == "ad_hoc"
        and not entry.work_item_id
        and len(_users(entry)) == 1
    )


def _block_reason(entry: ScheduleEntrySnapshot) -> str | None:
    title = (entry.title or "").strip()
    if title and title.lower() != "busy":
        return title
    return (entry.notes or "").strip() or None


def schedule_block_changed(
    before: ScheduleEntrySnapshot | None,
    after: ScheduleEntrySnapshot | None,
    ctx: PublishContext,
    *,
    timezone: str,
    reason: str | None = None,
) -> list[DomainEvent]:
    """SCHEDULE_BLOCK_CREATED when an entry becomes a block (created as one, or changed into
    one); SCHEDULE_BLOCK_DELETED when a block is deleted (``after=None``) or stops being one.
    A block that stays a block, or an entry that never was one -> ``[]``.
    Keys: ``<type>:<entryId>:<occurredAt>``. ``reason`` overrides the inferred one (title
    unless "Busy", else notes) on creation, and is the deletion reason.
    """
    was, now_block = is_schedule_block(before), is_schedule_block(after)
    if was == now_block:
        return []
    at = iso(ctx_now(ctx))
    if now_block:
        assert after is not None
        return [
            emit(
                ScheduleBlockCreated(
                    **envelope(ctx),
                    schedule_block_id=after.entry_id,
                    owner_id=_users(after)[0],
                    owner_type="user",
                    start_at=iso(after.start_at),
                    end_at=iso(after.end_at),
                    timezone=timezone,
                    created_at=iso_opt(after.created_at),
                    reason=text_opt(reason or _block_reason(after)),
                ),
                key=key("SCHEDULE_BLOCK_CREATED", after.entry_id, at),
                correlation=after.entry_id,
            )
        ]
    assert before is not None
    default = "Deleted" if after is None else "No longer a private ad-hoc block"
    return [
        emit(
            ScheduleBlockDeleted(
                **envelope(ctx),
                schedule_block_id=before.entry_id,
                deleted_at=at,
                reason=text_opt(reason or default),
            ),
            key=key("SCHEDULE_BLOCK_DELETED", before.entry_id, at),
            correlation=before.entry_id,
        )
    ]


def technician_dispatch_changed(
    before: ScheduleEntrySnapshot | None, after: ScheduleEntrySnapshot, ctx: PublishContext
) -> list[DomainEvent]:
    """Technician lifecycle of a ticket or appointment-request visit (other entries -> ``[]``).

    TECHNICIAN_DISPATCHED per technician newly assigned (all of them on creation);
    TECHNICIAN_EN_ROUTE / _ARRIVED / _CHECKED_OUT per assigned technician when the status
    enters en route|enroute, arrived|on site|onsite, checked out|checkedout (any case, spaces,
    hyphens or underscores; hooks from/to = normalised statuses). appointmentId is the entry
    id, ticketId the work item of a ticket visit.
    Keys: ``<type>:<entryId>:<technicianUserId>:<occurredAt>``.
    """
    if norm_status(after.work_item_type) not in _DISPATCH_WORK_ITEMS:
        return []
    eid = after.entry_id
    ticket = after.work_item_id if norm_status(after.work_item_type) == "ticket" else None
    corr = ticket or eid
    at = iso(ctx_now(ctx))
    techs = _users(after)
    added = [t for t in techs if t not in set(_users(before))]
    events = [
        emit(
            TechnicianDispatched(
                **envelope(ctx),
                appointment_id=eid,
                ticket_id=opt(ticket),
                technician_user_id=tech,
                dispatched_by_user_id=actor_user_id(ctx),
                dispatched_at=at,
            ),
            key=key("TECHNICIAN_DISPATCHED", eid, tech, at),
            correlation=corr,
        )
        for tech in added
    ]
    old = norm_status(before.status) if before is not None else ""
    new = norm_status(after.status)
    entered = next(
        (kind for kind, names in _TECH_STATES if new in names and old not in names),
        None,
    )
    for tech in techs if entered else ():
        common: dict[str, Any] = {"appointment_id": eid, "ticket_id": opt(ticket), "technician_user_id": tech}
        payload: TechnicianEnRoute | TechnicianArrived | TechnicianCheckedOut
        if entered == "en_route":
            payload = TechnicianEnRoute(**envelope(ctx), **common, started_at=at)
        elif entered == "arrived":
            payload = TechnicianArrived(**envelope(ctx), **common, arrived_at=at)
        else:
            payload = TechnicianCheckedOut(
                **envelope(ctx), **common, checked_out_at=at, work_summary=text_opt(after.notes)
            )
        ev = emit(payload, correlation=corr, from_state=old or None, to_state=new)
        events.append(msgspec.structs.replace(ev, idempotency_key=key(ev.event_type, eid, tech, at)))
    return events


def schedule_entry_changed(
    before: ScheduleEntrySnapshot | None,
    after: ScheduleEntrySnapshot | None,
    ctx: PublishContext,
    *,
    timezone: str,
    reason: str | None = None,
) -> list[DomainEvent]:
    """Everything a schedule entry change implies: block events, then technician events."""
    events = schedule_block_changed(before, after, ctx, timezone=timezone, reason=reason)
    if after is not None:
        events.extend(technician_dispatch_changed(before, after, ctx))
    return events


def hours_by_utc_date(start_at: datetime, end_at: datetime) -> dict[date, float]:
    """Hours of ``[start_at, end_at)`` falling on each UTC calendar day (empty if not positive)."""
    start, end = as_utc(start_at), as_utc(end_at)
    out: dict[date, float] = {}
    day = start.date()
    while start < end and day <= (end - timedelta(microseconds=1)).date():
        lo = max(start, datetime.combine(day, time(), UTC))
        hi = min(end, datetime.combine(day + timedelta(days=1), time(), UTC))
        out[day] = (hi - lo).total_seconds() / 3600
        day += timedelta(days=1)
    return out


def capacity_changed(
    *,
    team_id: str,
    day: date,
    capacity_limit: float,
    before_booked: float,
    after_booked: float,
    ctx: PublishContext,
) -> list[DomainEvent]:
    """CAPACITY_THRESHOLD_REACHED only when booked hours cross the limit upwards
    (``before < limit <= after``, limit > 0): staying above, staying below, or going down -> ``[]``.

    Values are rounded to 2 decimals. Key (the reference's): ``capacity-threshold-reached:<teamId>:<date>``.
    """
    if not threshold_crossed(before_booked, after_booked, capacity_limit):
        return []
    return [
        emit(
            CapacityThresholdReached(
                **envelope(ctx),
                team_id=team_id,
                date=day.isoformat(),
                capacity_limit=round(capacity_limit, 2),
                current_booked=round(after_booked, 2),
                triggered_at=iso(ctx_now(ctx)),
            ),
            key=f"capacity-threshold-reached:{team_id}:{day.isoformat()}",
            correlation=team_id,
        )
    ]
