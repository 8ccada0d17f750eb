"""Exactly-once side effects in Redis: the queued commands and an effect marker in one WATCH/MULTI/EXEC."""

from __future__ import annotations

import uuid

import anyio

from bus import BusSettings, Delivery, EventBus, apply_once, redis_effect

bus = EventBus(BusSettings.from_env(consumer_group="balances"))
handled = anyio.Event()


@bus.subscriber("PAYMENT_RECORDED", subscriber_id="balances")
async def credit(delivery: Delivery) -> None:
    payload = delivery.payload_dict()
    account, amount = payload["clientId"], int(payload["amount"])
    async with redis_effect(bus, delivery) as tx:  # bus: its client, prefix, marker_ttl_s
        tx.pipe.hincrby(f"{bus.settings.prefix}balance:{account}", "paid", amount)  # queued, run at the block's end
        tx.pipe.xadd(f"{bus.settings.prefix}audit", {"event": delivery.event_id})
    print("credited now:", tx.applied)  # False: an earlier delivery had committed it (tx.already_applied in the block)


@bus.subscriber("PAYMENT_RECORDED", subscriber_id="payment-counter")  # another handler: another effect key
async def count(delivery: Delivery) -> None:
    key = f"{bus.settings.prefix}payments:{delivery.payload_dict()['clientId']}"
    applied = await apply_once(bus, delivery, lambda pipe: pipe.incrby(key, 1))  # one-command form
    print("counted now:", applied)
    handled.set()


async def main() -> None:
    payload = {
        "tenantId": str(uuid.uuid4()),
        "occurredAt": "2026-01-23T10:11:12.345Z",
        "paymentId": str(uuid.uuid4()),
        "clientId": str(uuid.uuid4()),
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


if __name__ == "__main__":
    anyio.run(main)
