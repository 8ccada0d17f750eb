"""The consumer group of a subscription: create it on every stream, recreate it on NOGROUP."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .._redis import redis_errors, translate_error

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ._stats import StatsBoard

__all__ = ["Groups"]

log = logging.getLogger("bus.consume")


class Groups:
    """``XGROUP CREATE`` on each stream (at ``start_id``, MKSTREAM) and NOGROUP recovery."""

    def __init__(
        self, client: aioredis.Redis, group: str, streams: tuple[str, ...], start_id: str, board: StatsBoard
    ) -> None:
        self.client = client
        self.group = group
        self.streams = streams
        self.start_id = start_id
        self.board = board
        self._last_log = 0.0

    async def ensure(self) -> list[str]:
        """Create the group where it is missing (BUSYGROUP ignored); returns the streams where this
        call created it (the others had it already)."""
        with redis_errors("XGROUP CREATE"):
            pipe = self.client.pipeline(transaction=False)
            for stream in self.streams:
                pipe.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        created: list[str] = []
        for stream, reply in zip(self.streams, replies, strict=True):
            if not isinstance(reply, Exception):
                created.append(stream)
            elif not str(reply).startswith("BUSYGROUP"):
                raise translate_error(reply, f"XGROUP CREATE {stream} {self.group}") from reply
        return created

    def log_missing(self, exc: BaseException) -> None:
        """One NOGROUP warning per second at most, whichever task met it."""
        now = time.monotonic()
        if now - self._last_log >= 1.0:
            self._last_log = now
            log.warning("consumer group %r missing (%s); recreating it", self.group, exc)

    async def recover(self, exc: BaseException) -> None:
        """The group vanished (e.g. Redis restarted without persistence): recreate and carry on.

        The consumer whose XGROUP CREATE succeeds (the others get BUSYGROUP) reports the loss of
        that stream's state once, at error level, and counts it in ``stats.lost_groups``.
        """
        self.log_missing(exc)
        stats = self.board.stats
        stats.group_recreations += 1
        for stream in await self.ensure():
            stats.lost_groups += 1
            log.error(
                "consumer group %r of %s was lost (Redis restarted without persistence, or the stream or "
                "group was deleted) and has been recreated at %s: entries that were unread or pending in "
                "the lost state, and their delivery counts, are gone; entries still in the stream are read again",
                self.group,
                stream,
                self.start_id,
            )
            self.board.notify()
