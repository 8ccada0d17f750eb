"""Handler failures: in-process retries, timeouts, RetryLater, sibling handlers not re-run."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Generator
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import Delivery, EventBus, RetryLater
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_for_stats, xadd_reference


def make_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> EventBus:
    """A bus on the test's backend with fast timings and keys under the test prefix."""
    return EventBus(fast_settings(prefix=prefix, **overrides), client=client)


async def test_failing_handler_is_retried_in_process_and_its_sibling_runs_once(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """A handler that fails once is retried in the same delivery and succeeds; the handler before it ran once."""
    async with make_bus(backend, test_prefix, handler_retries=2) as bus:
        sibling, flaky = Recorder(), Recorder(fail={1: RuntimeError("database hiccup")})
        bus.subscribe("TICKET_CREATED", sibling, subscriber_id="sibling")
        bus.subscribe("TICKET_CREATED", flaky, subscriber_id="flaky")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                stats = await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert (sibling.calls, flaky.calls) == (1, 2)
    assert (stats.retries, stats.failed, stats.dead_lettered) == (1, 0, 0)
    assert [d.delivery_count for d in flaky.deliveries] == [1]


async def test_handler_past_its_timeout_is_cancelled_and_retried(backend: aioredis.Redis, test_prefix: str) -> None:
    """A handler sleeping past handler_timeout_s is cancelled (it sees the cancellation) and retried: it succeeds."""
    cancelled: list[bool] = []
    calls = 0

    async def slow_then_fast(delivery: Delivery) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            try:
                await anyio.sleep(30)
            except anyio.get_cancelled_exc_class():
                cancelled.append(True)
                raise

    async with make_bus(backend, test_prefix, handler_timeout_s=0.1, handler_retries=1) as bus:
        bus.subscribe("TICKET_CREATED", slow_then_fast)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                stats = await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert (calls, cancelled, stats.timeouts, stats.retries) == (2, [True], 1, 1)


async def test_a_failure_after_all_retries_leaves_the_entry_pending_for_redelivery(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """When every in-process attempt fails the entry stays pending and is redelivered (count 2) after claim_idle_ms."""
    async with make_bus(backend, test_prefix, handler_retries=1) as bus:
        recorder = Recorder(fail={1: ValueError("no"), 2: ValueError("still no")})
        bus.subscribe("TICKET_CREATED", recorder)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.failed == 1)
                status = await bus.status()
                assert status.pending == 1
                stats = await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert recorder.calls == 3
    assert [d.delivery_count for d in recorder.deliveries] == [2]
    assert stats.reclaimed == 1


async def test_retry_later_skips_in_process_retries(backend: aioredis.Redis, test_prefix: str) -> None:
    """RetryLater leaves the entry pending without in-process retries; the redelivery succeeds."""
    async with make_bus(backend, test_prefix, handler_retries=3) as bus:
        recorder = Recorder(fail={1: RetryLater("mail server busy")})
        bus.subscribe("TICKET_CREATED", recorder)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                stats = await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert (recorder.calls, stats.retries) == (2, 0)
    assert recorder.deliveries[0].delivery_count == 2


async def test_handlers_that_do_not_suspend_and_awaitables_that_are_not_coroutines(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """A handler finishing without awaiting, one raising before its first await and a non-coroutine awaitable work."""
    seen: list[str] = []

    async def sync_body(delivery: Delivery) -> None:
        seen.append("sync")

    class Done:
        def __await__(self) -> Generator[Any, None, None]:
            seen.append("awaitable")
            yield from ()

    def not_a_coroutine(delivery: Delivery) -> Awaitable[None]:
        return Done()

    async def fails_at_once(delivery: Delivery) -> None:
        seen.append("fails")
        if seen.count("fails") == 1:
            raise KeyError("before any await")

    async with make_bus(backend, test_prefix) as bus:
        bus.subscribe("TICKET_CREATED", sync_body)
        bus.subscribe("TICKET_CREATED", not_a_coroutine)
        bus.subscribe("TICKET_CREATED", fails_at_once)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                stats = await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()
    assert seen == ["sync", "awaitable", "fails", "fails"]
    assert stats.retries == 1


async def test_a_failed_attempt_is_logged_once_with_traceback_and_fields(
    backend: aioredis.Redis, test_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each failed delivery attempt: one warning with the handler's traceback and event_type, event_id,
    stream, group, delivery_count; the last one (max deliveries) an error line of the same shape."""

    async def boom(delivery: Delivery) -> None:
        raise RuntimeError(f"boom {delivery.delivery_count}")

    caplog.set_level("WARNING", logger="bus.consume")
    async with make_bus(backend, test_prefix, handler_retries=0, max_deliveries=2) as bus:
        bus.subscribe("TICKET_CREATED", boom)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(10):
                await wait_for_stats(bus, lambda s: s.dead_lettered == 1)
            tg.cancel_scope.cancel()
    stream = bus.keys.stream("global", "TICKET_CREATED")
    lines = [r for r in caplog.records if r.name == "bus.consume" and getattr(r, "stream", None) == stream]
    assert [(r.levelname, r.delivery_count) for r in lines] == [("WARNING", 1), ("ERROR", 2)]  # type: ignore[attr-defined]
    for record, count in zip(lines, (1, 2), strict=True):
        text = record.exc_text or ""
        assert text.endswith(f"RuntimeError: boom {count}") and record.exc_info is None
        assert "Traceback" in text and "in boom" in text, "the handler's own frame is in the traceback"
        assert text in logging.Formatter().format(record), "formatters print it as a traceback"
        assert record.event_type == "TICKET_CREATED"  # type: ignore[attr-defined]
        assert record.group == bus.settings.consumer_group  # type: ignore[attr-defined]
        assert len(record.event_id) == 36 and record.entry_id  # type: ignore[attr-defined]
