"""Processed markers: which events, and which handlers of an event, already succeeded.

The reference keeps two sets per tenant, each with a TTL of 3 days:
``processed_events:{tenantId}`` (members: event ids) and ``processed_event_handlers:{tenantId}``
(members ``{eventId}:{handlerKey}``). Those keys are the reference's: we never write, rename,
delete or expire them (a rotation of them once hid the reference's own markers from it). Our
consumers keep their own two sets under our prefix, ``{prefix}processed:{tenantId}`` and
``{prefix}processed-handlers:{tenantId}`` (same TTL), with members scoped by consumer group and
channel, ``{group}|{channel}|{eventId}`` and ``{group}|{channel}|{eventId}:{handlerKey}``, so that

- one event id published on two channels is processed on both (the reference skips the second);
- two consumer groups on one stream each process every event (a shared marker would make the
  second group skip it).

Consequence for interop: a Python consumer and a TypeScript consumer do not see each other's
markers (each dedupes its own deliveries only); sharing the reference's keys would buy nothing,
since our members never equal its members.

When markers are written: the event marker goes into the same MULTI/EXEC as the entry's XACK
(acked <=> marked). Handler markers matter only while an entry is *not* acked: for an entry with
several handlers, each handler but the last gets its marker in the next group-commit flush after
it returns (so a crash while later handlers run does not repeat it), and the handlers that
succeeded get theirs when a later handler fails. A handler member is also the handler's
:attr:`bus.Delivery.effect_key`, the idempotency key of its side effect.

Markers are written after the handler returned, so they cannot make a side effect exactly-once
(a crash between the effect and the flush repeats it); committing the effect with its
``effect_key`` can (see :mod:`bus._guard`).

Bounded memory: the reference renews the set's TTL on every write, so under steady traffic it
never expires and keeps a member per event forever. We rotate instead: ``{key}:born`` (TTL =
``marker_ttl_s``) dates the current set; the first flush after it expired renames the set to
``{key}:prev`` (TTL = ``marker_ttl_s``) before adding, in one script (:data:`ADD_SCRIPT`), and
lookups check both (SMISMEMBER on each, in one round trip; a Lua script that sends each member
once was measured slower for a single event and no faster for a batch). A marker so lives between
``marker_ttl_s`` and twice that, and the sets hold at most two TTLs' worth of events. Only our
own keys rotate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._keys import Keys
from .._redis import redis_errors
from ..wire import SlotBlock, is_cluster, pack_command, round_trip, slot_of, slot_transactions

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["ADD_SCRIPT", "MarkerCheck", "Markers"]

#: KEYS: current set, previous set, its birth marker; ARGV: TTL seconds, then the members.
#: Rotates the current set to the previous one once the birth marker has expired, then adds.
ADD_SCRIPT = b"""
if redis.call('SET', KEYS[3], '1', 'EX', ARGV[1], 'NX') and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
for i = 2, #ARGV, 4000 do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


class MarkerCheck:
    """The answer of one batched lookup: processed events and succeeded handlers, by member."""

    __slots__ = ("events", "handlers")

    def __init__(self) -> None:
        self.events: set[bytes] = set()
        self.handlers: set[bytes] = set()


class Markers:
    """Member and key naming plus the batched lookup, for one consumer group."""

    def __init__(self, keys: Keys, group: str, ttl_s: int, timeout_s: float = 10.0) -> None:
        self.keys = keys
        self.group = group
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s

    def event_member(self, channel: str, event_id: str) -> str:
        """``{group}|{channel}|{eventId}`` in ``{prefix}processed:{tenantId}``."""
        return f"{self.group}|{channel}|{event_id}"

    def handler_member(self, channel: str, event_id: str, handler_key: str) -> str:
        """``{group}|{channel}|{eventId}:{handlerKey}`` in ``{prefix}processed-handlers:{tenantId}``."""
        return f"{self.group}|{channel}|{event_id}:{handler_key}"

    def handler_members(self, delivery: Any, subs: Iterable[Any]) -> list[bytes]:
        """:meth:`handler_member` of each of ``subs`` (their ``handler_key``) for one delivery, encoded."""
        member, channel, event_id = self.handler_member, delivery.channel, delivery.event_id
        return [member(channel, event_id, s.handler_key).encode() for s in subs]

    def events_key(self, tenant_id: str) -> str:
        """The tenant's processed-event set (ours, never the reference's)."""
        return self.keys.marker_events(tenant_id)

    def handlers_key(self, tenant_id: str) -> str:
        """The tenant's processed-handler set (ours, never the reference's)."""
        return self.keys.marker_handlers(tenant_id)

    def add_command(self, key: str, members: Sequence[bytes]) -> bytes:
        """The packed EVAL that adds ``members`` to ``key``, rotating it first when it is due."""
        head = (b"EVAL", ADD_SCRIPT, b"3", key, key + ":prev", key + ":born", str(self.ttl_s))
        return pack_command(head, members, ordered=False)

    async def lookup(
        self,
        client: aioredis.Redis,
        events: Mapping[str, Sequence[bytes]],
        handlers: Mapping[str, Sequence[bytes]] | None = None,
    ) -> MarkerCheck:
        """Which members (by tenant) are present, in one round trip (SMISMEMBER on each set and its rotated one)."""
        out = MarkerCheck()
        order: list[tuple[set[bytes], Sequence[bytes], str]] = []
        data: list[bytes] = []
        for target, by_tenant, key_of in (
            (out.events, events, self.events_key),
            (out.handlers, handlers or {}, self.handlers_key),
        ):
            for tenant, members in by_tenant.items():
                if members:
                    key = key_of(tenant)
                    for name in (key, key + ":prev"):  # the current set and the rotated one
                        data.append(pack_command((b"SMISMEMBER", name), members))
                        order.append((target, members, name))
        if not order:
            return out
        what = "SMISMEMBER (processed markers)"
        with redis_errors(what):
            if is_cluster(client):
                replies = await _per_slot(client, data, order, self.timeout_s)
            else:
                replies = await round_trip(client, b"".join(data), len(order), self.timeout_s)
        for (target, asked, _), flags in zip(order, replies, strict=True):
            if isinstance(flags, Exception):
                with redis_errors(what):
                    raise flags
            if any(flags):
                target.update(m for m, flag in zip(asked, flags, strict=True) if flag)
        return out


async def _per_slot(
    client: aioredis.Redis, data: list[bytes], order: list[tuple[set[bytes], Sequence[bytes], str]], timeout_s: float
) -> list[Any]:
    """Redis Cluster: the lookups grouped by slot (a tenant's sets share one: their tag), the
    slots of one node in one round trip; the replies in ``order``'s order."""
    blocks: dict[int, tuple[SlotBlock, list[int]]] = {}
    for i, (_, _, key) in enumerate(order):
        slot = slot_of(key)
        entry = blocks.get(slot)
        if entry is None:
            entry = blocks[slot] = (SlotBlock(slot, [], n_keys=2, transaction=False), [])
        entry[0].commands.append(data[i])
        entry[1].append(i)
    await slot_transactions(client, [b for b, _ in blocks.values()], timeout_s)
    replies: list[Any] = [None] * len(order)
    for block, positions in blocks.values():
        if not isinstance(block.replies, list):
            raise block.replies
        for i, reply in zip(positions, block.replies, strict=True):
            replies[i] = reply
    return replies
