"""Idempotent publish: at most one write per ``(tenant, idempotency key)`` within a window.

How it works (``bus.publish.IDEMPOTENT_PUBLISH_SCRIPT``): one Lua script per event, in the same
MULTI/EXEC as any other events of the round trip, atomically

1. reads the marker ``{prefix}idempotency:{tenant}:{key}``; if present, writes nothing and
   returns the event id stored in it (the FIRST publish's id: ``result.duplicate`` is True);
2. checks every target stream is a stream (or absent), so a WRONGTYPE key writes nothing;
3. XADDs every entry (fan-out copies and the workflow entry);
4. sets the marker to the event id with a TTL of ``idempotency_window_s``.

Being one script, two concurrent publishes of one key can never both write. After the window
the marker expires and the key publishes again. The script is sent as EVALSHA (EVAL the first
time and after a ``NOSCRIPT``); fakeredis runs it when ``lupa`` is installed (dev extra).

On Redis >= 8.6 (``bus.capabilities["xadd_idmp"]``) the script also passes ``IDMP <producer>
<tenant:key>`` to each XADD, so the server itself refuses a repeat on each stream should the
marker be evicted (``volatile-*`` maxmemory policies evict keys with a TTL). The marker stays
authoritative: IDMP alone is per stream, keeps ids at most 24 h and at most 10,000 per producer,
and cannot return the first event id.

Recovery: a ``PublishOutcomeUnknownError`` (reply lost) is safe to retry with the same key:
the repeat either finds the marker (first write happened) or writes once.
"""

from __future__ import annotations

from bus import EventBus, redis_errors

__all__ = ["first_event_id", "forget_idempotency_key", "idempotency_marker_key"]


def idempotency_marker_key(bus: EventBus, tenant: str, key: str) -> str:
    """The marker key of ``(tenant, key)``: ``{prefix}idempotency:{tenant}:{key}``."""
    return bus.publisher.marker_key(tenant, key)


async def first_event_id(bus: EventBus, tenant: str, key: str) -> str | None:
    """The event id published under ``(tenant, key)`` within the window, or None."""
    with redis_errors("idempotency marker lookup"):
        value = await bus.client.get(idempotency_marker_key(bus, tenant, key))
    if value is None:
        return None
    # The marker holds the event id, then (for a fan-out) each stream's id: the first is the event's.
    return (value.decode() if isinstance(value, bytes) else str(value)).partition(",")[0]


async def forget_idempotency_key(bus: EventBus, tenant: str, key: str) -> bool:
    """Delete the marker so the key may publish again before the window ends; True if it existed."""
    with redis_errors("idempotency marker delete"):
        return bool(await bus.client.delete(idempotency_marker_key(bus, tenant, key)))
