"""ACL users: one confined to a service's channels, one to a tenant's prefix; created with an admin connection.

Run it against a Redis of your own (``REDIS_URL`` with an admin user): it creates the users
``svc-email`` and ``tenant-<id>`` there, then publishes as the tenant.
"""

from __future__ import annotations

import os
import secrets
import uuid

import anyio
import redis.asyncio as aioredis

from bus import BusSettings, EventBus, PermissionDeniedError
from bus.security import service_acl, tenant_acl, tenant_prefix

url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")


async def main() -> None:
    password = secrets.token_urlsafe(24)
    user = service_acl("email", channels=["emailservice::v7"], roles=["consume", "notify"])
    print(user.command_line())  # for docs: >*** instead of the password
    print(user.acl_file_line(password))  # for an aclfile (the password only as its SHA-256)

    tenant_id = str(uuid.uuid4())  # a tenant id: no glob characters, braces, ':' or spaces
    tenant = tenant_acl(tenant_id)  # user tenant-<id>, keys under tenant_prefix(tenant_id)
    admin = aioredis.Redis.from_url(url)
    try:
        await admin.execute_command(*user.setuser_args(password))  # ACL SETUSER ... #<sha256> ...
        await admin.execute_command(*tenant.setuser_args(password))
    finally:
        await admin.aclose()

    host = url.split("@")[-1].removeprefix("redis://")
    login = f"redis://{tenant.username}:{password}@{host}"
    settings = BusSettings.from_url(login, prefix=tenant_prefix(tenant_id))
    payload = {"tenantId": tenant_id, "ticketId": str(uuid.uuid4()), "userId": str(uuid.uuid4())}
    async with EventBus(settings) as bus:
        result = await bus.publish("TICKET_CREATED", payload)  # under alga-psa:tenant:<id>:
        print(sorted(result.entries))
    wrong = BusSettings.from_url(login, prefix=tenant_prefix("other"))
    async with EventBus(wrong) as bus:
        try:
            await bus.publish("TICKET_CREATED", payload)
        except PermissionDeniedError as exc:
            print("refused:", exc)  # another tenant's keys: NOPERM, never retried


if __name__ == "__main__":
    anyio.run(main)
