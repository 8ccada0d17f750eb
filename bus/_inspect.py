"""Introspection: per stream and group, length, lag, pending, oldest pending age, consumers,
dead letters, and entries trimmed before the group read them.

Trimmed-unread count of a group (Redis 7.0+): XADD counts every entry (``entries-added``), the
group counts the entries it was delivered (``entries-read``); what the group never read and is
no longer in the stream was trimmed (or deleted) unread::

    trimmed_unread = entries-added - entries-read - (entries still in the stream after last-delivered-id)

Redis keeps ``entries-read`` counting real deliveries, so the number persists after the group
reads past the gap. (fakeredis re-bases ``entries-read`` when the group reads past a gap, so
there the count is only visible until then.) When Redis cannot tell (``entries-read`` is nil,
e.g. after XDEL or XGROUP SETID to an arbitrary id) the count is ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ._keys import Keys
from ._redis import redis_errors
from ._text import text

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "BusStatus",
    "ConsumerStatus",
    "GroupStatus",
    "StreamStatus",
    "discover_streams",
    "group_trimmed_unread",
    "inspect_streams",
]


class ConsumerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One consumer of a group: its pending entries and idle time (ms since its last attempt)."""

    name: str
    pending: int
    idle_ms: int
    #: Redis 7.2+: ms since the consumer last read or claimed successfully (None on older servers).
    inactive_ms: int | None = None


class GroupStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One consumer group of a stream."""

    name: str
    #: Entries in the stream not yet delivered to the group (None when unknown).
    lag: int | None
    pending: int
    last_delivered_id: str
    entries_read: int | None
    oldest_pending_id: str | None
    #: Age of the oldest pending entry (server time minus the time in its id), in ms.
    oldest_pending_age_ms: int | None
    #: Time since the oldest pending entry was last delivered, in ms.
    oldest_pending_idle_ms: int | None
    #: Entries trimmed (or deleted) before the group read them (None when Redis cannot tell).
    trimmed_unread: int | None
    consumers: tuple[ConsumerStatus, ...]


class StreamStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One per-type stream with its groups and its dead-letter stream."""

    stream: str
    channel: str
    event_type: str
    length: int
    entries_added: int | None
    first_entry_id: str | None
    last_entry_id: str | None
    dead_letter_length: int
    groups: tuple[GroupStatus, ...]


class BusStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Everything :func:`inspect_streams` found; totals are over all streams and groups."""

    server_time_ms: int
    streams: tuple[StreamStatus, ...]

    @property
    def pending(self) -> int:
        """Pending entries over all groups."""
        return sum(g.pending for s in self.streams for g in s.groups)

    @property
    def dead_letters(self) -> int:
        """Dead-letter entries over all streams."""
        return sum(s.dead_letter_length for s in self.streams)

    @property
    def trimmed_unread(self) -> int:
        """Entries trimmed unread over all groups (unknown counts as 0)."""
        return sum(g.trimmed_unread or 0 for s in self.streams for g in s.groups)


#: Largest number of unread entries :func:`inspect_streams` counts with XRANGE; beyond it a
#: group's lag and trimmed count are reported as unknown (None).
MAX_SCAN = 10_000


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def group_trimmed_unread(stream_info: Mapping[str, Any], group_info: Mapping[str, Any]) -> tuple[int | None, bool]:
    """``(count, exact)`` from XINFO STREAM / XINFO GROUPS alone (no range scan).

    Exact when the group's last-delivered id is older than the stream's first entry (every
    entry still there is unread) or when the group has caught up (none is); otherwise the count
    is an upper bound (``entries-added - entries-read`` includes the unread entries still in the
    stream), and only an XRANGE over them gives the exact number (see :func:`inspect_streams`).
    """
    entries_read = _opt_int(group_info.get("entries-read"))
    entries_added = _opt_int(stream_info.get("entries-added"))
    if entries_read is None or entries_added is None:
        return None, True
    unread_total = entries_added - entries_read
    if unread_total <= 0:
        return 0, True
    length = int(stream_info.get("length") or 0)
    first = stream_info.get("first-entry")
    last_delivered = _id_tuple(text(group_info.get("last-delivered-id") or "0-0"))
    if not first or last_delivered < _id_tuple(text(first[0])):
        return max(unread_total - length, 0), True
    last_generated = stream_info.get("last-generated-id")
    if last_generated is not None and last_delivered >= _id_tuple(text(last_generated)):
        return unread_total, True
    return unread_total, False


async def discover_streams(client: aioredis.Redis, keys: Keys, channel: str | None = None) -> list[str]:
    """Every per-type stream key (dead-letter streams excluded), sorted."""
    found: set[str] = set()
    with redis_errors("SCAN (streams)"):
        async for key in client.scan_iter(match=keys.stream_pattern(channel or "*"), count=1000, _type="stream"):
            name = text(key)
            if keys.parse_stream(name) is not None:
                found.add(name)
    return sorted(found)


async def inspect_streams(
    client: aioredis.Redis,
    keys: Keys,
    streams: Iterable[str],
    *,
    group: str | None = None,
) -> BusStatus:
    """The status of the given streams (of all their groups, or only ``group``)."""
    names = list(streams)
    with redis_errors("status"):
        seconds, micros = await client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.exists(name)
            pipe.xlen(Keys.dead_letter(name))
        basics: list[Any] = await pipe.execute()
        present = [n for i, n in enumerate(names) if basics[2 * i]]
        dl_len = {n: int(basics[2 * i + 1]) for i, n in enumerate(names)}
        pipe = client.pipeline(transaction=False)
        for name in present:
            pipe.xinfo_stream(name)
            pipe.xinfo_groups(name)
        infos: list[Any] = await pipe.execute()
        out: list[StreamStatus] = []
        for i, name in enumerate(present):
            sinfo: dict[str, Any] = infos[2 * i]
            groups = [g for g in infos[2 * i + 1] if group is None or text(g["name"]) == group]
            out.append(await _stream_status(client, keys, name, sinfo, groups, dl_len[name], now_ms))
    return BusStatus(server_time_ms=now_ms, streams=tuple(out))


async def _stream_status(
    client: aioredis.Redis,
    keys: Keys,
    name: str,
    sinfo: Mapping[str, Any],
    groups: list[Mapping[str, Any]],
    dead_letter_length: int,
    now_ms: int,
) -> StreamStatus:
    length = int(sinfo.get("length") or 0)
    pipe = client.pipeline(transaction=False)
    plans: list[tuple[int | None, bool, int]] = []
    for g in groups:
        gname = text(g["name"])
        pipe.xpending(name, gname)
        pipe.xpending_range(name, gname, "-", "+", 1)
        pipe.xinfo_consumers(name, gname)
        bound, exact = group_trimmed_unread(sinfo, g)
        # Count the unread entries still in the stream when the XINFO counters cannot tell
        # (a group behind but past any gap), up to MAX_SCAN entries.
        scan = 0 if exact else min(length, bound or 0)
        if bound is None:
            scan = length
        if scan > MAX_SCAN:
            scan, bound = 0, None
        if scan:
            pipe.xrange(name, "(" + text(g.get("last-delivered-id") or "0-0"), "+", count=scan)
        plans.append((bound, exact, scan))
    replies: list[Any] = await pipe.execute() if groups else []
    out: list[GroupStatus] = []
    pos = 0
    for g, (bound, _exact, scan) in zip(groups, plans, strict=True):
        summary, oldest, consumers = replies[pos : pos + 3]
        pos += 3
        if scan:
            unread = len(replies[pos])
            pos += 1
            trimmed = None if bound is None else max(bound - unread, 0)
        elif bound is None:
            trimmed, unread = None, None
        else:
            trimmed = bound
            added, read = _opt_int(sinfo.get("entries-added")) or 0, _opt_int(g.get("entries-read")) or 0
            unread = max(added - read - bound, 0)
        oldest_id = text(summary["min"]) if summary.get("min") else None
        out.append(
            GroupStatus(
                name=text(g["name"]),
                lag=unread,
                pending=int(summary.get("pending") or 0),
                last_delivered_id=text(g.get("last-delivered-id") or "0-0"),
                entries_read=_opt_int(g.get("entries-read")),
                oldest_pending_id=oldest_id,
                oldest_pending_age_ms=None if oldest_id is None else max(now_ms - _id_tuple(oldest_id)[0], 0),
                oldest_pending_idle_ms=int(oldest[0]["time_since_delivered"]) if oldest else None,
                trimmed_unread=trimmed,
                consumers=tuple(
                    ConsumerStatus(
                        name=text(c["name"]),
                        pending=int(c.get("pending") or 0),
                        idle_ms=int(c.get("idle") or 0),
                        inactive_ms=_opt_int(c.get("inactive")),
                    )
                    for c in consumers
                ),
            )
        )
    parsed = keys.parse_stream(name) or ("", "")
    first = sinfo.get("first-entry")
    last = sinfo.get("last-entry")
    return StreamStatus(
        stream=name,
        channel=parsed[0],
        event_type=parsed[1],
        length=length,
        entries_added=_opt_int(sinfo.get("entries-added")),
        first_entry_id=text(first[0]) if first else None,
        last_entry_id=text(last[0]) if last else None,
        dead_letter_length=dead_letter_length,
        groups=tuple(out),
    )
