"""Pending entries: drain our own at start-up, claim idle ones from any consumer, keep ours alive.

Each function is one or two pipelined round trips and returns what it found; the consume loop
decides what to do with it (process, dead-letter, drop). Delivery counts come from XPENDING:
``deliveries_before`` is the count before our read or claim, so the delivery we make is
``deliveries_before + 1``.

- :func:`read_own_pending`: after a crash, a consumer restarted under the same name reads its
  own pending entries (XREADGROUP with id ``0``) before anything new.
- :func:`claim_idle`: entries idle longer than ``claim_idle_ms`` under any consumer (a dead one,
  or ourselves after a failed delivery) are claimed with XCLAIM; the min-idle check makes one
  claimer win a race.
- :func:`keep_alive`: our own entries that are still in flight (a slow handler, a retry backoff)
  are re-claimed with JUSTID, which resets their idle time without counting a delivery, so a
  live consumer's work is not claimed from under it.

An entry deleted or trimmed while pending comes back with no fields (``fields is None``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ._redis import redis_errors

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["PendingEntry", "claim_idle", "keep_alive", "read_own_pending"]


class PendingEntry(NamedTuple):
    """An entry taken from a pending list; ``fields`` is None when the entry no longer exists."""

    stream: str
    entry_id: bytes
    fields: dict[bytes, bytes] | None
    deliveries_before: int


def _to_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def read_own_pending(
    client: aioredis.Redis,
    group: str,
    consumer: str,
    after: Mapping[str, bytes],
    count: int,
) -> tuple[list[PendingEntry], dict[str, bytes]]:
    """One page of our own pending entries after the given ids (``b"0"`` to start).

    Returns the entries and the next ``after`` map; streams with nothing left are dropped
    from it, so the drain is done when the map is empty.
    """
    if not after:
        return [], {}
    with redis_errors("XREADGROUP (own pending entries)"):
        reply: Any = await client.xreadgroup(group, consumer, cast("Any", dict(after)), count=count)
    pages: list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]] = []
    for key, entries in reply or ():
        if entries:
            stream = key.decode() if isinstance(key, bytes) else str(key)
            pages.append((stream, [(_to_bytes(i), f) for i, f in entries]))
    if not pages:
        return [], {}
    # XREADGROUP counted this read as a delivery; XPENDING tells us how many there were.
    with redis_errors("XPENDING (own pending entries)"):
        pipe = client.pipeline(transaction=False)
        for stream, entries in pages:
            pipe.xpending_range(stream, group, entries[0][0], entries[-1][0], len(entries), consumername=consumer)
        counts_per_stream: list[Any] = await pipe.execute()
    out: list[PendingEntry] = []
    nxt: dict[str, bytes] = {}
    for (stream, entries), counts in zip(pages, counts_per_stream, strict=True):
        delivered = {_to_bytes(c["message_id"]): int(c["times_delivered"]) for c in counts}
        for entry_id, fields in entries:
            before = max(delivered.get(entry_id, 1) - 1, 0)
            out.append(PendingEntry(stream, entry_id, fields or None, before))
        nxt[stream] = entries[-1][0]
    return out, nxt


async def claim_idle(
    client: aioredis.Redis,
    group: str,
    consumer: str,
    streams: Sequence[str],
    *,
    min_idle_ms: int,
    count: int,
    skip: Collection[tuple[str, bytes]] = (),
) -> list[PendingEntry]:
    """Claim up to ``count`` entries per stream idle for ``min_idle_ms`` (skipping ``skip``).

    Ids that XCLAIM did not return were either taken by another consumer first or deleted;
    deleted ones are returned with ``fields=None`` so the caller can drop them from the PEL.
    """
    if not streams:
        return []
    with redis_errors("XPENDING (idle entries)"):
        pipe = client.pipeline(transaction=False)
        for stream in streams:
            pipe.xpending_range(stream, group, "-", "+", count, idle=min_idle_ms)
        pending: list[Any] = await pipe.execute()
    wanted: list[tuple[str, dict[bytes, int]]] = []
    for stream, rows in zip(streams, pending, strict=True):
        ids = {
            _to_bytes(row["message_id"]): int(row["times_delivered"])
            for row in rows
            if (stream, _to_bytes(row["message_id"])) not in skip
        }
        if ids:
            wanted.append((stream, ids))
    if not wanted:
        return []
    with redis_errors("XCLAIM (idle entries)"):
        pipe = client.pipeline(transaction=False)
        for stream, ids in wanted:
            pipe.xclaim(stream, group, consumer, min_idle_ms, list(ids))
        claimed: list[Any] = await pipe.execute()
    out: list[PendingEntry] = []
    missing: list[tuple[str, bytes, int]] = []
    for (stream, ids), entries in zip(wanted, claimed, strict=True):
        got: set[bytes] = set()
        for entry_id, fields in entries or ():
            eid = _to_bytes(entry_id)
            got.add(eid)
            out.append(PendingEntry(stream, eid, fields or None, ids.get(eid, 1)))
        missing.extend((stream, eid, n) for eid, n in ids.items() if eid not in got)
    if missing:
        with redis_errors("XRANGE (claimed entries)"):
            pipe = client.pipeline(transaction=False)
            for stream, eid, _ in missing:
                pipe.xrange(stream, eid, eid)
            exists: list[Any] = await pipe.execute()
        gone = [m for m, found in zip(missing, exists, strict=True) if not found]
        out.extend(PendingEntry(stream, eid, None, n) for stream, eid, n in gone)
    return out


async def keep_alive(
    client: aioredis.Redis,
    group: str,
    consumer: str,
    entries: Mapping[str, Sequence[bytes]],
    *,
    min_idle_ms: int,
) -> None:
    """Reset the idle time of our in-flight entries (XCLAIM ... JUSTID: no delivery counted).

    ``min_idle_ms`` keeps us from taking back an entry another consumer claimed a moment ago.
    """
    if not entries:
        return
    with redis_errors("XCLAIM JUSTID (keep-alive)"):
        pipe = client.pipeline(transaction=False)
        for stream, ids in entries.items():
            pipe.xclaim(stream, group, consumer, min_idle_ms, list(ids), justid=True)
        await pipe.execute()
