"""Credential rotation without failed publishes: the user accepts both passwords while every process swaps.

Run it against a Redis of your own (``REDIS_URL`` with an admin user): it creates the user ``svc-orders``.
"""

from __future__ import annotations

import os
import secrets
import uuid

import anyio
import redis.asyncio as aioredis

from bus import BusSettings, EventBus
from bus.security import add_password_args, remove_password_args, service_acl

url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")


async def main() -> None:
    old, new = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    admin = aioredis.Redis.from_url(url)
    user = service_acl("orders", channels=["global"], roles=["publish"], workflow="append")
    await admin.execute_command(*user.setuser_args(old))
    host = url.split("@")[-1].removeprefix("redis://")
    payload = {"tenantId": str(uuid.uuid4()), "ticketId": str(uuid.uuid4()), "userId": str(uuid.uuid4())}
    try:
        async with EventBus(BusSettings.from_url(f"redis://svc-orders:{old}@{host}")) as bus:
            await bus.publish("TICKET_CREATED", payload)
            await admin.execute_command(*add_password_args("svc-orders", new))  # 1. the user accepts both
            await bus.rotate_credentials("svc-orders", new)  # 2. on every process
            await admin.execute_command(*remove_password_args("svc-orders", old))  # 3. the old one is gone
            await bus.publish("TICKET_CREATED", payload)  # connections log in with the new password
            print("publishing on the new password")
    finally:
        await admin.aclose()


if __name__ == "__main__":
    anyio.run(main)
