"""Exactly-once side effects in SQL: the effect key and the effect in one transaction (SQLite; Postgres alike)."""

from __future__ import annotations

import sqlite3
import uuid

import anyio

from bus import BusSettings, Delivery, EventBus

bus = EventBus(BusSettings.from_env(consumer_group="ledger"))
db = sqlite3.connect(":memory:")
db.execute("CREATE TABLE applied_effects (effect_key TEXT PRIMARY KEY)")
db.execute("CREATE TABLE accounts (id TEXT PRIMARY KEY, paid INTEGER NOT NULL DEFAULT 0)")
handled = anyio.Event()


@bus.subscriber("PAYMENT_RECORDED", subscriber_id="ledger")  # subscriber_id: part of the key
async def credit(delivery: Delivery) -> None:
    payload = delivery.payload_dict()
    account, amount = payload["clientId"], int(payload["amount"])  # amount in cents, as a string
    with db:  # BEGIN ... COMMIT
        new = (
            db.execute(
                "INSERT INTO applied_effects (effect_key) VALUES (?) ON CONFLICT DO NOTHING", (delivery.effect_key,)
            ).rowcount
            == 1
        )
        if new:
            db.execute("INSERT INTO accounts (id) VALUES (?) ON CONFLICT DO NOTHING", (account,))
            db.execute("UPDATE accounts SET paid = paid + ? WHERE id = ?", (amount, account))
    handled.set()


async def main() -> None:
    client_id = str(uuid.uuid4())
    payload = {
        "tenantId": str(uuid.uuid4()),
        "occurredAt": "2026-01-23T10:11:12.345Z",
        "paymentId": str(uuid.uuid4()),
        "clientId": client_id,
        "amount": "12500",
        "currency": "EUR",
        "method": "bank_transfer",
    }
    async with bus, anyio.create_task_group() as tg:
        await tg.start(bus.run)
        await bus.publish("PAYMENT_RECORDED", payload)
        with anyio.fail_after(10):
            await handled.wait()
        tg.cancel_scope.cancel()
    print(db.execute("SELECT paid FROM accounts WHERE id = ?", (client_id,)).fetchone()[0])


if __name__ == "__main__":
    anyio.run(main)
