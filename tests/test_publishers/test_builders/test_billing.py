"""Billing builders: invoices, payments, credit notes, contracts and renewal, billing runs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from publishers.builders import (
    BillingRunSnapshot,
    ContractSnapshot,
    CreditNoteSnapshot,
    InvoiceSnapshot,
    PaymentSnapshot,
    billing_run_changed,
    contract_changed,
    contract_renewal_scan,
    credit_note_applied,
    credit_note_changed,
    invoice_changed,
    invoice_overdue_scan,
    payment_applied,
    payment_failed,
    payment_recorded,
    payment_refunded,
)

from ._factories import NOW_ISO, USER, check, make_ctx, only, types, uid, wire

INVOICE, CLIENT, CONTRACT = uid("invoice"), uid("client"), uid("contract")
TODAY = date(2026, 3, 10)


def make_invoice(**overrides: Any) -> InvoiceSnapshot:
    """A draft invoice of 120.00 due on the 20th."""
    fields: dict[str, Any] = {
        "invoice_id": INVOICE,
        "status": "draft",
        "client_id": CLIENT,
        "due_date": date(2026, 3, 20),
        "amount_due": Decimal("120.00"),
    }
    fields.update(overrides)
    return InvoiceSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param({}, {}, [], id="nothing-changed"),
        pytest.param({}, {"status": "Sent"}, ["INVOICE_STATUS_CHANGED", "INVOICE_SENT"], id="sent"),
        pytest.param(
            {}, {"sent_at": datetime(2026, 3, 10, 9, tzinfo=UTC)}, ["INVOICE_SENT"], id="sent-at-set-status-unchanged"
        ),
        pytest.param({"status": "sent"}, {"status": "SENT"}, [], id="same-status-other-case"),
        pytest.param({}, {"due_date": date(2026, 4, 1)}, ["INVOICE_DUE_DATE_CHANGED"], id="due-date"),
        pytest.param({"due_date": None}, {"due_date": date(2026, 4, 1)}, [], id="due-date-first-set"),
        pytest.param(
            {"status": "sent"},
            {"status": "overdue", "due_date": date(2026, 3, 1)},
            ["INVOICE_STATUS_CHANGED", "INVOICE_DUE_DATE_CHANGED", "INVOICE_OVERDUE"],
            id="overdue-status",
        ),
        pytest.param(
            {"status": "overdue"},
            {"status": "written_off", "amount_due": Decimal(0)},
            ["INVOICE_STATUS_CHANGED", "INVOICE_WRITTEN_OFF"],
            id="written-off",
        ),
    ],
)
def test_invoice_changed(before: dict[str, Any], after: dict[str, Any], expected: list[str]) -> None:
    """Each invoice transition gives its event; nothing else does."""
    assert types(check(invoice_changed(make_invoice(**before), make_invoice(**after), make_ctx()))) == expected


def test_invoice_payload_details() -> None:
    """Sent carries method and sender; written off carries the balance before, as a string."""
    sent = only(check(invoice_changed(make_invoice(), make_invoice(status="sent"), make_ctx())), "INVOICE_SENT")
    assert (wire(sent)["deliveryMethod"], wire(sent)["sentByUserId"], wire(sent)["sentAt"]) == ("email", USER, NOW_ISO)
    off = check(invoice_changed(make_invoice(status="sent"), make_invoice(status="Written Off"), make_ctx()))
    assert wire(only(off, "INVOICE_WRITTEN_OFF"))["amountWrittenOff"] == "120.00"
    status = only(off, "INVOICE_STATUS_CHANGED")
    assert (status.from_state, status.to_state) == ("sent", "written_off")


@pytest.mark.parametrize(
    ("overrides", "last_checked", "count"),
    [
        pytest.param({"due_date": date(2026, 3, 9)}, datetime(2026, 3, 9, 12, tzinfo=UTC), 1, id="became-overdue"),
        pytest.param({"due_date": date(2026, 3, 1)}, datetime(2026, 3, 9, tzinfo=UTC), 0, id="already-overdue"),
        pytest.param({"due_date": date(2026, 3, 10)}, datetime(2026, 3, 9, tzinfo=UTC), 0, id="due-today"),
        pytest.param({"due_date": date(2026, 3, 9), "status": "paid"}, datetime(2026, 3, 9, tzinfo=UTC), 0, id="paid"),
        pytest.param(
            {"due_date": date(2026, 3, 9), "status": "draft"}, datetime(2026, 3, 9, tzinfo=UTC), 0, id="draft"
        ),
        pytest.param(
            {"due_date": date(2026, 3, 9), "amount_due": Decimal(0)},
            datetime(2026, 3, 9, tzinfo=UTC),
            0,
            id="nothing-due",
        ),
    ],
)
def test_invoice_overdue_scan_needs_a_crossing(overrides: dict[str, Any], last_checked: datetime, count: int) -> None:
    """The overdue scan alerts once, when a collectible invoice passes its due date."""
    invoice = make_invoice(**{"status": "sent", **overrides})
    events = check(invoice_overdue_scan(invoice, make_ctx(), last_checked_at=last_checked))
    assert len(events) == count
    if events:
        assert wire(events[0])["daysOverdue"] == 1
        assert wire(events[0])["amountDue"] == "120.00"


def test_overdue_key_shared_by_status_and_scan() -> None:
    """Status-driven and scan-driven overdue events share one key per due date."""
    due = make_invoice(status="sent", due_date=date(2026, 3, 9))
    scan = invoice_overdue_scan(due, make_ctx(), last_checked_at=datetime(2026, 3, 9, tzinfo=UTC))
    status = invoice_changed(due, make_invoice(status="overdue", due_date=date(2026, 3, 9)), make_ctx())
    assert (
        scan[0].idempotency_key
        == only(status, "INVOICE_OVERDUE").idempotency_key
        == f"invoice_overdue:{INVOICE}:2026-03-09"
    )


def payment(**overrides: Any) -> PaymentSnapshot:
    """A 50.00 card payment."""
    fields: dict[str, Any] = {
        "payment_id": uid("payment"),
        "amount": Decimal("50.00"),
        "currency": "EUR",
        "method": "card",
    }
    fields.update(overrides)
    return PaymentSnapshot(**fields)


def test_payments() -> None:
    """Recorded, applied, failed and refunded payments validate and carry money as strings."""
    ctx = make_ctx()
    recorded = check(payment_recorded(payment(), ctx))
    assert wire(recorded[0])["amount"] == "50.00"
    assert recorded[0].idempotency_key == f"payment_recorded:{uid('payment')}"
    applied = check(payment_applied(uid("payment"), [(INVOICE, Decimal("30")), (uid("inv2"), "20.00")], ctx))
    assert wire(applied[0])["applications"] == [
        {"invoiceId": INVOICE, "amountApplied": "30"},
        {"invoiceId": uid("inv2"), "amountApplied": "20.00"},
    ]
    failed = check(
        payment_failed(ctx, amount="50", currency="EUR", method="card", invoice_id=INVOICE, error_message="x")
    )
    assert failed[0].correlation_key == INVOICE
    refunded = check(payment_refunded(uid("payment"), Decimal("5"), "EUR", ctx, refund_id="r1"))
    assert refunded[0].idempotency_key == f"payment_refunded:{uid('payment')}:r1"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: payment_recorded(payment(amount=Decimal(0)), make_ctx()), id="record-zero"),
        pytest.param(lambda: payment_applied(uid("p"), [], make_ctx()), id="apply-nothing"),
        pytest.param(lambda: payment_applied(uid("p"), [(INVOICE, 0)], make_ctx()), id="apply-zero"),
        pytest.param(lambda: payment_refunded(uid("p"), "0.00", "EUR", make_ctx()), id="refund-zero"),
        pytest.param(lambda: credit_note_applied(uid("cn"), INVOICE, 0, "EUR", make_ctx()), id="credit-zero"),
    ],
)
def test_zero_money_movements_emit_nothing(call: Any) -> None:
    """Moving no money is no event."""
    assert call() == []


def test_payment_failed_needs_a_reference() -> None:
    """A failed payment must name a payment or an invoice."""
    with pytest.raises(ValueError, match="payment_id or an invoice_id"):
        payment_failed(make_ctx(), amount="1", currency="EUR", method="card")


def test_money_must_not_be_float() -> None:
    """Float amounts are refused rather than rounded."""
    with pytest.raises(TypeError):
        payment_refunded(uid("p"), 1.1, "EUR", make_ctx())  # type: ignore[arg-type]


def credit_note(**overrides: Any) -> CreditNoteSnapshot:
    """An issued 25.00 credit note."""
    fields: dict[str, Any] = {"credit_note_id": uid("cn"), "amount": Decimal(25), "currency": "EUR", "status": "issued"}
    fields.update(overrides)
    return CreditNoteSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {}, ["CREDIT_NOTE_CREATED"], id="created"),
        pytest.param({}, {"status": "Voided"}, ["CREDIT_NOTE_VOIDED"], id="voided"),
        pytest.param({"status": "void"}, {"status": "voided"}, [], id="already-void"),
        pytest.param({}, {"status": "applied"}, [], id="other-status"),
    ],
)
def test_credit_note_changed(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """Credit notes emit on creation and on voiding only."""
    prev = None if before is None else credit_note(**before)
    assert types(check(credit_note_changed(prev, credit_note(**after), make_ctx()))) == expected


def test_credit_note_applied() -> None:
    """Applying credit names note, invoice and amount."""
    doc = wire(check(credit_note_applied(uid("cn"), INVOICE, Decimal("10.00"), "EUR", make_ctx()))[0])
    assert (doc["creditNoteId"], doc["invoiceId"], doc["amountApplied"]) == (uid("cn"), INVOICE, "10.00")


def contract(**overrides: Any) -> ContractSnapshot:
    """An active contract ending in a year."""
    fields: dict[str, Any] = {
        "contract_id": CONTRACT,
        "client_id": CLIENT,
        "status": "active",
        "end_date": date(2027, 3, 10),
    }
    fields.update(overrides)
    return ContractSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {}, ["CONTRACT_CREATED"], id="created"),
        pytest.param(
            None,
            {"end_date": date(2026, 3, 25)},
            ["CONTRACT_CREATED", "CONTRACT_RENEWAL_UPCOMING"],
            id="created-due-soon",
        ),
        pytest.param({}, {}, [], id="nothing-changed"),
        pytest.param({}, {"status": "expired"}, ["CONTRACT_STATUS_CHANGED", "CONTRACT_UPDATED"], id="status"),
        pytest.param({}, {"name": "Gold"}, ["CONTRACT_UPDATED"], id="name"),
        pytest.param(
            {},
            {"end_date": date(2026, 4, 9)},
            ["CONTRACT_UPDATED", "CONTRACT_RENEWAL_UPCOMING"],
            id="moved-into-window-day-30",
        ),
        pytest.param({}, {"end_date": date(2026, 4, 10)}, ["CONTRACT_UPDATED"], id="moved-to-day-31"),
        pytest.param(
            {"end_date": date(2026, 3, 20)},
            {"end_date": date(2026, 3, 25)},
            ["CONTRACT_UPDATED"],
            id="moved-within-window",
        ),
        pytest.param({}, {"end_date": date(2026, 3, 1)}, ["CONTRACT_UPDATED"], id="moved-into-past"),
    ],
)
def test_contract_changed(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """Contract events, with renewal upcoming only when the renewal date enters the 30-day window."""
    prev = None if before is None else contract(**before)
    assert types(check(contract_changed(prev, contract(**after), make_ctx()))) == expected


def test_contract_keys_follow_the_reference() -> None:
    """Creation and renewal keys are the reference's, renewal with the renewal date."""
    events = contract_changed(None, contract(end_date=date(2026, 3, 25)), make_ctx())
    assert events[0].idempotency_key == f"contract_created:{CONTRACT}:{CLIENT}"
    renewal = only(events, "CONTRACT_RENEWAL_UPCOMING")
    assert renewal.idempotency_key == f"contract_renewal_upcoming:{CONTRACT}:{CLIENT}:2026-03-25"
    assert (wire(renewal)["renewalAt"], wire(renewal)["daysUntilRenewal"]) == ("2026-03-25", 15)


@pytest.mark.parametrize(
    ("end", "last_checked", "count"),
    [
        pytest.param(date(2026, 4, 9), datetime(2026, 3, 9, tzinfo=UTC), 1, id="entered-today"),
        pytest.param(date(2026, 4, 9), datetime(2026, 3, 10, 1, tzinfo=UTC), 0, id="already-checked-today"),
        pytest.param(date(2026, 4, 20), datetime(2026, 3, 9, tzinfo=UTC), 0, id="still-outside"),
        pytest.param(date(2026, 3, 15), datetime(2026, 3, 9, tzinfo=UTC), 0, id="was-inside-yesterday"),
    ],
)
def test_contract_renewal_scan_needs_a_crossing(end: date, last_checked: datetime, count: int) -> None:
    """A daily scan announces a renewal once, on the day it enters the window."""
    assert len(check(contract_renewal_scan(contract(end_date=end), make_ctx(), last_checked_at=last_checked))) == count


def run(**overrides: Any) -> BillingRunSnapshot:
    """A pending billing run."""
    fields: dict[str, Any] = {"run_id": uid("run"), "status": "pending"}
    fields.update(overrides)
    return BillingRunSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {"status": "running"}, ["RECURRING_BILLING_RUN_STARTED"], id="started"),
        pytest.param(
            {"status": "running"},
            {"status": "completed", "invoices_created": 4},
            ["RECURRING_BILLING_RUN_COMPLETED"],
            id="done",
        ),
        pytest.param(
            {"status": "running"},
            {"status": "failed", "error_message": "db down"},
            ["RECURRING_BILLING_RUN_FAILED"],
            id="failed",
        ),
        pytest.param({"status": "running"}, {"status": "Running"}, [], id="still-running"),
        pytest.param(None, {}, [], id="still-pending"),
    ],
)
def test_billing_run_changed(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """Run lifecycle events on entering running, completed or failed only."""
    prev = None if before is None else run(**before)
    events = check(billing_run_changed(prev, run(**after), make_ctx()))
    assert types(events) == expected
    for ev in events:
        assert wire(ev)["selectionMode"] == "due_service_periods"


def test_billing_run_retry_is_a_new_key() -> None:
    """A retried run (new retry key) does not dedupe against the first attempt."""
    first = billing_run_changed(None, run(status="running"), make_ctx())
    retry = billing_run_changed(None, run(status="running", retry_key="retry-1"), make_ctx())
    assert first[0].idempotency_key != retry[0].idempotency_key
