"""Processed markers: which events, and which handlers of an event, already succeeded.

The reference keeps two sets per tenant, each with a TTL of 3 days:
``processed_events:{tenantId}`` (members: event ids) and ``processed_event_handlers:{tenantId}``
(members ``{eventId}:{handlerKey}``). We keep the same keys and TTL but scope the members by
consumer group and channel, ``{group}|{channel}|{eventId}`` and
``{group}|{channel}|{eventId}:{handlerKey}``, so that

- one event id published on two channels is processed on both (the reference skips the second);
- two consumer groups on one stream each process every event (a shared marker would make the
  second group skip it).

Consequence for interop: our members never equal the reference's, so a Python consumer and a
TypeScript consumer do not see each other's markers (each dedupes its own deliveries only).

When markers are written: the event marker goes into the same MULTI/EXEC as the entry's XACK
(acked <=> marked). Handler markers are only needed when an entry is *not* acked, so they are
written for the handlers that succeeded when a later handler of the same entry fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._keys import Keys
from ._redis import redis_errors

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["MarkerCheck", "Markers"]


class MarkerCheck:
    """The answer of one batched lookup: processed events and succeeded handlers, by member."""

    __slots__ = ("events", "handlers")

    def __init__(self) -> None:
        self.events: set[str] = set()
        self.handlers: set[str] = set()


class Markers:
    """Member and key naming plus the batched lookup, for one consumer group."""

    def __init__(self, keys: Keys, group: str, ttl_s: int) -> None:
        self.keys = keys
        self.group = group
        self.ttl_s = ttl_s

    def event_member(self, channel: str, event_id: str) -> str:
        """``{group}|{channel}|{eventId}`` in ``processed_events:{tenantId}``."""
        return f"{self.group}|{channel}|{event_id}"

    def handler_member(self, channel: str, event_id: str, handler_key: str) -> str:
        """``{group}|{channel}|{eventId}:{handlerKey}`` in ``processed_event_handlers:{tenantId}``."""
        return f"{self.group}|{channel}|{event_id}:{handler_key}"

    def events_key(self, tenant_id: str) -> str:
        """The tenant's processed-event set."""
        return self.keys.processed_events(tenant_id)

    def handlers_key(self, tenant_id: str) -> str:
        """The tenant's processed-handler set."""
        return self.keys.processed_handlers(tenant_id)

    async def lookup(
        self,
        client: aioredis.Redis,
        events: Iterable[tuple[str, str]],
        handlers: Iterable[tuple[str, str]] = (),
    ) -> MarkerCheck:
        """Which ``(tenant, member)`` pairs are present, in one round trip (SMISMEMBER per key)."""
        by_event_key: dict[str, list[str]] = {}
        for tenant, member in events:
            by_event_key.setdefault(self.events_key(tenant), []).append(member)
        by_handler_key: dict[str, list[str]] = {}
        for tenant, member in handlers:
            by_handler_key.setdefault(self.handlers_key(tenant), []).append(member)
        out = MarkerCheck()
        if not by_event_key and not by_handler_key:
            return out
        pipe = client.pipeline(transaction=False)
        order: list[tuple[set[str], Sequence[str]]] = []
        for key, members in by_event_key.items():
            pipe.smismember(key, members)
            order.append((out.events, members))
        for key, members in by_handler_key.items():
            pipe.smismember(key, members)
            order.append((out.handlers, members))
        with redis_errors("SMISMEMBER (processed markers)"):
            replies: list[Any] = await pipe.execute()
        for (target, asked), flags in zip(order, replies, strict=True):
            target.update(m for m, flag in zip(asked, flags, strict=True) if flag)
        return out
