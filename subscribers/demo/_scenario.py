"""The demo's burst: what a busy minute of a service desk publishes, through publishers and builders.

Four stories run concurrently (so their publishes share round trips through auto-batching), each
in order: a ticket is created, assigned, commented on and closed; a project task is assigned to
a team; an invoice is generated, sent and paid; an appointment is rescheduled. One more ticket
comes from a "legacy producer" that writes only the per-type stream (no workflow entry), which
the workflow converter then fills in.

The ids match ``directory.yaml``; the tenant is fresh per run (the directory's ``"*"`` tenant).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import msgspec

from bus import CHANNEL_GLOBAL, WORKFLOW_STREAM, EventBus, PublishResult
from publishers import Actor, DomainEvent, PublishContext, publish_domain_events, publish_workflow_event
from publishers.builders import (
    AppointmentSnapshot,
    InvoiceSnapshot,
    PaymentSnapshot,
    TaskSnapshot,
    TicketMessage,
    TicketSnapshot,
    appointment_changed,
    invoice_changed,
    payment_applied,
    payment_recorded,
    task_changed,
    ticket_changed,
    ticket_message_added,
)

__all__ = [
    "ALICE",
    "BOB",
    "CAROL_USER",
    "CONTACT",
    "DANA",
    "MARY",
    "TICKET",
    "Published",
    "publish_burst",
]

DANA = "d1d1d1d1-0000-4000-8000-000000000001"  # dispatcher: opens tickets, sends invoices
ALICE = "a1a1a1a1-0000-4000-8000-000000000002"  # agent
BOB = "b1b1b1b1-0000-4000-8000-000000000003"  # second agent
MARY = "c1c1c1c1-0000-4000-8000-000000000004"  # project manager
CAROL_USER = "e1e1e1e1-0000-4000-8000-000000000005"  # the client's portal account
CONTACT = "f1f1f1f1-0000-4000-8000-000000000006"
CLIENT = "0c0c0c0c-0000-4000-8000-000000000007"
TICKET = "71717171-0000-4000-8000-000000000008"
PROJECT = "91919191-0000-4000-8000-00000000000a"
TASK = "95959595-0000-4000-8000-00000000000b"
TEAM = "5e5e5e5e-0000-4000-8000-00000000000c"


class Published(msgspec.Struct, frozen=True, kw_only=True):
    """One published event: where its entries went."""

    story: str
    event_type: str
    event_id: str
    channels: tuple[str, ...]
    workflow_entry: bool


def _record(bus: EventBus, story: str, results: list[PublishResult], out: list[Published]) -> None:
    for r in results:
        channels = tuple(parsed[0] for s in r.entries if (parsed := bus.keys.parse_stream(s)) is not None)
        out.append(
            Published(
                story=story,
                event_type=r.event_type,
                event_id=r.event_id,
                channels=channels,
                workflow_entry=WORKFLOW_STREAM in r.entries,
            )
        )


class _Story:
    """Publishes one story's events in order, each at its own (simulated) time."""

    def __init__(self, bus: EventBus, tenant: str, start: datetime, name: str, out: list[Published]) -> None:
        self.bus, self.tenant, self.start, self.name, self.out = bus, tenant, start, name, out

    def ctx(self, actor: Actor, minute: int) -> PublishContext:
        return PublishContext(tenant_id=self.tenant, actor=actor).with_time(self.start + timedelta(minutes=minute))

    async def event(self, event_type: str, payload: dict[str, Any], ctx: PublishContext) -> None:
        result = await publish_workflow_event(self.bus, event_type, payload, ctx)
        _record(self.bus, self.name, [result], self.out)

    async def domain(self, events: list[DomainEvent], ctx: PublishContext) -> None:
        _record(self.bus, self.name, await publish_domain_events(self.bus, events, ctx), self.out)


async def _ticket(s: _Story) -> None:
    dana, alice = Actor.user(DANA), Actor.user(ALICE)
    await s.event("TICKET_CREATED", {"ticketId": TICKET, "userId": DANA}, s.ctx(dana, 0))
    opened = TicketSnapshot(
        ticket_id=TICKET, status_id="open", title="Email outage in the Berlin office", client_id=CLIENT
    )
    assigned = msgspec.structs.replace(opened, assignee_id=ALICE)
    ctx = s.ctx(dana, 1)
    await s.domain(ticket_changed(opened, assigned, ctx), ctx)  # TICKET_ASSIGNED, TICKET_UPDATED
    comment_id = str(uuid.uuid4())
    ctx = s.ctx(alice, 7)
    comment = {
        "id": comment_id,
        "content": "The mail relay's certificate had expired; renewed it. Mail is flowing again.",
        "author": "Alice Agent",
        "isInternal": False,
    }
    await s.event("TICKET_COMMENT_ADDED", {"ticketId": TICKET, "userId": ALICE, "comment": comment}, ctx)
    message = TicketMessage(ticket_id=TICKET, message_id=comment_id, author_id=ALICE, author_type="user", channel="ui")
    await s.domain(ticket_message_added(message, ctx), ctx)  # TICKET_MESSAGE_ADDED
    closed = msgspec.structs.replace(assigned, status_id="closed", is_closed=True)
    ctx = s.ctx(alice, 9)
    await s.domain(ticket_changed(assigned, closed, ctx, reason="Resolved"), ctx)  # STATUS_CHANGED, UPDATED
    await s.event("TICKET_CLOSED", {"ticketId": TICKET, "userId": ALICE}, ctx)


async def _project(s: _Story) -> None:
    before = TaskSnapshot(task_id=TASK, project_id=PROJECT, title="Move the server rack", status="To do")
    after = msgspec.structs.replace(before, assignee_id=TEAM, assignee_type="team")
    ctx = s.ctx(Actor.user(MARY), 2)
    await s.domain(task_changed(before, after, ctx, assigned_by_name="Mary Manager"), ctx)  # PROJECT_TASK_ASSIGNED


async def _invoice(s: _Story) -> None:
    invoice, payment = str(uuid.uuid4()), str(uuid.uuid4())
    amount = Decimal("1250.00")
    generated = {"invoiceId": invoice, "clientId": CLIENT, "userId": MARY, "amount": float(amount)}
    await s.event("INVOICE_GENERATED", generated, s.ctx(Actor.system(), 3))
    draft = InvoiceSnapshot(invoice_id=invoice, status="draft", client_id=CLIENT, amount_due=amount, currency="EUR")
    sent = msgspec.structs.replace(draft, status="sent", sent_at=s.start + timedelta(minutes=4))
    ctx = s.ctx(Actor.user(DANA), 4)
    await s.domain(invoice_changed(draft, sent, ctx), ctx)  # INVOICE_STATUS_CHANGED, INVOICE_SENT
    paid = msgspec.structs.replace(sent, status="paid", amount_due=Decimal(0))
    ctx = s.ctx(Actor.user(DANA), 8)
    received = PaymentSnapshot(
        payment_id=payment, amount=amount, currency="EUR", method="bank_transfer", client_id=CLIENT
    )
    events = [
        *payment_recorded(received, ctx),
        *payment_applied(payment, [(invoice, amount)], ctx),
        *invoice_changed(sent, paid, ctx),
    ]
    await s.domain(events, ctx)  # PAYMENT_RECORDED, PAYMENT_APPLIED, INVOICE_STATUS_CHANGED: one round trip


async def _appointment(s: _Story) -> None:
    start = (s.start + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    before = AppointmentSnapshot(
        appointment_id=str(uuid.uuid4()),
        start_at=start,
        end_at=start + timedelta(hours=1),
        timezone="Europe/Berlin",
        ticket_id=TICKET,
        assignee_id=BOB,
        location="Client & Co, Berlin office",
    )
    moved = msgspec.structs.replace(before, start_at=start + timedelta(hours=5), end_at=start + timedelta(hours=6))
    ctx = s.ctx(Actor.user(DANA), 5)
    await s.domain(appointment_changed(before, moved, ctx, reason="The client asked for the afternoon"), ctx)


async def _legacy_producer(s: _Story) -> None:
    """A producer that writes only the per-type global stream (no workflow entry): the converter fills it in."""
    payload = {"tenantId": s.tenant, "ticketId": str(uuid.uuid4()), "userId": DANA}
    prepared = s.bus.prepare("TICKET_CREATED", payload, channel=CHANNEL_GLOBAL, workflow=False)
    _record(s.bus, s.name, await s.bus.write([prepared]), s.out)


STORIES = {
    "ticket": _ticket,
    "project": _project,
    "invoice": _invoice,
    "appointment": _appointment,
    "legacy producer": _legacy_producer,
}

#: Every type the burst publishes on ``global`` (the converter reads these streams).
EVENT_TYPES: tuple[str, ...] = (
    "TICKET_CREATED",
    "TICKET_ASSIGNED",
    "TICKET_UPDATED",
    "TICKET_COMMENT_ADDED",
    "TICKET_MESSAGE_ADDED",
    "TICKET_STATUS_CHANGED",
    "TICKET_CLOSED",
    "PROJECT_TASK_ASSIGNED",
    "INVOICE_GENERATED",
    "INVOICE_STATUS_CHANGED",
    "INVOICE_SENT",
    "PAYMENT_RECORDED",
    "PAYMENT_APPLIED",
    "APPOINTMENT_RESCHEDULED",
)


async def publish_burst(bus: EventBus, tenant: str, start: datetime) -> list[Published]:
    """Publish every story concurrently; returns what was published (raises on any failure)."""
    out: list[Published] = []
    async with anyio.create_task_group() as tg:
        for name, story in STORIES.items():
            tg.start_soon(story, _Story(bus, tenant, start, name, out))
    return out
