"""PublishOptions: one value from the top-level functions down to Preparer.prepare."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from bus import (
    CHANNEL_EMAIL,
    CHANNEL_GLOBAL,
    CHANNEL_NOTIFICATIONS,
    WORKFLOW_STREAM,
    PayloadValidationError,
    PublishOptions,
    WorkflowHooks,
)
from bus.publish import Preparer
from publishers import Actor, PublishContext, prepare_workflow_event, publish_event, publish_workflow_event
from test_bus._support import UUID, open_bus, ticket_created


class OptionsSpy:
    """Records the options every ``Preparer.prepare`` receives (installed before the bus opens)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[PublishOptions] = []
        original = Preparer.prepare

        def prepare(preparer: Preparer, event_type: str, payload: Any, options: PublishOptions) -> Any:
            self.seen.append(options)
            return original(preparer, event_type, payload, options)

        monkeypatch.setattr(Preparer, "prepare", prepare)


async def test_no_channels_is_the_fanout(fake_client: aioredis.Redis, test_prefix: str) -> None:
    """``channels=None`` writes the reference's fan-out: the workflow entry, global, notifications, email."""
    async with open_bus(fake_client, test_prefix) as bus:
        result = await bus.publish("TICKET_CREATED", ticket_created(), options=PublishOptions())
        streams = [WORKFLOW_STREAM] + [
            bus.keys.stream(ch, "TICKET_CREATED") for ch in (CHANNEL_GLOBAL, CHANNEL_NOTIFICATIONS, CHANNEL_EMAIL)
        ]
        assert list(result.entries) == streams
        assert bus.prepare("TICKET_CREATED", ticket_created(), channel=None).streams == tuple(streams)


async def test_options_and_keywords_are_exclusive(fake_client: aioredis.Redis, test_prefix: str) -> None:
    """Options given with an option keyword raise instead of silently dropping one of them."""
    async with open_bus(fake_client, test_prefix) as bus:
        with pytest.raises(TypeError, match="not both"):
            bus.prepare("TICKET_CREATED", ticket_created(), event_id=UUID, options=PublishOptions())
        with pytest.raises(TypeError, match="not both"):
            await bus.publish("TICKET_CREATED", ticket_created(), batch=True, options=PublishOptions())


async def test_best_effort_options_return_the_failure(
    fake_client: aioredis.Redis, test_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``strict=False``: an invalid event comes back as a failed result, logged, nothing raised."""
    async with open_bus(fake_client, test_prefix) as bus:
        with caplog.at_level(logging.ERROR, logger="bus.publish"):
            result = await bus.publish(
                "TICKET_CREATED", ticket_created(ticketId="nope"), options=PublishOptions(strict=False)
            )
        assert not result.ok and isinstance(result.error, PayloadValidationError)
        assert result.event_id in caplog.text and "ticketId" in caplog.text
        with pytest.raises(PayloadValidationError):
            await bus.publish("TICKET_CREATED", ticket_created(ticketId="nope"), options=PublishOptions())


async def test_defaults_share_one_value(
    fake_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain calls pass a shared constant down (no options built per call); others one value each."""
    spy = OptionsSpy(monkeypatch)
    ctx = PublishContext(tenant_id="tenant-1", actor=Actor.user(UUID))
    async with open_bus(fake_client, test_prefix) as bus:
        for _ in range(2):
            await publish_event(bus, "TICKET_CREATED", ticket_created())
            await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx)
            await bus.publish("TICKET_CREATED", ticket_created())
        assert spy.seen[0] is spy.seen[1] is spy.seen[3] is spy.seen[4]
        assert spy.seen[2] is spy.seen[5]
        await publish_event(bus, "TICKET_CREATED", ticket_created(), channel="custom", strict=False, batch=False)
        assert spy.seen[-1] == PublishOptions(channels=(CHANNEL_GLOBAL, "custom"), strict=False, batch=False)


async def test_plain_calls_on_a_channel_list_share_one_value(
    fake_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Channels given as a list are held as a tuple; equal lists (or that tuple) share one options value."""
    spy = OptionsSpy(monkeypatch)
    async with open_bus(fake_client, test_prefix) as bus:
        await bus.publish("TICKET_CREATED", ticket_created(), channel=[CHANNEL_GLOBAL, "custom"])
        await bus.publish("TICKET_CREATED", ticket_created(), channel=[CHANNEL_GLOBAL, "custom"])
        await bus.publish("TICKET_CREATED", ticket_created(), channel=(CHANNEL_GLOBAL, "custom"))
        await bus.publish("TICKET_CREATED", ticket_created(), channel="custom", batch=True)
    assert spy.seen[0] is spy.seen[1] is spy.seen[2]
    assert spy.seen[0] == PublishOptions(channels=(CHANNEL_GLOBAL, "custom"), batch=False)
    assert spy.seen[3] == PublishOptions(channels="custom", batch=True)


async def test_workflow_keywords_become_one_value(
    fake_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """publish_workflow_event's keywords and ctx arrive as hooks, the effective key, its tenant and dedupe."""
    spy = OptionsSpy(monkeypatch)
    ctx = PublishContext(tenant_id="tenant-1", correlation_id=UUID, idempotency_key="ctx-key")
    async with open_bus(fake_client, test_prefix) as bus:
        prepared = prepare_workflow_event(
            bus, "TICKET_CREATED", ticket_created(), ctx, from_state="open", to_state="closed", dedupe=False
        )
    assert not prepared.is_idempotent  # dedupe=False: the key rides in the payload only
    assert spy.seen == [
        PublishOptions(
            hooks=WorkflowHooks(execution_id=UUID, from_state="open", to_state="closed"),
            idempotency_key="ctx-key",
            tenant="tenant-1",
            dedupe=False,
        )
    ]


def test_options_are_frozen() -> None:
    """An options value cannot change under a caller that shares it."""
    options = PublishOptions()
    with pytest.raises(AttributeError):
        options.batch = False  # type: ignore[misc]
    assert msgspec.structs.replace(options, batch=False).batch is False
