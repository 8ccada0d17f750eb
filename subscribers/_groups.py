"""The start-up check of a service's consumer group: say so when another service consumes in it.

Two services in one group split the events between them (see :mod:`bus._groups` for how peers
are found and the limits of that heuristic). A user's app gets a warning naming the group, the
stream and the other consumers; the built-in email and notification services, which share
``event-processors`` with the reference's services on purpose, log it at info level.
"""

from __future__ import annotations

import logging

from bus import BusError, EventBus, GroupPeer, PermissionDeniedError, group_peers

__all__ = ["check_group"]

log = logging.getLogger("subscribers.groups")


async def check_group(bus: EventBus, service: str, *, shared_by_design: bool = False) -> list[GroupPeer]:
    """Log the other consumers of the bus's group on its subscribed streams; never fails the start."""
    group = bus.settings.consumer_group
    try:
        peers = await group_peers(bus, group)
    except PermissionDeniedError:
        log.info("%s: cannot check who else consumes in group %r (XINFO CONSUMERS not permitted)", service, group)
        return []
    except BusError as exc:
        log.info("%s: cannot check who else consumes in group %r: %s", service, group, exc)
        return []
    by_stream: dict[str, list[str]] = {}
    for peer in peers:
        by_stream.setdefault(peer.stream, []).append(peer.consumer)
    for stream, consumers in sorted(by_stream.items()):
        if shared_by_design:
            log.info(
                "%s shares group %r on %s with %s: the entries are split between them",
                service,
                group,
                stream,
                ", ".join(consumers),
            )
        else:
            log.warning(
                "%s subscribes in group %r on %s, where %s also consume(s): each of you will see only part of "
                "the events. Give %s a group of its own (App(name, group=...)) unless it should share the work",
                service,
                group,
                stream,
                ", ".join(consumers),
                service,
            )
    return peers
