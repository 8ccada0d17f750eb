"""Introspection: length, lag, pending, oldest pending age, consumers and dead letters per stream and group."""

from __future__ import annotations

import anyio
import redis.asyncio as aioredis

from bus import CHANNEL_EMAIL, EventBus, Keys
from bus.testing import Recorder, fast_settings, ticket_created_payload, xadd_raw, xadd_reference


async def test_status_reports_each_stream_and_group(backend: aioredis.Redis, test_prefix: str) -> None:
    """status() gives length, lag, pending, oldest pending id/age/idle, consumers with idle time and dead letters."""
    async with EventBus(fast_settings(prefix=test_prefix), client=backend) as bus:
        keys = bus.keys
        stream = keys.stream("global", "TICKET_CREATED")
        await backend.xgroup_create(stream, "event-processors", id="0", mkstream=True)
        await backend.xgroup_create(stream, "audit", id="0")
        ids = [(await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=keys))[0]]
        for _ in range(4):
            ids.append((await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=keys))[0])
        await backend.xreadgroup("event-processors", "c1", {stream: ">"}, count=2)
        await anyio.sleep(0.02)  # measured: idle and age of what was read
        await backend.xreadgroup("event-processors", "c2", {stream: ">"}, count=1)
        await backend.xack(stream, "event-processors", ids[2])
        await xadd_raw(backend, Keys.dead_letter(stream), {b"event": b"{}"})
        await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=keys, channel=CHANNEL_EMAIL)

        status = await bus.status()
        assert [s.stream for s in status.streams] == sorted([stream, keys.stream(CHANNEL_EMAIL, "TICKET_CREATED")])
        mine = next(s for s in status.streams if s.stream == stream)
        assert (mine.channel, mine.event_type, mine.length, mine.entries_added) == ("global", "TICKET_CREATED", 5, 5)
        assert (mine.first_entry_id, mine.last_entry_id, mine.dead_letter_length) == (ids[0], ids[-1], 1)
        groups = {g.name: g for g in mine.groups}
        processors, audit = groups["event-processors"], groups["audit"]
        assert (processors.lag, processors.pending, processors.entries_read, processors.trimmed_unread) == (2, 2, 3, 0)
        assert (processors.oldest_pending_id, processors.last_delivered_id) == (ids[0], ids[2])
        assert processors.oldest_pending_idle_ms is not None and processors.oldest_pending_idle_ms >= 15
        assert processors.oldest_pending_age_ms is not None and processors.oldest_pending_age_ms >= 15
        assert {(c.name, c.pending) for c in processors.consumers} == {("c1", 2), ("c2", 0)}
        assert next(c for c in processors.consumers if c.name == "c1").idle_ms >= 15
        assert (audit.lag, audit.pending, audit.oldest_pending_id, audit.consumers) == (5, 0, None, ())
        assert (status.pending, status.dead_letters, status.trimmed_unread) == (2, 1, 0)

        only_email = await bus.status(channel=CHANNEL_EMAIL)
        assert [s.channel for s in only_email.streams] == [CHANNEL_EMAIL]
        only_audit = await bus.status(group="audit")
        assert [g.name for s in only_audit.streams for g in s.groups] == ["audit"]


async def test_status_includes_subscribed_streams_that_do_not_exist_yet(fake_client: aioredis.Redis) -> None:
    """A subscribed stream that was never written is simply absent (no error), other streams still show."""
    async with EventBus(fast_settings(), client=fake_client) as bus:
        bus.subscribe("TICKET_UPDATED", Recorder())
        await xadd_reference(fake_client, "TICKET_CREATED", ticket_created_payload())
        status = await bus.status()
        assert [(s.event_type, s.groups) for s in status.streams] == [("TICKET_CREATED", ())]
