"""Billing builders: invoices, payments, credit notes, contracts, recurring billing runs.

Money is a ``Decimal`` (or int/str) in snapshots and a string on the wire; floats are refused.

Idempotency keys: facts with their own id carry it (``payment_recorded:<paymentId>``,
``credit_note_created:<creditNoteId>``); transitions carry entity, transition and
``ctx.occurred_at``; the reference's keys are kept where it has them
(``contract_created:<contractId>:<clientId>``,
``contract_renewal_upcoming:<contractId>:<clientId>:<renewalAt>``); an overdue invoice alerts
once per due date (``invoice_overdue:<invoiceId>:<dueDate>``) whichever path detects it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec
from msgspec import UNSET

from schemas.events.billing import (
    ContractCreated,
    ContractRenewalUpcoming,
    ContractStatusChanged,
    ContractUpdated,
    CreditNoteApplied,
    CreditNoteCreated,
    CreditNoteVoided,
    InvoiceDueDateChanged,
    InvoiceOverdue,
    InvoiceSent,
    InvoiceStatusChanged,
    InvoiceWrittenOff,
    PaymentApplied,
    PaymentAppliedApplicationsItem,
    PaymentFailed,
    PaymentRecorded,
    PaymentRefunded,
    RecurringBillingRunCompleted,
    RecurringBillingRunFailed,
    RecurringBillingRunStarted,
)

from .._context import DomainEvent, PublishContext
from ._util import (
    actor_user_id,
    ctx_now,
    date_window_entered,
    diff_entities,
    digest,
    emit,
    envelope,
    iso,
    money,
    norm_status,
    opt,
    text_opt,
)
from ._util import idem_key as key

__all__ = [
    "BillingRunSnapshot",
    "ContractSnapshot",
    "CreditNoteSnapshot",
    "InvoiceSnapshot",
    "PaymentSnapshot",
    "billing_run_changed",
    "contract_changed",
    "contract_renewal_scan",
    "credit_note_applied",
    "credit_note_changed",
    "invoice_changed",
    "invoice_overdue_scan",
    "payment_applied",
    "payment_failed",
    "payment_recorded",
    "payment_refunded",
]

Amount = Decimal | int | str
DeliveryMethod = Literal["email", "portal", "print"]

_SENT = {"sent"}
_WRITTEN_OFF = {"written_off", "write_off", "writtenoff"}
_OVERDUE = {"overdue"}
_NOT_COLLECTIBLE = {"draft", "paid", "void", "voided", "cancelled", "canceled", "credited", *_WRITTEN_OFF}
_VOIDED = {"void", "voided"}


# ---------------------------------------------------------------- invoices


class InvoiceSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """An invoice as builders see it. ``amount_due`` is the outstanding balance."""

    invoice_id: str
    status: str
    client_id: str | None = None
    due_date: date | None = None
    amount_due: Decimal = Decimal(0)
    currency: str = "USD"
    sent_at: datetime | None = None
    delivery_method: DeliveryMethod = "email"


def _overdue(inv: InvoiceSnapshot, ctx: PublishContext, today: date) -> DomainEvent:
    assert inv.due_date is not None
    return emit(
        InvoiceOverdue(
            **envelope(ctx),
            invoice_id=inv.invoice_id,
            client_id=opt(inv.client_id),
            overdue_at=iso(ctx_now(ctx)),
            due_date=inv.due_date.isoformat(),
            amount_due=money(inv.amount_due),
            currency=inv.currency,
            days_overdue=max(0, (today - inv.due_date).days),
        ),
        key=key("INVOICE_OVERDUE", inv.invoice_id, inv.due_date.isoformat()),
        correlation=inv.invoice_id,
    )


def invoice_changed(
    before: InvoiceSnapshot, after: InvoiceSnapshot, ctx: PublishContext, *, write_off_reason: str | None = None
) -> list[DomainEvent]:
    """Events of an invoice update (statuses compared case-insensitively):

    INVOICE_STATUS_CHANGED (hooks from/to = statuses); INVOICE_SENT when the status enters
    ``sent`` or ``sent_at`` is first set; INVOICE_DUE_DATE_CHANGED (both dates set);
    INVOICE_OVERDUE when the status enters ``overdue`` (with a due date);
    INVOICE_WRITTEN_OFF when it enters written off (amount = the balance before). Else ``[]``.
    Keys: ``invoice_sent:<invoiceId>:<sentAt|occurredAt>``, ``invoice_overdue:<invoiceId>:<dueDate>``,
    others ``<type>:<invoiceId>:<transition>:<occurredAt>``.
    """
    if before.invoice_id != after.invoice_id:
        raise ValueError(f"before and after are different invoices ({before.invoice_id} != {after.invoice_id})")
    iid = after.invoice_id
    now = ctx_now(ctx)
    at = iso(now)
    old, new = norm_status(before.status), norm_status(after.status)
    events: list[DomainEvent] = []
    if old != new and before.status and after.status:
        events.append(
            emit(
                InvoiceStatusChanged(
                    **envelope(ctx),
                    invoice_id=iid,
                    previous_status=before.status,
                    new_status=after.status,
                    changed_at=at,
                ),
                key=key("INVOICE_STATUS_CHANGED", iid, f"{old}->{new}", at),
                correlation=iid,
                from_state=old,
                to_state=new,
            )
        )
    newly_sent = (new in _SENT and old not in _SENT) or (before.sent_at is None and after.sent_at is not None)
    if newly_sent:
        sent_at = iso(after.sent_at) if after.sent_at is not None else at
        events.append(
            emit(
                InvoiceSent(
                    **envelope(ctx),
                    invoice_id=iid,
                    client_id=opt(after.client_id),
                    sent_by_user_id=actor_user_id(ctx),
                    sent_at=sent_at,
                    delivery_method=after.delivery_method,
                ),
                key=key("INVOICE_SENT", iid, sent_at),
                correlation=iid,
            )
        )
    if before.due_date and after.due_date and before.due_date != after.due_date:
        events.append(
            emit(
                InvoiceDueDateChanged(
                    **envelope(ctx),
                    invoice_id=iid,
                    previous_due_date=before.due_date.isoformat(),
                    new_due_date=after.due_date.isoformat(),
                    changed_at=at,
                ),
                key=key("INVOICE_DUE_DATE_CHANGED", iid, f"{before.due_date}->{after.due_date}", at),
                correlation=iid,
            )
        )
    if new in _OVERDUE and old not in _OVERDUE and after.due_date is not None:
        events.append(_overdue(after, ctx, now.date()))
    if new in _WRITTEN_OFF and old not in _WRITTEN_OFF:
        events.append(
            emit(
                InvoiceWrittenOff(
                    **envelope(ctx),
                    invoice_id=iid,
                    written_off_at=at,
                    amount_written_off=money(before.amount_due),
                    currency=after.currency,
                    reason=text_opt(write_off_reason),
                ),
                key=key("INVOICE_WRITTEN_OFF", iid, at),
                correlation=iid,
            )
        )
    return events


def _collectible_overdue(inv: InvoiceSnapshot, today: date) -> bool:
    return (
        inv.due_date is not None
        and today > inv.due_date
        and inv.amount_due > 0
        and norm_status(inv.status) not in _NOT_COLLECTIBLE
    )


def invoice_overdue_scan(
    invoice: InvoiceSnapshot, ctx: PublishContext, *, last_checked_at: datetime
) -> list[DomainEvent]:
    """Clock-driven INVOICE_OVERDUE: a collectible invoice (balance > 0, not draft, paid, void
    or written off) whose due date was not past at ``last_checked_at`` and is past now
    (overdue from the day after the due date, UTC). Key: ``invoice_overdue:<invoiceId>:<dueDate>``.
    """
    today = ctx_now(ctx).date()
    if not _collectible_overdue(invoice, today) or _collectible_overdue(invoice, last_checked_at.date()):
        return []
    return [_overdue(invoice, ctx, today)]


# ---------------------------------------------------------------- payments


class PaymentSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A payment received from a client."""

    payment_id: str
    amount: Decimal
    currency: str
    method: str
    client_id: str | None = None
    received_at: datetime | None = None
    gateway_transaction_id: str | None = None


def payment_recorded(payment: PaymentSnapshot, ctx: PublishContext) -> list[DomainEvent]:
    """PAYMENT_RECORDED; a non-positive amount -> ``[]``. Key: ``payment_recorded:<paymentId>``."""
    if payment.amount <= 0:
        return []
    return [
        emit(
            PaymentRecorded(
                **envelope(ctx),
                payment_id=payment.payment_id,
                client_id=opt(payment.client_id),
                received_at=iso(payment.received_at or ctx_now(ctx)),
                amount=money(payment.amount),
                currency=payment.currency,
                method=payment.method,
                received_by_user_id=actor_user_id(ctx),
                gateway_transaction_id=text_opt(payment.gateway_transaction_id),
            ),
            key=key("PAYMENT_RECORDED", payment.payment_id),
            correlation=payment.payment_id,
        )
    ]


def payment_applied(
    payment_id: str, applications: Sequence[tuple[str, Amount]], ctx: PublishContext
) -> list[DomainEvent]:
    """PAYMENT_APPLIED with the ``(invoiceId, amount)`` allocations that are positive; none -> ``[]``.

    Key: ``payment_applied:<paymentId>:<fingerprint of the allocations>``.
    """
    items = [
        PaymentAppliedApplicationsItem(invoice_id=inv, amount_applied=money(amount))
        for inv, amount in applications
        if Decimal(money(amount)) > 0
    ]
    if not items:
        return []
    return [
        emit(
            PaymentApplied(
                **envelope(ctx),
                payment_id=payment_id,
                applied_at=iso(ctx_now(ctx)),
                applied_by_user_id=actor_user_id(ctx),
                applications=items,
            ),
            key=key("PAYMENT_APPLIED", payment_id, digest([(i.invoice_id, i.amount_applied) for i in items])),
            correlation=payment_id,
        )
    ]


def payment_failed(
    ctx: PublishContext,
    *,
    amount: Amount,
    currency: str,
    method: str,
    error_message: str | None = None,
    error_code: str | None = None,
    payment_id: str | None = None,
    invoice_id: str | None = None,
    client_id: str | None = None,
    retryable: bool | None = None,
) -> list[DomainEvent]:
    """PAYMENT_FAILED for a failed charge (a payment id or an invoice id is required).

    Key: ``payment_failed:<paymentId|invoiceId>:<occurredAt>`` (each attempt is its own fact).
    """
    ref = payment_id or invoice_id
    if ref is None:
        raise ValueError("payment_failed needs a payment_id or an invoice_id")
    at = iso(ctx_now(ctx))
    return [
        emit(
            PaymentFailed(
                **envelope(ctx),
                payment_id=opt(payment_id),
                invoice_id=opt(invoice_id),
                client_id=opt(client_id),
                failed_at=at,
                amount=money(amount),
                currency=currency,
                method=method,
                failure_code=text_opt(error_code),
                failure_message=text_opt(error_message),
                retryable=opt(retryable),
            ),
            key=key("PAYMENT_FAILED", ref, at),
            correlation=invoice_id or payment_id,
        )
    ]


def payment_refunded(
    payment_id: str,
    amount: Amount,
    currency: str,
    ctx: PublishContext,
    *,
    refund_id: str | None = None,
    reason: str | None = None,
) -> list[DomainEvent]:
    """PAYMENT_REFUNDED for a positive refund; zero -> ``[]``.

    Key: ``payment_refunded:<paymentId>:<refundId|occurredAt>`` (partial refunds are separate facts).
    """
    if Decimal(money(amount)) <= 0:
        return []
    at = iso(ctx_now(ctx))
    return [
        emit(
            PaymentRefunded(
                **envelope(ctx),
                payment_id=payment_id,
                refunded_at=at,
                refunded_by_user_id=actor_user_id(ctx),
                amount=money(amount),
                currency=currency,
                reason=text_opt(reason),
            ),
            key=key("PAYMENT_REFUNDED", payment_id, refund_id or at),
            correlation=payment_id,
        )
    ]


# ---------------------------------------------------------------- credit notes


class CreditNoteSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A credit note (credit memo)."""

    credit_note_id: str
    amount: Decimal
    currency: str
    status: str
    client_id: str | None = None
    source_invoice_id: str | None = None
    created_at: datetime | None = None


def credit_note_changed(
    before: CreditNoteSnapshot | None, after: CreditNoteSnapshot, ctx: PublishContext, *, reason: str | None = None
) -> list[DomainEvent]:
    """CREDIT_NOTE_CREATED on creation (``before=None``); CREDIT_NOTE_VOIDED when the status
    enters void|voided (hooks from/to). Else ``[]``.
    Keys: ``credit_note_created:<id>``, ``credit_note_voided:<id>`` (voiding is final).
    """
    cid = after.credit_note_id
    if before is None:
        return [
            emit(
                CreditNoteCreated(
                    **envelope(ctx),
                    credit_note_id=cid,
                    client_id=opt(after.client_id),
                    created_by_user_id=actor_user_id(ctx),
                    created_at=iso(after.created_at or ctx_now(ctx)),
                    amount=money(after.amount),
                    currency=after.currency,
                    status=after.status,
                    source_invoice_id=opt(after.source_invoice_id),
                ),
                key=key("CREDIT_NOTE_CREATED", cid),
                correlation=cid,
            )
        ]
    old, new = norm_status(before.status), norm_status(after.status)
    if new in _VOIDED and old not in _VOIDED:
        return [
            emit(
                CreditNoteVoided(
                    **envelope(ctx),
                    credit_note_id=cid,
                    voided_by_user_id=actor_user_id(ctx),
                    voided_at=iso(ctx_now(ctx)),
                    reason=text_opt(reason),
                ),
                key=key("CREDIT_NOTE_VOIDED", cid),
                correlation=cid,
                from_state=old,
                to_state=new,
            )
        ]
    return []


def credit_note_applied(
    credit_note_id: str,
    invoice_id: str,
    amount: Amount,
    currency: str,
    ctx: PublishContext,
    *,
    application_id: str | None = None,
    invoice_number: str | None = None,
) -> list[DomainEvent]:
    """CREDIT_NOTE_APPLIED for a positive amount; zero -> ``[]``.

    Key: ``credit_note_applied:<creditNoteId>:<invoiceId>:<applicationId|occurredAt>``.
    """
    if Decimal(money(amount)) <= 0:
        return []
    at = iso(ctx_now(ctx))
    return [
        emit(
            CreditNoteApplied(
                **envelope(ctx),
                credit_note_id=credit_note_id,
                invoice_id=invoice_id,
                applied_by_user_id=actor_user_id(ctx),
                applied_at=at,
                amount_applied=money(amount),
                currency=currency,
                applied_invoice_number=text_opt(invoice_number),
            ),
            key=key("CREDIT_NOTE_APPLIED", credit_note_id, invoice_id, application_id or at),
            correlation=invoice_id,
        )
    ]


# ---------------------------------------------------------------- contracts

RENEWAL_WINDOW_DAYS = 30


class ContractSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A client's contract; ``end_date`` is the renewal date."""

    contract_id: str
    client_id: str
    status: str
    name: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    billing_frequency: str | None = None
    custom_fields: dict[str, Any] = {}


def _renewal(c: ContractSnapshot, ctx: PublishContext, today: date) -> DomainEvent:
    assert c.end_date is not None
    renewal_at = c.end_date.isoformat()
    return emit(
        ContractRenewalUpcoming(
            **envelope(ctx),
            contract_id=c.contract_id,
            client_id=c.client_id,
            renewal_at=renewal_at,
            days_until_renewal=(c.end_date - today).days,
        ),
        key=f"contract_renewal_upcoming:{c.contract_id}:{c.client_id}:{renewal_at}",
        correlation=c.contract_id,
    )


def contract_changed(
    before: ContractSnapshot | None,
    after: ContractSnapshot,
    ctx: PublishContext,
    *,
    window_days: int = RENEWAL_WINDOW_DAYS,
) -> list[DomainEvent]:
    """Events of a contract change; ``before=None`` is a creation.

    CONTRACT_CREATED (creation); CONTRACT_STATUS_CHANGED (hooks from/to); CONTRACT_UPDATED
    (``updatedFields``/``changes``); CONTRACT_RENEWAL_UPCOMING when the renewal date enters
    the ``window_days`` window (0..30 days ahead, today's date from ctx) because it was set
    or moved, never for a date that was already inside it.
    Keys: ``contract_created:<contractId>:<clientId>`` and
    ``contract_renewal_upcoming:<contractId>:<clientId>:<renewalAt>`` (the reference's);
    others ``<type>:<contractId>:<transition|fingerprint>:<occurredAt>``.
    """
    cid = after.contract_id
    now = ctx_now(ctx)
    at, today = iso(now), now.date()
    events: list[DomainEvent] = []
    if before is None:
        events.append(
            emit(
                ContractCreated(
                    **envelope(ctx),
                    contract_id=cid,
                    client_id=after.client_id,
                    created_by_user_id=actor_user_id(ctx),
                    created_at=at,
                    start_date=after.start_date.isoformat() if after.start_date else UNSET,
                    end_date=after.end_date.isoformat() if after.end_date else UNSET,
                    status=text_opt(after.status),
                ),
                key=f"contract_created:{cid}:{after.client_id}",
                correlation=cid,
            )
        )
    else:
        if before.contract_id != cid:
            raise ValueError(f"before and after are different contracts ({before.contract_id} != {cid})")
        old, new = norm_status(before.status), norm_status(after.status)
        if old != new and before.status and after.status:
            events.append(
                emit(
                    ContractStatusChanged(
                        **envelope(ctx),
                        contract_id=cid,
                        client_id=after.client_id,
                        previous_status=before.status,
                        new_status=after.status,
                        changed_at=at,
                    ),
                    key=key("CONTRACT_STATUS_CHANGED", cid, f"{old}->{new}", at),
                    correlation=cid,
                    from_state=old,
                    to_state=new,
                )
            )
        diff = diff_entities(before, after, ignore=("contract_id",))
        if diff:
            events.append(
                emit(
                    ContractUpdated(
                        **envelope(ctx),
                        contract_id=cid,
                        client_id=after.client_id,
                        updated_at=at,
                        updated_fields=diff.updated_fields,
                        changes=diff.changes,
                    ),
                    key=key("CONTRACT_UPDATED", cid, digest(diff.changes), at),
                    correlation=cid,
                )
            )
    if date_window_entered(
        target_before=None if before is None else before.end_date,
        target_after=after.end_date,
        today_before=today,
        today_after=today,
        window_days=window_days,
    ):
        events.append(_renewal(after, ctx, today))
    return events


def contract_renewal_scan(
    contract: ContractSnapshot,
    ctx: PublishContext,
    *,
    last_checked_at: datetime,
    window_days: int = RENEWAL_WINDOW_DAYS,
) -> list[DomainEvent]:
    """Clock-driven CONTRACT_RENEWAL_UPCOMING: the renewal date is inside the window today
    and was not on the day of ``last_checked_at`` (so a daily scan alerts once, on entry).
    """
    today = ctx_now(ctx).date()
    if not date_window_entered(
        target_before=contract.end_date,
        target_after=contract.end_date,
        today_before=last_checked_at.date(),
        today_after=today,
        window_days=window_days,
    ):
        return []
    return [_renewal(contract, ctx, today)]


# ---------------------------------------------------------------- recurring billing runs


WindowIdentity = Literal["client_cadence_window", "contract_cadence_window", "mixed_execution_windows"]


class BillingRunSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A recurring billing run. ``status``: pending, running, completed or failed."""

    run_id: str
    status: str
    window_identity: WindowIdentity = "client_cadence_window"
    schedule_id: str | None = None
    selection_key: str | None = None
    retry_key: str | None = None
    started_at: datetime | None = None
    invoices_created: int = 0
    failed_count: int = 0
    warnings: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool | None = None


def billing_run_changed(
    before: BillingRunSnapshot | None, after: BillingRunSnapshot, ctx: PublishContext
) -> list[DomainEvent]:
    """RECURRING_BILLING_RUN_STARTED / _COMPLETED / _FAILED when the status enters running,
    completed or failed (``before=None`` counts as pending; hooks from/to). Else ``[]``.
    Keys: ``<type>:<runId>:<retryKey|->`` (a retry of a run is a new fact).
    """
    old = "pending" if before is None else norm_status(before.status)
    new = norm_status(after.status)
    if old == new:
        return []
    rid = after.run_id
    at = iso(ctx_now(ctx))
    common: dict[str, Any] = {
        "run_id": rid,
        "selection_key": text_opt(after.selection_key),
        "retry_key": text_opt(after.retry_key),
        "selection_mode": "due_service_periods",
        "window_identity": after.window_identity,
    }
    payload: RecurringBillingRunStarted | RecurringBillingRunCompleted | RecurringBillingRunFailed
    if new == "running":
        payload = RecurringBillingRunStarted(
            **envelope(ctx),
            **common,
            schedule_id=opt(after.schedule_id),
            started_at=iso(after.started_at) if after.started_at else at,
            initiated_by_user_id=actor_user_id(ctx),
        )
    elif new == "completed":
        payload = RecurringBillingRunCompleted(
            **envelope(ctx),
            **common,
            completed_at=at,
            invoices_created=after.invoices_created,
            failed_count=after.failed_count,
            warnings=list(after.warnings) if after.warnings else UNSET,
        )
    elif new == "failed":
        payload = RecurringBillingRunFailed(
            **envelope(ctx),
            **common,
            failed_at=at,
            error_code=text_opt(after.error_code),
            error_message=after.error_message or "recurring billing run failed",
            retryable=opt(after.retryable),
        )
    else:
        return []
    ev = emit(payload, correlation=rid, from_state=old, to_state=new)
    return [msgspec.structs.replace(ev, idempotency_key=key(ev.event_type, rid, after.retry_key))]
