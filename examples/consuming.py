"""Consuming: a handler in a consumer group of its own, run until one event was handled."""

from __future__ import annotations

import uuid

import anyio

from bus import BusSettings, Delivery, EventBus, Reject, RetryLater

# Consumer group "mailer": its own, so it sees every event and takes none from the email service
# (a group splits a stream's entries between its consumers; see "Groups and names" below).
bus = EventBus(BusSettings.from_env(consumer_group="mailer"))
handled = anyio.Event()


@bus.subscriber("TICKET_CREATED", channel="emailservice::v7", subscriber_id="mailer")
async def on_ticket(delivery: Delivery) -> None:
    print(delivery.value)  # typed Struct (delivery.variant: "legacy" | "domain" | "catalog" | "bus")
    print(delivery.payload_dict())  # the raw payload, unknown keys kept (delivery.payload_json: the bytes)
    print(delivery.event_id, delivery.timestamp, delivery.tenant_id, delivery.channel, delivery.stream)
    print(delivery.entry_id, delivery.delivery_count, delivery.forced)
    if delivery.payload_dict().get("title") == "poison":
        raise Reject("a ticket we can never handle")  # dead-lettered at once
    if delivery.payload_dict().get("title") == "later":
        raise RetryLater("the mail server is down")  # no in-process retries: redelivered later
    handled.set()


async def on_update(delivery: Delivery) -> None:
    print("updated", delivery.event_id)


bus.subscribe("TICKET_UPDATED", on_update, channel="global")  # plain form; returns a Subscription


async def main() -> None:
    payload = {"tenantId": str(uuid.uuid4()), "ticketId": str(uuid.uuid4()), "userId": str(uuid.uuid4())}
    async with bus, anyio.create_task_group() as tg:
        await tg.start(bus.run)  # returns once the consumer groups exist
        await bus.publish("TICKET_CREATED", payload, channel="emailservice::v7")
        with anyio.fail_after(10):
            await handled.wait()
        tg.cancel_scope.cancel()  # cancel the task group (or bus.stop()) to drain and stop


if __name__ == "__main__":
    anyio.run(main)
