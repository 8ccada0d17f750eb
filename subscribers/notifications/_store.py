"""Per-user in-app notifications in Redis: a hash per notification, a bounded index, an unread set.

Layout (keys from :class:`subscribers._keys.SubscriberKeys`, under the bus prefix)::

    {prefix}notifications:{tenant}:item:{id}             hash: the notification's fields (TTL)
    {prefix}notifications:{tenant}:user:{user}:all       zset: ids scored by creation ms (newest last)
    {prefix}notifications:{tenant}:user:{user}:unread    set: unread ids

A user keeps at most ``max_per_user`` notifications: older ones are removed from all three.
Field names follow the reference's ``internal_notifications`` rows (snake_case), so a web
client can take the pub/sub message and the stored hash alike.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .._keys import SubscriberKeys

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["DeliveryStatus", "Notification", "NotificationStore"]

#: ``pending``: stored, not yet broadcast; ``stored``: broadcast reached no live client (it waits
#: in the inbox); ``delivered``: at least one live client got the push; ``failed``: the push errored.
DeliveryStatus = Literal["pending", "stored", "delivered", "failed"]


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One in-app notification (wire/storage names are the reference's column names)."""

    internal_notification_id: str
    tenant: str
    user_id: str
    template_name: str
    title: str
    message: str
    category: str
    type: str
    created_at: str
    link: str | None = None
    event_id: str | None = None
    context_type: str | None = None
    context_id: str | None = None
    is_read: bool = False
    read_at: str | None = None
    delivery_status: DeliveryStatus = "pending"

    def to_hash(self) -> dict[str, str]:
        """Flat string fields for HSET (None omitted, booleans as ``"1"``/``"0"``)."""
        out: dict[str, str] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> Notification:
        """Parse an HGETALL reply."""
        text = {
            (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in raw.items()
        }
        values: dict[str, Any] = dict(text)
        values["is_read"] = text.get("is_read") == "1"
        return msgspec.convert(values, cls)

    def to_json(self) -> bytes:
        """The pub/sub message: compact JSON without the storage-only ``delivery_status``."""
        data = msgspec.structs.asdict(self)
        data.pop("delivery_status", None)
        return msgspec.json.encode(data)


class NotificationStore:
    """Reads and writes notifications for one prefix; ``max_per_user`` bounds each inbox."""

    def __init__(
        self, client: aioredis.Redis, keys: SubscriberKeys, *, max_per_user: int = 200, ttl_s: int = 30 * 86400
    ) -> None:
        self.client = client
        self.keys = keys
        self.max_per_user = max_per_user
        self.ttl_s = ttl_s

    async def get(self, tenant_id: str, notification_id: str) -> Notification | None:
        """One notification, or None."""
        raw = await self.client.hgetall(self.keys.notification(tenant_id, notification_id))
        return Notification.from_hash(raw) if raw else None

    async def add(self, notification: Notification) -> bool:
        """Store a notification (unread) unless it exists; trims the user's inbox. True if it was new."""
        n = notification
        item = self.keys.notification(n.tenant, n.internal_notification_id)
        index = self.keys.notification_index(n.tenant, n.user_id)
        unread = self.keys.notification_unread(n.tenant, n.user_id)
        if await self.client.exists(item):
            return False
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(item, mapping=n.to_hash())  # type: ignore[arg-type]
            pipe.expire(item, self.ttl_s)
            pipe.zadd(index, {n.internal_notification_id: time.time() * 1000})
            pipe.sadd(unread, n.internal_notification_id)
            pipe.expire(index, self.ttl_s)
            pipe.expire(unread, self.ttl_s)
            pipe.zrange(index, 0, -(self.max_per_user + 1))
            replies = await pipe.execute()
        overflow = [m.decode() if isinstance(m, bytes) else str(m) for m in replies[-1]]
        if overflow:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zrem(index, *overflow)
                pipe.srem(unread, *overflow)
                pipe.delete(*(self.keys.notification(n.tenant, old) for old in overflow))
                await pipe.execute()
        return True

    async def set_status(self, tenant_id: str, notification_id: str, status: DeliveryStatus) -> None:
        """Record how the broadcast went."""
        await self.client.hset(self.keys.notification(tenant_id, notification_id), "delivery_status", status)

    async def mark_read(self, tenant_id: str, user_id: str, notification_id: str, read_at: str) -> bool:
        """Mark read; True only on the unread -> read transition (so READ is published once)."""
        item = self.keys.notification(tenant_id, notification_id)
        owner = await self.client.hget(item, "user_id")
        if owner is None or (owner.decode() if isinstance(owner, bytes) else str(owner)) != user_id:
            return False
        removed = await self.client.srem(self.keys.notification_unread(tenant_id, user_id), notification_id)
        if removed:
            await self.client.hset(item, mapping={"is_read": "1", "read_at": read_at})
        return bool(removed)

    async def list(self, tenant_id: str, user_id: str, *, limit: int = 50) -> list[Notification]:
        """The user's newest notifications first."""
        ids = await self.client.zrevrange(self.keys.notification_index(tenant_id, user_id), 0, limit - 1)
        out: list[Notification] = []
        for raw_id in ids:
            found = await self.get(tenant_id, raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id))
            if found is not None:
                out.append(found)
        return out

    async def unread_count(self, tenant_id: str, user_id: str) -> int:
        """How many notifications the user has not read."""
        return int(await self.client.scard(self.keys.notification_unread(tenant_id, user_id)))
