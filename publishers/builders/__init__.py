"""Pure domain event builders: given entity snapshots and a ctx, the events a change implies."""

from __future__ import annotations

from .tickets import (
    SlaStageSnapshot,
    TicketAssignedPayload,
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
