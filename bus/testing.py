"""Helpers for testing code built on the bus (public; needs ``fakeredis`` from the dev extras).

- :func:`fast_settings`: short blocks and claim timeouts, zero retry backoff;
- :func:`fake_bus`: an :class:`EventBus` on a fakeredis server (fresh unless one is given);
- :func:`xadd_reference` / :func:`reference_fields`: write an entry exactly as the TypeScript
  reference does (raw XADD of ``event``/``channel``/``force``), :func:`xadd_raw` anything else;
- :func:`ticket_created_payload`: a valid payload to publish;
- :class:`Recorder`: a handler that records deliveries and lets a test await them;
- :func:`wait_for_stats` / :func:`wait_drained`: wait (under a timeout) for consume outcomes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from ._bus import EventBus
from ._codec import now_iso
from ._inspect import GroupStatus, StreamStatus
from ._keys import CHANNEL_GLOBAL, Keys
from ._settings import BusSettings
from .consume import ConsumerStats, Delivery

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "Recorder",
    "fake_bus",
    "fast_settings",
    "reference_fields",
    "ticket_created_payload",
    "wait_drained",
    "wait_for_stats",
    "xadd_raw",
    "xadd_reference",
]

_FAST: dict[str, Any] = {
    "block_ms": 100,
    "read_timeout_s": 2.0,
    "claim_idle_ms": 200,
    "reclaim_interval_s": 0.05,
    "handler_timeout_s": 2.0,
    "retry_backoff_s": 0.0,
    "retry_backoff_max_s": 0.0,
    "shutdown_grace_s": 2.0,
    "marker_ttl_s": 60,
}


def ticket_created_payload(**overrides: Any) -> dict[str, Any]:
    """A valid (legacy-shape) TICKET_CREATED payload with fresh uuids; ``overrides`` win."""
    payload: dict[str, Any] = {
        "tenantId": str(uuid.uuid4()),
        "ticketId": str(uuid.uuid4()),
        "userId": str(uuid.uuid4()),
    }
    payload.update(overrides)
    return payload


def fast_settings(url: str | None = None, **overrides: Any) -> BusSettings:
    """Settings for tests: block 100 ms, claim after 200 ms, reclaim every 50 ms, no retry sleeps,
    markers that expire after a minute (their keys are not under the prefix); ``url`` is parsed
    like ``BusSettings.from_url`` (host, port, credentials)."""
    values = {**_FAST, **overrides}
    return BusSettings.from_url(url, **values) if url else BusSettings.build(**values)


@asynccontextmanager
async def fake_bus(
    server: Any = None, *, settings: BusSettings | None = None, **overrides: Any
) -> AsyncIterator[EventBus]:
    """An open bus on a fakeredis ``FakeServer`` (a fresh one by default; share one to run several buses)."""
    import fakeredis

    client = fakeredis.FakeAsyncRedis(server=server if server is not None else fakeredis.FakeServer())
    try:
        async with EventBus(settings or fast_settings(**overrides), client=client) as bus:
            yield bus
    finally:
        await client.aclose()


def reference_fields(
    event_type: str,
    payload: Mapping[str, Any],
    *,
    channel: str = CHANNEL_GLOBAL,
    event_id: str | None = None,
    timestamp: str | None = None,
    force: bool = False,
) -> dict[bytes, bytes]:
    """The fields the reference writes: ``event`` (``JSON.stringify`` of the envelope), ``channel``, ``force``."""
    envelope = {
        "id": event_id or str(uuid.uuid4()),
        "eventType": event_type,
        "timestamp": timestamp or now_iso(),
        "payload": payload,
    }
    fields = {
        b"event": json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode(),
        b"channel": channel.encode(),
    }
    if force:
        fields[b"force"] = b"1"
    return fields


async def xadd_reference(
    client: aioredis.Redis,
    event_type: str,
    payload: Mapping[str, Any],
    *,
    keys: Keys | None = None,
    channel: str = CHANNEL_GLOBAL,
    event_id: str | None = None,
    timestamp: str | None = None,
    force: bool = False,
    max_len: int | None = 1000,
    approximate: bool = True,
) -> tuple[str, str]:
    """XADD one entry as the reference does (``MAXLEN ~ 1000``); returns ``(entry_id, event_id)``."""
    event_id = event_id or str(uuid.uuid4())
    stream = (keys or Keys()).stream(channel, event_type)
    fields = reference_fields(event_type, payload, channel=channel, event_id=event_id, timestamp=timestamp, force=force)
    entry_id = await client.xadd(stream, fields, maxlen=max_len, approximate=approximate)  # type: ignore[arg-type]
    return (entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)), event_id


async def xadd_raw(client: aioredis.Redis, stream: str, fields: Mapping[Any, Any]) -> str:
    """XADD arbitrary fields (poison entries, foreign writers); returns the entry id."""
    entry_id = await client.xadd(stream, dict(fields))
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


class Recorder:
    """A handler that records every delivery; ``await recorder.wait(n)`` until it saw ``n``.

    ``fail`` maps an attempt number (1-based, counted over all calls) to an exception to raise.
    """

    def __init__(self, fail: Mapping[int, BaseException] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.calls = 0
        self._fail = dict(fail or {})
        self._changed = anyio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.calls += 1
        error = self._fail.get(self.calls)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
        if error is not None:
            raise error
        self.deliveries.append(delivery)

    @property
    def event_ids(self) -> list[str]:
        """Event ids of the successful deliveries, in order."""
        return [d.event_id for d in self.deliveries]

    async def wait(self, count: int, *, calls: bool = False) -> None:
        """Wait until ``count`` successful deliveries (or calls, with ``calls=True``) happened.

        Put it under ``anyio.fail_after(...)``.
        """
        while (self.calls if calls else len(self.deliveries)) < count:
            await self._changed.wait()


async def wait_for_stats(bus: EventBus, predicate: Callable[[ConsumerStats], bool]) -> ConsumerStats:
    """Wait until the running consume loop's counters satisfy ``predicate`` (acks confirmed by Redis).

    The loop must be running (``await tg.start(bus.run)``); put the wait under ``anyio.fail_after``.
    """
    if bus.consumer is None:
        raise RuntimeError("the bus's consume loop is not running: await tg.start(bus.run) first")
    return await bus.consumer.wait_until(predicate)


async def wait_drained(bus: EventBus, *, interval: float = 0.02) -> None:
    """Poll until every subscribed stream has nothing unread and nothing pending for the bus's group.

    Put it under ``anyio.fail_after(...)``.
    """
    mine = {s.stream for s in bus.subscriptions}
    while True:
        status = await bus.status(group=bus.settings.consumer_group)
        if all(_caught_up(s, g) for s in status.streams if s.stream in mine for g in s.groups):
            return
        await anyio.sleep(interval)


def _entry_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def _caught_up(stream: StreamStatus, group: GroupStatus) -> bool:
    """Nothing pending, and nothing unread: lag 0, or (when Redis reports no lag, as for a group
    created on a stream that was still empty) the group delivered up to the stream's last entry."""
    if group.pending:
        return False
    if group.lag is not None:
        return group.lag == 0
    return stream.last_entry_id is None or _entry_id(group.last_delivered_id) >= _entry_id(stream.last_entry_id)
