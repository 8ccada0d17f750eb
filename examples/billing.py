"""Quickstart: your own handler as a service. Run it with ``bus run examples.billing:app``."""

from __future__ import annotations

from bus import Delivery
from subscribers.app import App

app = App("billing")  # consumer group "billing" (App("billing", group=...) to choose)
sent: list[str] = []  # the invoice ids this process saw (a real app would write them somewhere)


@app.subscribe("INVOICE_SENT")  # channel="global" by default
async def remember_invoice(delivery: Delivery) -> None:
    invoice_id = delivery.payload_dict()["invoiceId"]
    sent.append(invoice_id)
    print(f"invoice {invoice_id} sent (tenant {delivery.tenant_id}, event {delivery.event_id})", flush=True)
