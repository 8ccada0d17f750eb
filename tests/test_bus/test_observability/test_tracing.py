"""OpenTelemetry (the otel extra): producer and consumer spans, the trace context in entry fields, one
trace across two processes, and nothing of it when no Tracing is given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bus import WORKFLOW_STREAM, Delivery, EventBus, RetryLater
from bus.observability import Tracing
from bus.testing import fast_settings, wait_for_stats
from test_bus._support import ticket_created
from tests.conftest import REAL_REDIS_URL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider)


@pytest.fixture
async def traced_bus(real_client: aioredis.Redis, test_prefix: str, tracing: Tracing) -> AsyncIterator[EventBus]:
    async with EventBus(fast_settings(prefix=test_prefix), client=real_client, tracing=tracing) as bus:
        yield bus


def by_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


async def test_publish_opens_a_producer_span_and_writes_its_context(
    traced_bus: EventBus, real_client: aioredis.Redis, exporter: InMemorySpanExporter
) -> None:
    """One publish: one `send {stream}` PRODUCER span with the messaging attributes; each entry it wrote
    (per-type copy and workflow entry) carries that span's traceparent after the reference's fields."""
    result = await traced_bus.publish("TICKET_CREATED", ticket_created())
    (span,) = by_kind(exporter, SpanKind.PRODUCER)
    stream = traced_bus.keys.stream("global", "TICKET_CREATED")
    assert span.name == f"send {stream}"
    attrs = dict(span.attributes or {})
    assert attrs["messaging.system"] == "redis"
    assert attrs["messaging.destination.name"] == stream
    assert attrs["messaging.message.id"] == result.event_id
    assert (attrs["messaging.operation.type"], attrs["messaging.operation.name"]) == ("send", "send")
    ctx = span.get_span_context()
    assert ctx is not None
    traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}".encode()
    for key in (stream, WORKFLOW_STREAM):
        ((_, fields),) = await real_client.xrange(key, min=result.entries[key], max=result.entries[key])
        names = list(fields)
        assert fields[b"traceparent"] == traceparent, key
        assert names.index(b"traceparent") == len(names) - 1, "the extra field comes after the reference's"
    assert span.status.status_code is StatusCode.UNSET


async def test_idempotent_and_fanout_publishes_carry_the_context(
    traced_bus: EventBus, real_client: aioredis.Redis, exporter: InMemorySpanExporter
) -> None:
    """The idempotency script path and a fan-out write the trace context on every copy; one span each."""
    fanned = await traced_bus.publish("TICKET_CREATED", ticket_created(), channel=None)
    keyed = await traced_bus.publish("TICKET_CREATED", ticket_created(), idempotency_key="k-1", tenant="tenant-1")
    spans = by_kind(exporter, SpanKind.PRODUCER)
    assert len(spans) == 2
    assert dict(spans[0].attributes or {})["messaging.batch.message_count"] == len(fanned.entries) == 4
    for result in (fanned, keyed):
        for key, entry_id in result.entries.items():
            ((_, fields),) = await real_client.xrange(key, min=entry_id, max=entry_id)
            assert fields[b"traceparent"].startswith(b"00-"), key


async def test_consumer_span_is_the_child_of_the_producer_span(
    traced_bus: EventBus, exporter: InMemorySpanExporter
) -> None:
    """A handled delivery: one `process {stream}` CONSUMER span, child of the publish's span, current in
    the handler; a failing attempt marks its span ERROR with the exception."""
    seen: list[Any] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(trace.get_current_span().get_span_context())
        if delivery.delivery_count == 1:
            raise RetryLater("not yet")  # left pending: a second delivery, a second span

    traced_bus.subscribe("TICKET_CREATED", handle)
    async with anyio.create_task_group() as tg:
        await tg.start(traced_bus.run)
        result = await traced_bus.publish("TICKET_CREATED", ticket_created())
        with anyio.fail_after(10):
            await wait_for_stats(traced_bus, lambda s: s.handled >= 1)
        tg.cancel_scope.cancel()
    (producer,) = by_kind(exporter, SpanKind.PRODUCER)
    failed, handled = by_kind(exporter, SpanKind.CONSUMER)
    stream = traced_bus.keys.stream("global", "TICKET_CREATED")
    pctx = producer.get_span_context()
    assert pctx is not None
    for span, count in ((failed, 1), (handled, 2)):
        assert span.name == f"process {stream}"
        assert span.parent is not None and span.parent.span_id == pctx.span_id
        ctx = span.get_span_context()
        assert ctx is not None and ctx.trace_id == pctx.trace_id
        attrs = dict(span.attributes or {})
        assert attrs["messaging.consumer.group.name"] == traced_bus.settings.consumer_group
        assert attrs["messaging.message.id"] == result.event_id
        assert attrs["bus.delivery_count"] == count
    assert [c.span_id for c in seen] == [
        s.get_span_context().span_id  # type: ignore[union-attr]
        for s in (failed, handled)
    ]
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert handled.status.status_code is StatusCode.UNSET


CONSUMER = textwrap.dedent(
    """
    import json, sys
    import anyio
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from bus import EventBus
    from bus.observability import Tracing
    from bus.testing import fast_settings, wait_for_stats

    async def main(url, prefix):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        async with EventBus(fast_settings(url, prefix=prefix), tracing=Tracing(provider)) as bus:
            async def handle(delivery):
                pass
            bus.subscribe("TICKET_CREATED", handle)
            async with anyio.create_task_group() as tg:
                await tg.start(bus.run)
                with anyio.fail_after(30):
                    await wait_for_stats(bus, lambda s: s.handled >= 1)
                tg.cancel_scope.cancel()
        out = []
        for s in exporter.get_finished_spans():
            ctx = s.get_span_context()
            out.append({"name": s.name, "kind": s.kind.name, "trace_id": ctx.trace_id, "span_id": ctx.span_id,
                        "parent_id": s.parent.span_id if s.parent else None})
        print(json.dumps(out))

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


async def test_publish_here_and_handling_in_another_process_give_one_trace(
    traced_bus: EventBus, exporter: InMemorySpanExporter, test_prefix: str, tmp_path: Path
) -> None:
    """Publish in this process, handle in a subprocess with its own tracer provider: its consumer span is
    in the producer span's trace, as its child."""
    await traced_bus.publish("TICKET_CREATED", ticket_created())
    script = tmp_path / "consume_one.py"
    script.write_text(CONSUMER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, str(script), REAL_REDIS_URL, test_prefix], env=env, cwd=ROOT)
    (consumer,) = json.loads(done.stdout)
    (producer,) = by_kind(exporter, SpanKind.PRODUCER)
    ctx = producer.get_span_context()
    assert ctx is not None
    assert consumer["kind"] == "CONSUMER"
    assert consumer["name"] == f"process {traced_bus.keys.stream('global', 'TICKET_CREATED')}"
    assert (consumer["trace_id"], consumer["parent_id"]) == (ctx.trace_id, ctx.span_id)


def test_without_tracing_nothing_imports_opentelemetry() -> None:
    """A bus that publishes and consumes without ``tracing=`` never imports the tracing module (nor so
    opentelemetry: the extra may be absent); its entries keep exactly the reference's fields."""
    code = textwrap.dedent(
        """
        import sys, anyio
        from bus import EventBus, Delivery
        import bus.observability
        from bus.testing import fake_bus, wait_for_stats

        async def main():
            async with fake_bus() as bus:
                async def handle(delivery): pass
                bus.subscribe("TICKET_CREATED", handle)
                async with anyio.create_task_group() as tg:
                    await tg.start(bus.run)
                    r = await bus.publish("TICKET_CREATED", PAYLOAD)
                    await wait_for_stats(bus, lambda s: s.handled >= 1)
                    tg.cancel_scope.cancel()
                stream = bus.keys.stream("global", "TICKET_CREATED")
                (entry,) = await bus.client.xrange(stream)
                assert list(entry[1]) == [b"event", b"channel"], entry
            # (redis-py imports opentelemetry itself when it is installed: our tracing module is the test)
            assert "bus.observability._tracing" not in sys.modules, "the tracing module was imported"

        anyio.run(main)
        """
    ).replace("PAYLOAD", repr(ticket_created()))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
