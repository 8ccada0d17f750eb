"""publish_event: the reference's fan-out, one envelope per publish, one MULTI/EXEC, best effort."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from test_bus._support import USER, UUID, SendSpy, entries, open_bus, prefixed_keys, ticket_created, workflow_entries

from bus import WORKFLOW_STREAM, PartialWriteError, PayloadValidationError, PublishResult
from publishers import EMAIL_EVENT_TYPES, NOTIFICATION_EVENT_TYPES, fanout_channels, publish_event
from schemas import REGISTRY

TS = "2026-01-23T10:11:12.345Z"
G, N, E = "global", "internal-notifications", "emailservice::v7"

PAYLOADS: dict[str, dict[str, Any]] = {
    "TICKET_CREATED": ticket_created(),
    "PROJECT_UPDATED": {"tenantId": "t1", "occurredAt": TS, "projectId": UUID},
    "TASK_COMMENT_ADDED": {
        "tenantId": UUID,
        "taskId": UUID,
        "projectId": UUID,
        "userId": USER,
        "taskCommentId": UUID,
        "taskName": "Install",
        "commentContent": "done",
    },
    "ASSET_CREATED": {"tenantId": "t1", "occurredAt": TS, "assetId": UUID},
}


def test_channel_lists_are_the_reference_sets() -> None:
    """21 notification types and 19 email types, all known to the registry."""
    assert len(NOTIFICATION_EVENT_TYPES) == 21 and len(EMAIL_EVENT_TYPES) == 19
    assert all(t in REGISTRY for t in NOTIFICATION_EVENT_TYPES | EMAIL_EVENT_TYPES)


@pytest.mark.parametrize(
    ("event_type", "channel", "expected"),
    [
        pytest.param("TICKET_CREATED", None, (G, N, E), id="both-lists"),
        pytest.param("PROJECT_UPDATED", None, (G, E), id="email-only"),
        pytest.param("TASK_COMMENT_ADDED", None, (G, N), id="notification-only"),
        pytest.param("ASSET_CREATED", None, (G,), id="neither"),
        pytest.param("TICKET_CREATED", "custom", (G, "custom"), id="explicit-skips-lists"),
        pytest.param("TICKET_CREATED", G, (G,), id="explicit-global-once"),
    ],
)
def test_fanout_channels(event_type: str, channel: str | None, expected: tuple[str, ...]) -> None:
    """Which channels a publish writes, global first."""
    assert fanout_channels(event_type, channel) == expected


@pytest.mark.parametrize(
    ("event_type", "channel", "expected"),
    [
        pytest.param("TICKET_CREATED", None, (G, N, E), id="ticket-created"),
        pytest.param("PROJECT_UPDATED", None, (G, E), id="project-updated"),
        pytest.param("TASK_COMMENT_ADDED", None, (G, N), id="task-comment"),
        pytest.param("ASSET_CREATED", None, (G,), id="asset-created"),
        pytest.param("TICKET_CREATED", "custom", (G, "custom"), id="explicit-channel"),
        pytest.param("TICKET_CREATED", G, (G,), id="explicit-global"),
    ],
)
async def test_copies_share_one_envelope_and_one_transaction(
    backend: aioredis.Redis,
    test_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    event_type: str,
    channel: str | None,
    expected: tuple[str, ...],
) -> None:
    """Each channel gets one copy of the same envelope, the workflow entry is written once, all in one MULTI/EXEC."""
    async with open_bus(backend, test_prefix) as bus:
        spy = SendSpy(backend, monkeypatch)
        with anyio.fail_after(5):
            result = await publish_event(bus, event_type, PAYLOADS[event_type], channel=channel)
            copies = {ch: await entries(backend, bus.keys.stream(ch, event_type)) for ch in expected}
            keys = await prefixed_keys(backend, test_prefix)
            wf = await workflow_entries(backend, result.event_id)
    streams = [bus.keys.stream(ch, event_type) for ch in expected]
    assert keys == sorted(s.encode() for s in streams)
    assert all(len(c) == 1 for c in copies.values())
    envelopes = {c[0][b"event"] for c in copies.values()}
    assert len(envelopes) == 1 and json.loads(envelopes.pop())["id"] == result.event_id
    assert [c[0][b"channel"].decode() for c in copies.values()] == list(expected)
    assert len(wf) == 1
    assert list(result.entries) == [WORKFLOW_STREAM, *streams]
    assert spy.names(0) == [b"MULTI"] + [b"XADD"] * (len(expected) + 1) + [b"EXEC"]


async def test_copies_may_get_their_own_ids(backend: aioredis.Redis, test_prefix: str) -> None:
    """share_event_id=False gives each channel copy a fresh id (the reference's behaviour); global keeps the first."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await publish_event(bus, "TICKET_CREATED", ticket_created(), share_event_id=False)
            ids = {
                ch: json.loads((await entries(backend, bus.keys.stream(ch, "TICKET_CREATED")))[0][b"event"])["id"]
                for ch in (G, N, E)
            }
    assert ids[G] == result.event_id and len(set(ids.values())) == 3
    assert all(result.event_id_of(bus.keys.stream(ch, "TICKET_CREATED")) == ids[ch] for ch in (G, N, E))


async def test_strict_raises_and_writes_nothing(backend: aioredis.Redis, test_prefix: str) -> None:
    """strict=True (the default): an invalid payload raises and no copy is written."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            with pytest.raises(PayloadValidationError):
                await publish_event(bus, "TICKET_CREATED", ticket_created(ticketId="x"))
            assert await prefixed_keys(backend, test_prefix) == []


async def test_best_effort_logs_and_returns_the_failure(
    backend: aioredis.Redis, test_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """strict=False returns a result with ``error`` set (ok False) and logs it; nothing is swallowed silently."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5), caplog.at_level(logging.ERROR, logger="publishers"):
            result = await publish_event(bus, "TICKET_CREATED", ticket_created(ticketId="x"), strict=False)
            assert await prefixed_keys(backend, test_prefix) == []
    assert isinstance(result, PublishResult) and not result.ok
    assert isinstance(result.error, PayloadValidationError) and result.entries == {}
    assert result.event_id in caplog.text and "TICKET_CREATED" in caplog.text and "ticketId" in caplog.text


async def test_best_effort_reports_a_partial_write(
    backend: aioredis.Redis, test_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A copy refused by Redis comes back as a failed result naming what was written."""
    async with open_bus(backend, test_prefix) as bus:
        bad = bus.keys.stream(E, "TICKET_CREATED")
        with anyio.fail_after(5), caplog.at_level(logging.ERROR, logger="publishers"):
            await backend.set(bad, "x")
            result = await publish_event(bus, "TICKET_CREATED", ticket_created(), strict=False)
    assert isinstance(result.error, PartialWriteError)
    assert [s for _, s, _ in result.error.failed] == [bad]
    assert len(result.error.written) == 3 and "WRONGTYPE" in caplog.text


async def test_batched_publish_event(backend: aioredis.Redis, test_prefix: str) -> None:
    """batch=True: concurrent fan-out publishes share round trips and all copies are written."""
    results: list[PublishResult] = []
    async with open_bus(backend, test_prefix) as bus:

        async def caller() -> None:
            results.append(await publish_event(bus, "TICKET_CREATED", ticket_created(), batch=True))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(caller)
            counts = [len(await entries(backend, bus.keys.stream(ch, "TICKET_CREATED"))) for ch in (G, N, E)]
    assert counts == [20, 20, 20] and bus.batcher.groups_written <= 3
    assert len({r.event_id for r in results}) == 20
