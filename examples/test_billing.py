"""Quickstart: test the billing app on an in-memory Redis (``python -m pytest examples/test_billing.py``)."""

from __future__ import annotations

import uuid

import anyio

from bus.testing import fake_bus, wait_drained
from examples.billing import app, sent


async def publish_and_handle() -> str:
    invoice_id = str(uuid.uuid4())
    payload = {
        "tenantId": str(uuid.uuid4()),
        "occurredAt": "2026-01-23T10:11:12.345Z",
        "invoiceId": invoice_id,
        "clientId": str(uuid.uuid4()),
        "sentByUserId": str(uuid.uuid4()),
        "sentAt": "2026-01-23T10:11:12.345Z",
        "deliveryMethod": "email",
    }
    async with fake_bus() as bus, anyio.create_task_group() as tg:
        await tg.start(app.run, bus)  # returns once the app's consumer group exists
        await bus.publish("INVOICE_SENT", payload)
        with anyio.fail_after(10):
            await wait_drained(bus)  # nothing unread, nothing pending: the handler ran and was acked
        tg.cancel_scope.cancel()
    return invoice_id


def test_remember_invoice() -> None:
    invoice_id = anyio.run(publish_and_handle)
    assert sent == [invoice_id]
