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

- :func:`trim_safely`: with ``trim_policy="safe"`` the publisher does not trim (MAXLEN cannot
  know what a lagging group has not read); the consume side trims a stream back to ``max_len``
  entries, but only entries every group on it has read and acked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from .._redis import redis_errors
from ..wire import is_cluster, slot_of

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["PendingEntry", "claim_idle", "keep_alive", "read_own_pending", "trim_safely"]

#: Trims the oldest entries of KEYS[1] back to ARGV[1] entries, but none at or after ARGV[2]
#: (the first id some group still needs). XTRIM MINID, not XDEL: no tombstones, so the groups'
#: entries-read counters stay valid. Returns the number of entries removed.
_TRIM_SAFELY = """
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return 0 end
local old = redis.call('XRANGE', KEYS[1], '-', '(' .. ARGV[2], 'COUNT', excess)
if #old == 0 then return 0 end
local ms, seq = string.match(old[#old][1], '^(%d+)-(%d+)$')
return redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
"""


#: An entry taken from a pending list: ``(stream, entry_id, fields, deliveries_before)``; ``fields``
#: is None when the entry no longer exists. A plain tuple (a NamedTuple costs ~0.2 us per entry to
#: build, a tuple ~0.02 us); the consume loop unpacks it.
PendingEntry: TypeAlias = "tuple[str, bytes, dict[bytes, bytes] | None, int]"


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
    if is_cluster(client):  # one XREADGROUP per hash slot
        by_slot: dict[int, dict[str, bytes]] = {}
        for stream, start in after.items():
            by_slot.setdefault(slot_of(stream), {})[stream] = start
        if len(by_slot) > 1:
            merged: list[PendingEntry] = []
            following: dict[str, bytes] = {}
            for part in by_slot.values():
                page, more = await read_own_pending(client, group, consumer, part, count)
                merged += page
                following.update(more)
            return merged, following
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
            out.append((stream, entry_id, fields or None, before))
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
            out.append((stream, eid, fields or None, ids.get(eid, 1)))
        missing.extend((stream, eid, n) for eid, n in ids.items() if eid not in got)
    if missing:
        with redis_errors("XRANGE (claimed entries)"):
            pipe = client.pipeline(transaction=False)
            for stream, eid, _ in missing:
                pipe.xrange(stream, eid, eid)
            exists: list[Any] = await pipe.execute()
        gone = [m for m, found in zip(missing, exists, strict=True) if not found]
        out.extend((stream, eid, None, n) for stream, eid, n in gone)
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


def _successor(entry_id: bytes) -> bytes:
    ms, _, seq = entry_id.partition(b"-")
    return ms + b"-" + str(int(seq or b"0") + 1).encode()


async def trim_safely(client: aioredis.Redis, streams: Sequence[str], max_len: int) -> dict[str, int]:
    """Trim each stream back to ``max_len`` entries without touching one a group still needs.

    A group needs its oldest pending entry and everything after its last-delivered id. Returns
    the number of entries removed per stream (streams left alone are omitted).
    """
    if not streams:
        return {}
    with redis_errors("XINFO GROUPS (safe trimming)"):
        pipe = client.pipeline(transaction=False)
        for stream in streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        infos: list[Any] = await pipe.execute(raise_on_error=False)
    candidates: list[tuple[str, list[Any]]] = []
    for i, stream in enumerate(streams):
        length, groups = infos[2 * i], infos[2 * i + 1]
        if isinstance(length, Exception) or isinstance(groups, Exception) or not groups or length <= max_len:
            continue
        candidates.append((stream, groups))
    if not candidates:
        return {}
    with redis_errors("XPENDING (safe trimming)"):
        pipe = client.pipeline(transaction=False)
        for stream, groups in candidates:
            for g in groups:
                pipe.xpending(stream, g["name"])
        summaries: list[Any] = await pipe.execute()
    script = client.register_script(_TRIM_SAFELY)
    removed: dict[str, int] = {}
    pos = 0
    for stream, groups in candidates:
        needed: list[tuple[int, int]] = []
        for g in groups:
            summary = summaries[pos]
            pos += 1
            first_needed = (
                _to_bytes(summary["min"])
                if summary.get("pending")
                else _successor(_to_bytes(g.get("last-delivered-id") or b"0-0"))
            )
            ms, _, seq = first_needed.partition(b"-")
            needed.append((int(ms), int(seq or b"0")))
        ms_, seq_ = min(needed)
        with redis_errors(f"safe trim of {stream}"):
            count = int(await script(keys=[stream], args=[max_len, f"{ms_}-{seq_}"]))
        if count:
            removed[stream] = count
    return removed
