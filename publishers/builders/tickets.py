"""Ticket builders: what a ticket change, a message, a time entry or an SLA stage implies.

Idempotency keys (``idem_key`` format, ``<event_type lowercased>:<parts>``):

- repeatable transitions (status, priority, queue, assignment, escalation, update) carry the
  ticket id, the transition and ``ctx.occurred_at``: a retry of the same change (same ctx)
  dedupes, a later identical transition (closed again next week) does not;
- one-off facts carry their own id: message id, time entry id, merge source+target, split
  original + fingerprint of the new ids;
- SLA stages carry ticket, policy, stage and the stage's ``entered_at``, so the state-driven
  and the clock-driven breach detection dedupe against each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from schemas import Uuid
from schemas.events.tickets import (
    TicketAssigned,
    TicketCustomerReplied,
    TicketEscalated,
    TicketInternalNoteAdded,
    TicketMerged,
    TicketMessageAdded,
    TicketPriorityChanged,
    TicketQueueChanged,
    TicketReopened,
    TicketSlaStageBreached,
    TicketSlaStageEntered,
    TicketSlaStageMet,
    TicketSplit,
    TicketStatusChanged,
    TicketTimeEntryAdded,
    TicketUnassigned,
    TicketUpdated,
)

from .._context import DomainEvent, PublishContext
from ._util import actor_user_id, ctx_now, diff_entities, digest, emit, envelope, iso, iso_opt, opt, text_opt
from ._util import idem_key as key

__all__ = [
    "SlaStageSnapshot",
    "TicketAssignedPayload",
    "TicketMessage",
    "TicketSnapshot",
    "TicketTimeEntry",
    "sla_stage_changed",
    "sla_stage_overdue",
    "ticket_changed",
    "ticket_merged",
    "ticket_message_added",
    "ticket_split",
    "ticket_time_entry_added",
]

AssigneeType = Literal["user", "team"]
Channel = Literal["email", "portal", "ui", "api"]
SlaStage = Literal["response", "resolution", "custom"]
SlaStatus = Literal["pending", "active", "met", "breached"]


class TicketSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The ticket fields builders compare. ``is_closed`` is the closed flag of ``status_id``."""

    ticket_id: str
    status_id: str
    is_closed: bool = False
    title: str | None = None
    priority_id: str | None = None
    board_id: str | None = None
    category_id: str | None = None
    subcategory_id: str | None = None
    client_id: str | None = None
    contact_id: str | None = None
    assignee_id: str | None = None
    assignee_type: AssigneeType = "user"
    escalated: bool = False
    due_at: datetime | None = None
    custom_fields: dict[str, Any] = {}


class TicketAssignedPayload(TicketAssigned, frozen=True, kw_only=True):
    """TICKET_ASSIGNED as published: the catalog shape plus the legacy ``userId`` (the assignee).

    Legacy consumers (email, in-app notifications) read ``userId``; the workflow side reads
    the v2 fields. Validation strips ``userId`` from the typed view; it stays on the wire.
    """

    user_id: Uuid | UnsetType = msgspec.field(default=UNSET, name="userId")


def _check_same(before: TicketSnapshot, after: TicketSnapshot) -> None:
    if before.ticket_id != after.ticket_id:
        raise ValueError(f"before and after are different tickets ({before.ticket_id} != {after.ticket_id})")


def _assignment(before: TicketSnapshot, after: TicketSnapshot, ctx: PublishContext, at: str) -> list[DomainEvent]:
    prev = (before.assignee_id, before.assignee_type) if before.assignee_id else None
    new = (after.assignee_id, after.assignee_type) if after.assignee_id else None
    if prev == new:
        return []
    tid = after.ticket_id
    transition = f"{prev[0] if prev else 'none'}->{new[0] if new else 'none'}"
    if new is None:
        assert prev is not None
        payload: Any = TicketUnassigned(
            **envelope(ctx),
            ticket_id=tid,
            previous_assignee_id=prev[0],
            previous_assignee_type=prev[1],
            unassigned_at=at,
        )
        return [emit(payload, key=key("TICKET_UNASSIGNED", tid, transition, at), correlation=tid)]
    payload = TicketAssignedPayload(
        **envelope(ctx),
        ticket_id=tid,
        assigned_to_user_id=new[0] if new[1] == "user" else UNSET,
        assigned_by_user_id=actor_user_id(ctx),
        previous_assignee_id=prev[0] if prev else UNSET,
        previous_assignee_type=prev[1] if prev else UNSET,
        new_assignee_id=new[0],
        new_assignee_type=new[1],
        assigned_at=at,
        user_id=new[0] if new[1] == "user" else UNSET,
    )
    return [emit(payload, key=key("TICKET_ASSIGNED", tid, transition, at), correlation=tid)]


def ticket_changed(
    before: TicketSnapshot, after: TicketSnapshot, ctx: PublishContext, *, reason: str | None = None
) -> list[DomainEvent]:
    """Events implied by one ticket update, in this order (each only when its field changed):

    TICKET_STATUS_CHANGED (hooks from/to = status ids), TICKET_REOPENED (closed -> open),
    TICKET_PRIORITY_CHANGED (both priorities set), TICKET_QUEUE_CHANGED (board),
    TICKET_ESCALATED (flag raised; from/to queue = boards), TICKET_UNASSIGNED /
    TICKET_ASSIGNED (previous/new assignee and the legacy ``userId``), and last
    TICKET_UPDATED with ``updatedFields``/``changes`` over every field that differs.
    Nothing changed -> ``[]``. Keys: ``<type>:<ticketId>:<from>-><to>:<occurredAt>``;
    TICKET_UPDATED: ``ticket_updated:<ticketId>:<fingerprint of changes>:<occurredAt>``.
    """
    _check_same(before, after)
    at = iso(ctx_now(ctx))
    tid = after.ticket_id
    events: list[DomainEvent] = []
    why = text_opt(reason)

    if before.status_id != after.status_id:
        transition = f"{before.status_id}->{after.status_id}"
        status = dict(from_state=before.status_id, to_state=after.status_id, correlation=tid)
        events.append(
            emit(
                TicketStatusChanged(
                    **envelope(ctx),
                    ticket_id=tid,
                    previous_status_id=before.status_id,
                    new_status_id=after.status_id,
                    reason=why,
                    changed_at=at,
                ),
                key=key("TICKET_STATUS_CHANGED", tid, transition, at),
                **status,
            )
        )
        if before.is_closed and not after.is_closed:
            events.append(
                emit(
                    TicketReopened(
                        **envelope(ctx),
                        ticket_id=tid,
                        previous_status_id=before.status_id,
                        new_status_id=after.status_id,
                        reopened_at=at,
                        reason=why,
                    ),
                    key=key("TICKET_REOPENED", tid, transition, at),
                    **status,
                )
            )

    if before.priority_id != after.priority_id and before.priority_id and after.priority_id:
        events.append(
            emit(
                TicketPriorityChanged(
                    **envelope(ctx),
                    ticket_id=tid,
                    previous_priority_id=before.priority_id,
                    new_priority_id=after.priority_id,
                    reason=why,
                    changed_at=at,
                ),
                key=key("TICKET_PRIORITY_CHANGED", tid, f"{before.priority_id}->{after.priority_id}", at),
                correlation=tid,
            )
        )

    if before.board_id != after.board_id:
        events.append(
            emit(
                TicketQueueChanged(
                    **envelope(ctx),
                    ticket_id=tid,
                    previous_board_id=opt(before.board_id),
                    new_board_id=opt(after.board_id),
                    changed_at=at,
                ),
                key=key("TICKET_QUEUE_CHANGED", tid, f"{before.board_id or 'none'}->{after.board_id or 'none'}", at),
                correlation=tid,
            )
        )

    if after.escalated and not before.escalated:
        events.append(
            emit(
                TicketEscalated(
                    **envelope(ctx),
                    ticket_id=tid,
                    from_queue_id=opt(before.board_id),
                    to_queue_id=opt(after.board_id),
                    escalated_at=at,
                    reason=why,
                ),
                key=key("TICKET_ESCALATED", tid, at),
                correlation=tid,
            )
        )

    events.extend(_assignment(before, after, ctx, at))

    diff = diff_entities(before, after, ignore=("ticket_id",))
    if diff:
        events.append(
            emit(
                TicketUpdated(
                    **envelope(ctx),
                    ticket_id=tid,
                    updated_by_user_id=actor_user_id(ctx),
                    updated_fields=diff.updated_fields,
                    changes=diff.changes,
                ),
                key=key("TICKET_UPDATED", tid, digest(diff.changes), at),
                correlation=tid,
            )
        )
    return events


class TicketMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message added to a ticket: a reply, a portal comment, or an internal note."""

    ticket_id: str
    message_id: str
    author_id: str
    author_type: Literal["user", "contact"]
    channel: Channel
    is_internal: bool = False
    created_at: datetime | None = None
    attachments_count: int = 0


def ticket_message_added(message: TicketMessage, ctx: PublishContext) -> list[DomainEvent]:
    """TICKET_MESSAGE_ADDED always; plus TICKET_INTERNAL_NOTE_ADDED for an internal note, or
    TICKET_CUSTOMER_REPLIED for a public message written by a contact.

    Keys: ``<type>:<messageId>`` (a message is added once).
    """
    tid, mid = message.ticket_id, message.message_id
    created = iso_opt(message.created_at)
    attachments = message.attachments_count if message.attachments_count > 0 else UNSET
    events = [
        emit(
            TicketMessageAdded(
                **envelope(ctx),
                ticket_id=tid,
                message_id=mid,
                visibility="internal" if message.is_internal else "public",
                author_id=message.author_id,
                author_type=message.author_type,
                channel=message.channel,
                created_at=created,
                attachments_count=attachments,
            ),
            key=key("TICKET_MESSAGE_ADDED", mid),
            correlation=tid,
        )
    ]
    if message.is_internal:
        events.append(
            emit(
                TicketInternalNoteAdded(**envelope(ctx), ticket_id=tid, note_id=mid, created_at=created),
                key=key("TICKET_INTERNAL_NOTE_ADDED", mid),
                correlation=tid,
            )
        )
    elif message.author_type == "contact":
        events.append(
            emit(
                TicketCustomerReplied(
                    **envelope(ctx),
                    ticket_id=tid,
                    message_id=mid,
                    contact_id=message.author_id,
                    channel=message.channel,
                    received_at=created,
                    attachments_count=attachments,
                ),
                key=key("TICKET_CUSTOMER_REPLIED", mid),
                correlation=tid,
            )
        )
    return events


class TicketTimeEntry(msgspec.Struct, frozen=True, kw_only=True):
    """Time logged against a ticket."""

    ticket_id: str
    time_entry_id: str
    minutes: int
    billable: bool
    created_at: datetime | None = None


def ticket_time_entry_added(entry: TicketTimeEntry, ctx: PublishContext) -> list[DomainEvent]:
    """TICKET_TIME_ENTRY_ADDED for a positive duration; zero or negative minutes -> ``[]``.

    Key: ``ticket_time_entry_added:<timeEntryId>``.
    """
    if entry.minutes <= 0:
        return []
    return [
        emit(
            TicketTimeEntryAdded(
                **envelope(ctx),
                ticket_id=entry.ticket_id,
                time_entry_id=entry.time_entry_id,
                minutes=entry.minutes,
                billable=entry.billable,
                created_at=iso_opt(entry.created_at),
            ),
            key=key("TICKET_TIME_ENTRY_ADDED", entry.time_entry_id),
            correlation=entry.ticket_id,
        )
    ]


def ticket_merged(
    source_ticket_id: str, target_ticket_id: str, ctx: PublishContext, *, reason: str | None = None
) -> list[DomainEvent]:
    """TICKET_MERGED (source folded into target); merging a ticket into itself -> ``[]``.

    Key: ``ticket_merged:<sourceTicketId>:<targetTicketId>``; correlation: the source ticket.
    """
    if source_ticket_id == target_ticket_id:
        return []
    return [
        emit(
            TicketMerged(
                **envelope(ctx),
                source_ticket_id=source_ticket_id,
                target_ticket_id=target_ticket_id,
                merged_at=iso(ctx_now(ctx)),
                reason=text_opt(reason),
            ),
            key=key("TICKET_MERGED", source_ticket_id, target_ticket_id),
            correlation=source_ticket_id,
        )
    ]


def ticket_split(
    original_ticket_id: str, new_ticket_ids: Sequence[str], ctx: PublishContext, *, reason: str | None = None
) -> list[DomainEvent]:
    """TICKET_SPLIT with the new tickets (deduplicated, original excluded); none -> ``[]``.

    Key: ``ticket_split:<originalTicketId>:<fingerprint of the sorted new ids>``.
    """
    new_ids = list(dict.fromkeys(t for t in new_ticket_ids if t != original_ticket_id))
    if not new_ids:
        return []
    return [
        emit(
            TicketSplit(
                **envelope(ctx),
                original_ticket_id=original_ticket_id,
                new_ticket_ids=new_ids,
                split_at=iso(ctx_now(ctx)),
                reason=text_opt(reason),
            ),
            key=key("TICKET_SPLIT", original_ticket_id, digest(sorted(new_ids))),
            correlation=original_ticket_id,
        )
    ]


class SlaStageSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One SLA stage of one ticket under one policy, as the SLA engine tracks it."""

    ticket_id: str
    sla_policy_id: str
    stage: SlaStage
    status: SlaStatus
    entered_at: datetime | None = None
    target_at: datetime | None = None
    met_at: datetime | None = None
    breached_at: datetime | None = None


def _sla_key(event_type: str, s: SlaStageSnapshot) -> str:
    return key(event_type, s.ticket_id, s.sla_policy_id, s.stage, iso_opt(s.entered_at) or None)


def _breached(stage: SlaStageSnapshot, ctx: PublishContext, when: datetime) -> DomainEvent:
    overdue: int | UnsetType = UNSET
    if stage.target_at is not None:
        overdue = max(0, int((when - stage.target_at).total_seconds()))
    return emit(
        TicketSlaStageBreached(
            **envelope(ctx),
            ticket_id=stage.ticket_id,
            sla_policy_id=stage.sla_policy_id,
            stage=stage.stage,
            breached_at=iso(when),
            target_at=iso_opt(stage.target_at),
            overdue_by_seconds=overdue,
        ),
        key=_sla_key("TICKET_SLA_STAGE_BREACHED", stage),
        correlation=stage.ticket_id,
        from_state="active",
        to_state="breached",
    )


def sla_stage_changed(
    before: SlaStageSnapshot | None, after: SlaStageSnapshot, ctx: PublishContext
) -> list[DomainEvent]:
    """Events of an SLA stage's state change (``before=None``: first time the stage is seen).

    TICKET_SLA_STAGE_ENTERED when it leaves ``pending`` (or appears non-pending);
    TICKET_SLA_STAGE_MET / _BREACHED when it becomes ``met`` / ``breached`` (an appearance
    straight in ``met`` gives ENTERED then MET). Same state -> ``[]``.
    Keys: ``<type>:<ticketId>:<slaPolicyId>:<stage>:<enteredAt>``.
    """
    if before is not None and (before.ticket_id, before.sla_policy_id, before.stage) != (
        after.ticket_id,
        after.sla_policy_id,
        after.stage,
    ):
        raise ValueError("before and after are different SLA stages")
    prev: str = "pending" if before is None else before.status
    if prev == after.status:
        return []
    now = ctx_now(ctx)
    tid = after.ticket_id
    events: list[DomainEvent] = []
    if prev == "pending":
        events.append(
            emit(
                TicketSlaStageEntered(
                    **envelope(ctx),
                    ticket_id=tid,
                    sla_policy_id=after.sla_policy_id,
                    stage=after.stage,
                    entered_at=iso(after.entered_at or now),
                    target_at=iso_opt(after.target_at),
                ),
                key=_sla_key("TICKET_SLA_STAGE_ENTERED", after),
                correlation=tid,
                from_state="pending",
                to_state="active",
            )
        )
    if after.status == "met":
        events.append(
            emit(
                TicketSlaStageMet(
                    **envelope(ctx),
                    ticket_id=tid,
                    sla_policy_id=after.sla_policy_id,
                    stage=after.stage,
                    met_at=iso(after.met_at or now),
                    target_at=iso_opt(after.target_at),
                ),
                key=_sla_key("TICKET_SLA_STAGE_MET", after),
                correlation=tid,
                from_state=prev,
                to_state="met",
            )
        )
    elif after.status == "breached":
        events.append(_breached(after, ctx, after.breached_at or now))
    return events


def sla_stage_overdue(stage: SlaStageSnapshot, ctx: PublishContext, *, last_checked_at: datetime) -> list[DomainEvent]:
    """Clock-driven breach: TICKET_SLA_STAGE_BREACHED when an active stage's target falls in
    ``(last_checked_at, ctx.occurred_at]``; a target already past at the last check, a stage
    that is not active, or no target -> ``[]``. Same key as :func:`sla_stage_changed`'s breach.
    """
    now = ctx_now(ctx)
    if stage.status != "active" or stage.target_at is None:
        return []
    if not (last_checked_at < stage.target_at <= now):
        return []
    return [_breached(stage, ctx, now)]
