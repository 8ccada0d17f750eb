"""Who else consumes in a group: the check behind "this group is shared" warnings.

A consumer group splits a stream's entries between its consumers: two services subscribed in
one group each see only part of the events. That is right for replicas of one service (and for
our built-in email/notification services standing in for the reference's, in
``event-processors``), and a silent loss of work for anything else.

The heuristic (``XINFO CONSUMERS`` per subscribed stream): a *peer* is a consumer of the group
other than ours (by name) that the server saw within ``recent_ms`` (default: the bus's
``claim_idle_ms``, after which the bus itself treats a consumer's entries as abandoned). What
"saw" means depends on the server: Redis >= 7.2 counts every read attempt (a blocked
XREADGROUP included), so a running service is always seen; Redis 7.0 lists a consumer only once
it received an entry and counts only deliveries, so on a quiet stream a running peer may be
missed until events flow. A replica of the same service, or our own previous process restarted
under a new name within the window, also counts as a peer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec
import redis.exceptions as rex

from ._redis import redis_errors
from ._text import text

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["GroupPeer", "group_peers"]


class GroupPeer(msgspec.Struct, frozen=True, kw_only=True):
    """Another consumer of a group on a stream, seen ``idle_ms`` ago, holding ``pending`` entries."""

    stream: str
    group: str
    consumer: str
    idle_ms: int
    pending: int


async def group_peers(
    bus: EventBus,
    group: str,
    *,
    streams: Iterable[str] | None = None,
    recent_ms: int | None = None,
) -> list[GroupPeer]:
    """The other consumers of ``group`` seen within ``recent_ms`` on ``streams`` (default: the bus's subscriptions).

    A stream or group that does not exist yet has no peers.
    """
    names = sorted(set(streams) if streams is not None else {s.stream for s in bus.subscriptions})
    if not names:
        return []
    window = bus.settings.claim_idle_ms if recent_ms is None else recent_ms
    ours = bus.consumer_name
    with redis_errors(f"XINFO CONSUMERS of group {group!r}"):
        async with bus.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.xinfo_consumers(name, group)
            replies = await pipe.execute(raise_on_error=False)
    peers: list[GroupPeer] = []
    for name, reply in zip(names, replies, strict=True):
        if isinstance(reply, rex.ResponseError):  # NOGROUP / no such key: nobody consumes there yet
            continue
        if isinstance(reply, BaseException):
            raise reply
        for consumer in reply:
            cname = text(consumer["name"])
            idle = int(consumer["idle"])  # since its last read attempt (7.2+) or delivery (7.0)
            if cname != ours and 0 <= idle < window:
                peers.append(
                    GroupPeer(stream=name, group=group, consumer=cname, idle_ms=idle, pending=int(consumer["pending"]))
                )
    return peers
