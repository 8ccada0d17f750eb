"""Workflow conversion: the workflow-stream consumer (dedupe, correlation, schema, DLQ) and the converter."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest

from bus import EventBus, LoopTiming
from schemas import WORKFLOW_FIELDS, WorkflowEvent
from subscribers import SubscriberKeys
from subscribers.workflow import (
    ConverterSettings,
    CorrelationRules,
    WorkflowConsumer,
    WorkflowConsumerSettings,
    WorkflowConverter,
    WorkflowInvocation,
)

from ._data import NOW, PROJECT, TENANT, TICKET, URSULA, domain, legacy
from .conftest import entries, wait_until

CLIENT = "21212121-0000-4000-8000-000000000001"
INVOICE = "22222222-0000-4000-8000-000000000002"
PAYMENT = "23232323-0000-4000-8000-000000000003"


def flat(event_type: str, payload: dict[str, Any], *, event_id: str | None = None, key: str | None = None) -> Any:
    """The flat workflow entry the reference writes for a global publish."""
    data = msgspec.json.encode(payload)
    return WorkflowEvent.from_bus_event(
        event_id or str(uuid.uuid4()), event_type, NOW, payload, data, correlation_key=key
    ).to_fields()


#: Short blocks and quick reclaims, for tests that wait on redeliveries.
FAST_TIMING = LoopTiming(block_ms=50, read_timeout_s=2.0, claim_idle_ms=20, reclaim_interval_s=0.02)


def consumer_settings(test_prefix: str, **overrides: Any) -> WorkflowConsumerSettings:
    """Fast settings on the test's own workflow stream and DLQ."""
    values: dict[str, Any] = {
        "stream": f"{test_prefix}workflow:events:global",
        "dlq": f"{test_prefix}workflow:events:global:dlq",
        "timing": FAST_TIMING,
    }
    values.update(overrides)
    return WorkflowConsumerSettings(**values)


@asynccontextmanager
async def running(service: Any, bus: EventBus) -> AsyncIterator[None]:
    """Run a service until the block ends."""
    async with anyio.create_task_group() as tg:
        await tg.start(service.run, bus)
        yield
        tg.cancel_scope.cancel()


async def _true(value: bool) -> bool:
    """``value``, as an awaitable (for :func:`wait_until`)."""
    return value


def recorder() -> tuple[list[WorkflowInvocation], Callable[[WorkflowInvocation], Awaitable[None]]]:
    """A trigger that records its invocations."""
    calls: list[WorkflowInvocation] = []

    async def trigger(inv: WorkflowInvocation) -> None:
        calls.append(inv)

    return calls, trigger


# --- correlation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "payload", "explicit", "expected"),
    [
        pytest.param("TICKET_CREATED", {"ticketId": TICKET, "clientId": CLIENT}, "wf-1", "wf-1", id="explicit-wins"),
        pytest.param("TICKET_CREATED", {"ticketId": TICKET, "clientId": CLIENT}, None, TICKET, id="ticket-first"),
        pytest.param("CLIENT_UPDATED", {"clientId": CLIENT, "invoiceId": INVOICE}, None, CLIENT, id="client"),
        pytest.param("INVOICE_SENT", {"invoiceId": INVOICE, "projectId": PROJECT}, None, INVOICE, id="invoice"),
        pytest.param("PROJECT_UPDATED", {"projectId": PROJECT, "paymentId": PAYMENT}, None, PROJECT, id="project"),
        pytest.param("PAYMENT_RECORDED", {"paymentId": PAYMENT}, None, PAYMENT, id="payment"),
        pytest.param("PAYMENT_RECORDED", {"ticketId": ""}, None, None, id="none"),
        pytest.param("TASK_COMMENT_ADDED", {"projectId": PROJECT, "taskId": TICKET}, None, TICKET, id="override"),
    ],
)
def test_correlation_rules(
    event_type: str, payload: dict[str, Any], explicit: str | None, expected: str | None
) -> None:
    """Explicit key, else the first of ticketId, clientId, invoiceId, projectId, paymentId, or the per-type list."""
    rules = CorrelationRules(per_type={"TASK_COMMENT_ADDED": ("taskId", "projectId")})
    assert rules.resolve(event_type, payload, explicit) == expected


# --- consumer -------------------------------------------------------------------------------


async def test_trigger_gets_parsed_validated_event(any_bus: EventBus, test_prefix: str) -> None:
    """A trigger receives the parsed entry, its payload, schema ref, variant and derived correlation key."""
    settings = consumer_settings(test_prefix)
    consumer = WorkflowConsumer(settings)
    calls, trigger = recorder()
    consumer.register("TICKET_CREATED", trigger)
    eid = str(uuid.uuid4())
    async with running(consumer, any_bus):
        await any_bus.client.xadd(settings.stream, flat("TICKET_CREATED", domain(ticketId=TICKET), event_id=eid))
        await wait_until(lambda: _true(bool(calls)))
    [inv] = calls
    assert inv.event.event_id == eid and inv.event.execution_id is None and inv.event.user_id is None
    assert inv.payload["ticketId"] == TICKET
    assert inv.schema_ref == "payload.TicketCreated.v1" and inv.variant == "catalog"
    assert inv.correlation_key == TICKET and inv.delivery_count == 1


async def test_duplicate_event_id_triggers_once(any_bus: EventBus, test_prefix: str) -> None:
    """Two entries with one event id (publish-time and converted, or a retry) trigger once."""
    settings = consumer_settings(test_prefix)
    consumer = WorkflowConsumer(settings)
    calls, trigger = recorder()
    consumer.register("*", trigger)
    fields = flat("TICKET_CREATED", domain(ticketId=TICKET))
    async with running(consumer, any_bus):
        await any_bus.client.xadd(settings.stream, fields)
        await any_bus.client.xadd(settings.stream, fields)
        assert consumer.loop is not None
        loop = consumer.loop
        await wait_until(lambda: _true(loop.stats.acked == 2))
    assert len(calls) == 1


async def test_explicit_correlation_key_and_legacy_shape(any_bus: EventBus, test_prefix: str) -> None:
    """The publisher's correlationKey wins; a legacy payload is accepted and flagged with its variant."""
    settings = consumer_settings(test_prefix)
    consumer = WorkflowConsumer(settings)
    calls, trigger = recorder()
    consumer.register("TICKET_CLOSED", trigger)
    fields = flat("TICKET_CLOSED", legacy(ticketId=TICKET, userId=URSULA), key="order-42")
    async with running(consumer, any_bus):
        await any_bus.client.xadd(settings.stream, fields)
        await wait_until(lambda: _true(bool(calls)))
    assert calls[0].correlation_key == "order-42"
    assert calls[0].variant == "legacy" and calls[0].event.user_id == URSULA


async def test_always_failing_trigger_goes_to_dlq_after_three_deliveries(any_bus: EventBus, test_prefix: str) -> None:
    """A trigger that always fails is called 3 times; the entry then lands in the DLQ with the reference's fields."""
    settings = consumer_settings(test_prefix)
    consumer = WorkflowConsumer(settings)
    attempts: list[int] = []

    async def failing(inv: WorkflowInvocation) -> None:
        attempts.append(inv.delivery_count)
        raise RuntimeError("workflow engine unavailable")

    consumer.register("TICKET_CREATED", failing)
    fields = flat("TICKET_CREATED", domain(ticketId=TICKET))
    async with running(consumer, any_bus):
        entry_id = await any_bus.client.xadd(settings.stream, fields)
        await wait_until(_dlq_has_one(any_bus, settings.dlq), timeout_s=10)
    assert attempts == [1, 2, 3]
    [(_, dead)] = await entries(any_bus, settings.dlq)
    assert set(dead) == {
        b"original_message",
        b"error_message",
        b"error_stack",
        b"source_stream",
        b"original_id",
        b"moved_at",
    }
    assert msgspec.json.decode(dead[b"original_message"]) == {k: v.decode() for k, v in fields.items()}
    assert dead[b"error_message"] == b"workflow engine unavailable"
    assert b"RuntimeError" in dead[b"error_stack"]
    assert dead[b"source_stream"] == settings.stream.encode()
    assert dead[b"original_id"] == entry_id
    assert dead[b"moved_at"].endswith(b"Z")
    assert (await any_bus.client.xpending(settings.stream, settings.group))["pending"] == 0


def _dlq_has_one(bus: EventBus, key: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return int(await bus.client.xlen(key)) == 1

    return check


async def test_invalid_payload_dead_lettered_at_once(fake_bus: EventBus, test_prefix: str) -> None:
    """A payload that matches neither the catalog nor a bus shape is dead-lettered without retries."""
    settings = consumer_settings(test_prefix)
    consumer = WorkflowConsumer(settings)
    calls, trigger = recorder()
    consumer.register("TICKET_CREATED", trigger)
    fields = flat("TICKET_CREATED", {"tenantId": TENANT, "occurredAt": NOW})  # no ticketId
    async with running(consumer, fake_bus):
        await fake_bus.client.xadd(settings.stream, fields)
        await wait_until(_dlq_has_one(fake_bus, settings.dlq))
    [(_, dead)] = await entries(fake_bus, settings.dlq)
    assert b"payload.TicketCreated.v1" in dead[b"error_message"] and b"ticketId" in dead[b"error_message"]
    assert calls == []


async def test_unparseable_entry_dead_lettered(fake_bus: EventBus, test_prefix: str) -> None:
    """An entry with a bad event_id or missing fields goes straight to the DLQ."""
    settings = consumer_settings(test_prefix)
    consumer = WorkflowConsumer(settings)
    async with running(consumer, fake_bus):
        await fake_bus.client.xadd(settings.stream, {"event_id": "nope", "event_type": "TICKET_CREATED"})
        await wait_until(_dlq_has_one(fake_bus, settings.dlq))
    [(_, dead)] = await entries(fake_bus, settings.dlq)
    assert b"unparseable" in dead[b"error_message"]


async def test_succeeded_trigger_not_rerun_on_redelivery(fake_bus: EventBus, test_prefix: str) -> None:
    """When the second trigger fails once, the redelivery re-runs only the second."""
    settings = consumer_settings(test_prefix)
    consumer = WorkflowConsumer(settings)
    first_calls, first = recorder()
    second_calls: list[int] = []

    async def flaky(inv: WorkflowInvocation) -> None:
        second_calls.append(inv.delivery_count)
        if inv.delivery_count == 1:
            raise RuntimeError("transient")

    consumer.register("PROJECT_CREATED", first, name="first")
    consumer.register("PROJECT_CREATED", flaky, name="second")
    async with running(consumer, fake_bus):
        await fake_bus.client.xadd(settings.stream, flat("PROJECT_CREATED", domain(projectId=PROJECT)))
        await wait_until(lambda: _true(len(second_calls) == 2))
        assert consumer.loop is not None
        loop = consumer.loop
        await wait_until(lambda: _true(loop.stats.acked == 1))
    assert len(first_calls) == 1 and second_calls == [1, 2]


def test_register_unknown_type_fails() -> None:
    """Registering a trigger for an unknown event type fails with a suggestion."""
    with pytest.raises(LookupError, match="TICKET_CREATED"):
        WorkflowConsumer().register("TICKET_CREATD", recorder()[1])


# --- converter ------------------------------------------------------------------------------


def converter_settings(test_prefix: str, **overrides: Any) -> ConverterSettings:
    """Fast converter settings for the ticket types, writing to the test's workflow stream."""
    values: dict[str, Any] = {
        "event_types": ("TICKET_CREATED", "TICKET_UPDATED"),
        "workflow_stream": f"{test_prefix}workflow:events:global",
        "timing": FAST_TIMING,
    }
    values.update(overrides)
    return ConverterSettings(**values)


async def publish_without_workflow_entry(bus: EventBus, event_type: str, payload: dict[str, Any]) -> str:
    """Publish on global the way a producer that skips the workflow stream does; returns the event id."""
    [result] = await bus.write([bus.prepare(event_type, payload, workflow=False)])
    return result.event_id


async def test_event_without_workflow_entry_converted_exactly_once(any_bus: EventBus, test_prefix: str) -> None:
    """The converter writes the reference's flat entry once; a second converter group finds the marker and skips."""
    settings = converter_settings(test_prefix)
    eid = await publish_without_workflow_entry(any_bus, "TICKET_CREATED", domain(ticketId=TICKET))
    first = WorkflowConverter(settings)
    async with running(first, any_bus):
        await wait_until(lambda: _true(first.stats["written"] == 1))
    second = WorkflowConverter(msgspec.structs.replace(settings, group="another-converter"))
    async with running(second, any_bus):
        await wait_until(lambda: _true(second.stats["skipped"] == 1))
    [(_, fields)] = await entries(any_bus, settings.workflow_stream)
    event = WorkflowEvent.from_fields(fields)
    assert event.event_id == eid and event.event_type == "TICKET_CREATED" and event.tenant == TENANT
    assert event.payload()["ticketId"] == TICKET and event.workflow_correlation_key is None
    assert tuple(k.decode() for k in fields) == WORKFLOW_FIELDS


async def test_publish_time_entry_not_doubled(fake_bus: EventBus, test_prefix: str) -> None:
    """An event whose publisher already wrote the workflow entry (no marker, like the reference) is skipped."""
    settings = converter_settings(test_prefix, workflow_stream="workflow:events:global")
    await fake_bus.publish("TICKET_UPDATED", domain(ticketId=TICKET))  # writes the workflow entry itself
    converter = WorkflowConverter(settings)
    async with running(converter, fake_bus):
        await wait_until(lambda: _true(converter.stats["skipped"] == 1))
    assert converter.stats["written"] == 0
    assert await fake_bus.client.xlen("workflow:events:global") == 1


async def test_marker_from_publisher_is_honoured(fake_bus: EventBus, test_prefix: str) -> None:
    """A publisher that sets the written-marker for its event id is never converted again."""
    settings = converter_settings(test_prefix, lookback_ms=0)
    eid = await publish_without_workflow_entry(fake_bus, "TICKET_CREATED", domain(ticketId=TICKET))
    await fake_bus.client.set(SubscriberKeys(fake_bus.keys.prefix).workflow_written(eid), "1")
    converter = WorkflowConverter(settings)
    async with running(converter, fake_bus):
        await wait_until(lambda: _true(converter.stats["skipped"] == 1))
    assert await fake_bus.client.xlen(settings.workflow_stream) == 0


async def test_unconvertible_entry_dead_lettered(fake_bus: EventBus, test_prefix: str) -> None:
    """A per-type entry without a valid envelope goes to that stream's dead-letter with the reason."""
    settings = converter_settings(test_prefix)
    stream = fake_bus.keys.stream("global", "TICKET_CREATED")
    converter = WorkflowConverter(settings)
    async with running(converter, fake_bus):
        await fake_bus.client.xadd(stream, {"event": b"{not json", "channel": b"global"})
        await wait_until(_dlq_has_one(fake_bus, f"{stream}:dead-letter"))
    [(_, dead)] = await entries(fake_bus, f"{stream}:dead-letter")
    assert dead[b"event"] == b"{not json" and dead[b"deadLetterReason"] == b"invalid"
    assert dead[b"consumerGroup"] == b"workflow-converter"


async def test_converted_then_consumed_end_to_end(any_bus: EventBus, test_prefix: str) -> None:
    """Converter and consumer together: a workflow trigger fires once for an event published without its entry."""
    csettings = consumer_settings(test_prefix)
    consumer = WorkflowConsumer(csettings)
    calls, trigger = recorder()
    consumer.register("TICKET_UPDATED", trigger)
    converter = WorkflowConverter(converter_settings(test_prefix))
    async with running(converter, any_bus), running(consumer, any_bus):
        eid = await publish_without_workflow_entry(any_bus, "TICKET_UPDATED", domain(ticketId=TICKET))
        await wait_until(lambda: _true(bool(calls)))
    assert calls[0].event.event_id == eid and calls[0].correlation_key == TICKET


# --- idle -------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
async def test_idle_workflow_consumer_and_converter_log_no_warning(
    real_client: Any, test_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``bus run workflow --trigger ... --converter`` idle on the real Redis (socket timeout 5 s, the CLI's
    default, equal to the 5,000 ms blocking read) logs no warning for 15 s and never reconnects."""
    from bus import BusSettings
    from subscribers.app import workflow

    environ = {
        "REDIS_PREFIX": test_prefix,
        "BUS_SOCKET_TIMEOUT_S": "5",
        "BUS_WORKFLOW_TRIGGERS": "TICKET_CREATED=subscribers.app:log_trigger",
        "BUS_WORKFLOW_STREAM": f"{test_prefix}workflow:events:global",
        "BUS_WORKFLOW_CONVERTER": "1",
        "BUS_CONVERTER_EVENT_TYPES": "TICKET_CREATED,TICKET_UPDATED",
    }
    settings = BusSettings.from_env(environ)
    assert (settings.socket_timeout_s, settings.block_ms) == (5.0, 5000)
    consumer, converter = workflow(environ)
    assert isinstance(consumer, WorkflowConsumer) and isinstance(converter, WorkflowConverter)
    async with EventBus(settings) as bus, anyio.create_task_group() as tg:
        with caplog.at_level(logging.WARNING):
            await tg.start(consumer.run, bus)
            await tg.start(converter.run, bus)
            await anyio.sleep(15)  # the condition under test: 15 s of idle, three blocking reads each
            tg.cancel_scope.cancel()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [], [r.getMessage() for r in warnings]
    assert consumer.loop is not None and converter.loop is not None
    assert consumer.loop.stats.reconnects == converter.loop.stats.reconnects == 0


async def test_workflow_services_read_with_the_bus_timing_unless_given() -> None:
    """The consumer's and converter's loops use ``bus.settings.loop_timing`` when theirs is None, else theirs."""
    from bus.testing import fake_bus

    own = LoopTiming(block_ms=300, read_timeout_s=4.0, claim_idle_ms=900, reclaim_interval_s=0.3)
    async with fake_bus(block_ms=120, read_timeout_s=3.0) as bus:
        assert bus.settings.loop_timing.block_ms == 120
        for service in (WorkflowConsumer(), WorkflowConverter(ConverterSettings(event_types=("TICKET_CREATED",)))):
            assert service.subscription(bus).timing == bus.settings.loop_timing
        assert WorkflowConsumer(WorkflowConsumerSettings(timing=own)).subscription(bus).timing == own
        converter = WorkflowConverter(ConverterSettings(event_types=("TICKET_CREATED",), timing=own))
        assert converter.subscription(bus).timing == own
