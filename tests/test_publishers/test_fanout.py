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
async def test_copies_get_their_own_ids_in_one_transaction(
    backend: aioredis.Redis,
    test_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    event_type: str,
    channel: str | None,
    expected: tuple[str, ...],
) -> None:
    """Each channel gets one copy with its own fresh id (global's = the result's = the workflow's), one MULTI/EXEC."""
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
    envelopes = {ch: json.loads(c[0][b"event"]) for ch, c in copies.items()}
    ids = {ch: env["id"] for ch, env in envelopes.items()}
    assert len(set(ids.values())) == len(expected)  # distinct per copy
    assert ids[G] == result.event_id
    assert all(result.event_id_of(s) == ids[ch] for ch, s in zip(expected, streams, strict=True))
    assert all(
        {k: v for k, v in env.items() if k != "id"} == {k: v for k, v in envelopes[G].items() if k != "id"}
        for env in envelopes.values()
    )  # the same envelope otherwise
    assert [c[0][b"channel"].decode() for c in copies.values()] == list(expected)
    assert len(wf) == 1 and dict(wf[0])[b"event_id"].decode() == result.event_id
    assert list(result.entries) == [WORKFLOW_STREAM, *streams]
    assert spy.names(0) == [b"MULTI"] + [b"XADD"] * (len(expected) + 1) + [b"EXEC"]


@pytest.mark.parametrize("idempotency_key", [None, "k-explicit"], ids=["plain", "idempotent"])
async def test_an_explicit_event_id_is_carried_by_every_copy(
    backend: aioredis.Redis, test_prefix: str, idempotency_key: str | None
) -> None:
    """With event_id given, every copy and the workflow entry carry that id (as the reference does)."""
    event_id = "0b7c3c8e-51a4-4f0e-9d0c-3a6f1c2b9e11"
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await publish_event(
                bus, "TICKET_CREATED", ticket_created(), event_id=event_id, idempotency_key=idempotency_key
            )
            ids = {
                ch: json.loads((await entries(backend, bus.keys.stream(ch, "TICKET_CREATED")))[0][b"event"])["id"]
                for ch in (G, N, E)
            }
            wf = await workflow_entries(backend, event_id)
    assert ids == {G: event_id, N: event_id, E: event_id}
    assert result.event_id == event_id and result.event_ids is None
    assert len(wf) == 1


async def test_an_idempotent_retry_returns_the_first_writes_ids(backend: aioredis.Redis, test_prefix: str) -> None:
    """An idempotent fan-out writes distinct ids per copy; a retry writes nothing and returns those same ids."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            first = await publish_event(bus, "TICKET_CREATED", ticket_created(), idempotency_key="retry-1")
            again = await publish_event(bus, "TICKET_CREATED", ticket_created(), idempotency_key="retry-1")
            counts = [len(await entries(backend, bus.keys.stream(ch, "TICKET_CREATED"))) for ch in (G, N, E)]
            ids = {
                ch: json.loads((await entries(backend, bus.keys.stream(ch, "TICKET_CREATED")))[0][b"event"])["id"]
                for ch in (G, N, E)
            }
    assert counts == [1, 1, 1]
    assert len(set(ids.values())) == 3 and ids[G] == first.event_id
    assert again.duplicate and again.event_id == first.event_id and again.entries == {}
    assert all(again.event_id_of(bus.keys.stream(ch, "TICKET_CREATED")) == ids[ch] for ch in (G, N, E))


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
