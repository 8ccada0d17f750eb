"""A focused consumer-group loop for streams the bus's per-type consumer does not cover.

The workflow stream is not a per-type stream, and the converter needs a consumer group of its
own on the per-type ``global`` streams (sharing ``event-processors`` would split entries between
the converter and other consumers). Both run this loop, with the reference's discipline:

- groups created at ``start_id`` (``0``) with MKSTREAM, BUSYGROUP ignored; recreated on NOGROUP;
- ``XREADGROUP COUNT n BLOCK ms`` inside a hard ``anyio.fail_after`` (a dropped socket must not
  hang a blocking read; redis-py discards a connection cancelled mid-read);
- an entry whose handler returns is acked; one whose handler raises stays pending and is
  reclaimed with ``XAUTOCLAIM`` once idle ``claim_idle_ms``; on its ``max_deliveries``-th failed
  delivery (or when found with more deliveries than that) it is dead-lettered;
- ``bus.Reject`` dead-letters at once (the entry can never succeed);
- the dead-letter XADD and the XACK go in one MULTI/EXEC.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

import anyio
import anyio.abc
import msgspec
import redis.asyncio as aioredis
import redis.exceptions as rex
from msgspec import Meta

from bus import Reject

__all__ = ["DeadLetterBuilder", "EntryHandler", "LoopSettings", "StreamLoop"]

log = logging.getLogger("subscribers.workflow")

#: ``handler(stream, entry_id, fields, deliveries)``; return to ack, raise to retry, ``Reject`` to dead-letter.
EntryHandler = Callable[[str, str, dict[bytes, bytes], int], Awaitable[None]]
#: ``build(stream, entry_id, fields, deliveries, error)`` -> ``(dead-letter stream, fields)``.
DeadLetterBuilder = Callable[[str, str, dict[bytes, bytes], int, BaseException], tuple[str, Mapping[bytes, bytes]]]


class LoopSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read, reclaim and dead-letter parameters (reference defaults, workflow max deliveries = 3)."""

    group: str
    consumer: str
    count: Annotated[int, Meta(gt=0)] = 10
    block_ms: Annotated[int, Meta(gt=0)] = 5000
    read_timeout_s: Annotated[float, Meta(gt=0)] = 15.0
    claim_idle_ms: Annotated[int, Meta(gt=0)] = 30000
    reclaim_interval_s: Annotated[float, Meta(gt=0)] = 5.0
    max_deliveries: Annotated[int, Meta(gt=0)] = 3
    start_id: str = "0"
    error_backoff_s: Annotated[float, Meta(ge=0)] = 1.0

    def __post_init__(self) -> None:
        if self.read_timeout_s * 1000 <= self.block_ms:
            raise ValueError(f"read_timeout_s ({self.read_timeout_s}) must exceed block_ms ({self.block_ms} ms)")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StreamLoop:
    """Reads ``streams`` as one consumer of ``settings.group`` and hands each entry to ``handler``."""

    def __init__(
        self,
        client: aioredis.Redis,
        streams: Sequence[str],
        handler: EntryHandler,
        dead_letter: DeadLetterBuilder,
        settings: LoopSettings,
    ) -> None:
        if not streams:
            raise ValueError("StreamLoop needs at least one stream")
        self.client = client
        self.streams = tuple(dict.fromkeys(streams))
        self.handler = handler
        self.dead_letter = dead_letter
        self.settings = settings
        #: Counters for status and tests.
        self.stats = {"acked": 0, "failed": 0, "dead_lettered": 0, "reclaimed": 0}

    async def ensure_groups(self) -> None:
        """Create the group on every stream (MKSTREAM); an existing group is fine."""
        pipe = self.client.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xgroup_create(stream, self.settings.group, id=self.settings.start_id, mkstream=True)
        for reply in await pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Create the groups, report started, then read and reclaim until cancelled."""
        await self.ensure_groups()
        task_status.started()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._reclaim_forever)
            await self._read_forever()

    # --- reading -----------------------------------------------------------------------------
    async def read_once(self) -> int:
        """One XREADGROUP round (blocking up to ``block_ms``); returns how many entries were handled."""
        s = self.settings
        with anyio.fail_after(s.read_timeout_s):
            reply: Any = await self.client.xreadgroup(
                s.group, s.consumer, {stream: ">" for stream in self.streams}, count=s.count, block=s.block_ms
            )
        handled = 0
        for stream_raw, entries in reply or []:
            stream = _text(stream_raw)
            for entry_id, fields in entries:
                await self.process(stream, _text(entry_id), dict(fields or {}), 1)
                handled += 1
        return handled

    async def _read_forever(self) -> None:
        while True:
            try:
                handled = await self.read_once()
                # A checkpoint per round; a short pause after an empty one, for servers that
                # answer a blocking read at once (fakeredis) instead of after ``block_ms``.
                await anyio.sleep(0 if handled else 0.005)
            except TimeoutError:
                log.warning(
                    "XREADGROUP on %s exceeded %.1fs; connection reset",
                    self.settings.group,
                    self.settings.read_timeout_s,
                )
            except rex.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("group %s vanished (%s); recreating", self.settings.group, exc)
                await self.ensure_groups()
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                log.warning(
                    "read on %s failed: %s; retrying in %.1fs", self.settings.group, exc, self.settings.error_backoff_s
                )
                await anyio.sleep(self.settings.error_backoff_s)

    # --- reclaiming --------------------------------------------------------------------------
    async def reclaim_once(self) -> int:
        """Claim entries idle for ``claim_idle_ms`` (any consumer, us included) and handle them again."""
        s = self.settings
        handled = 0
        for stream in self.streams:
            start = "0-0"
            while True:
                reply = await self.client.xautoclaim(
                    stream, s.group, s.consumer, min_idle_time=s.claim_idle_ms, start_id=start, count=s.count
                )
                start, claimed = _text(reply[0]), [(_text(i), dict(f or {})) for i, f in reply[1] if f is not None]
                if claimed:
                    counts = await self._delivery_counts(stream, [i for i, _ in claimed])
                    for entry_id, fields in claimed:
                        self.stats["reclaimed"] += 1
                        deliveries = counts.get(entry_id, s.max_deliveries)  # unknown count: one last try
                        if deliveries > s.max_deliveries:
                            error = RuntimeError(f"found pending with {deliveries} deliveries (max {s.max_deliveries})")
                            await self._dead_letter(stream, entry_id, fields, deliveries, error)
                        else:
                            await self.process(stream, entry_id, fields, deliveries)
                        handled += 1
                if start == "0-0":
                    break
        return handled

    async def _delivery_counts(self, stream: str, ids: list[str]) -> dict[str, int]:
        rows = await self.client.xpending_range(
            stream,
            self.settings.group,
            min=ids[0],
            max=ids[-1],
            count=len(ids) + 100,
            consumername=self.settings.consumer,
        )
        return {_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def _reclaim_forever(self) -> None:
        while True:
            await anyio.sleep(self.settings.reclaim_interval_s)
            try:
                await self.reclaim_once()
            except rex.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_groups()
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                log.warning("reclaim on %s failed: %s", self.settings.group, exc)

    # --- one entry ---------------------------------------------------------------------------
    async def process(self, stream: str, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        """Run the handler on one entry and ack, leave pending, or dead-letter it."""
        try:
            await self.handler(stream, entry_id, fields, deliveries)
        except Reject as exc:
            await self._dead_letter(stream, entry_id, fields, deliveries, exc)
        except Exception as exc:
            self.stats["failed"] += 1
            if deliveries >= self.settings.max_deliveries:
                await self._dead_letter(stream, entry_id, fields, deliveries, exc)
            else:
                log.warning("entry %s of %s failed (delivery %d): %s", entry_id, stream, deliveries, exc)
        else:
            await self.client.xack(stream, self.settings.group, entry_id)
            self.stats["acked"] += 1

    async def _dead_letter(
        self, stream: str, entry_id: str, fields: dict[bytes, bytes], deliveries: int, error: BaseException
    ) -> None:
        target, dead = self.dead_letter(stream, entry_id, fields, deliveries, error)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(target, dict(dead))  # type: ignore[arg-type]
            pipe.xack(stream, self.settings.group, entry_id)
            await pipe.execute()
        self.stats["dead_lettered"] += 1
        log.error(
            "entry %s of %s dead-lettered to %s after %d deliveries: %s", entry_id, stream, target, deliveries, error
        )
