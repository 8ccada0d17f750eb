"""Graceful shutdown (cancel, stop, SIGTERM through the runner) and the runner's error handling."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from anyio.abc import TaskStatus

from bus import AuthenticationError, BusSettings, Delivery, EventBus, Runner
from bus.testing import Recorder, fast_settings, ticket_created_payload, xadd_reference


def make_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> EventBus:
    """A bus on the test's backend with fast timings and keys under the test prefix."""
    return EventBus(fast_settings(prefix=prefix, **overrides), client=client)


async def test_cancel_finishes_in_flight_work_and_leaves_the_rest_pending(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """Cancel lets the running handler finish and acks it; unstarted entries stay pending and unmarked."""
    started, finished = anyio.Event(), []

    async def slow(delivery: Delivery) -> None:
        started.set()
        await anyio.sleep(0.3)
        finished.append(delivery.event_id)

    async with make_bus(backend, test_prefix, concurrency=1, shutdown_grace_s=5) as bus:
        bus.subscribe("TICKET_CREATED", slow)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        payloads = [ticket_created_payload() for _ in range(3)]
        # Written before the loop starts, so its first read takes all three (under load a read
        # between the XADDs could leave the last entries unread, not pending).
        ids = [(await xadd_reference(backend, "TICKET_CREATED", p, keys=bus.keys))[1] for p in payloads]
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(5):
                await started.wait()
            tg.cancel_scope.cancel()
        assert finished == ids[:1]
        assert bus.stats.handled == 1
        pending: Any = await backend.xpending_range(stream, bus.settings.consumer_group, "-", "+", 10)
        entries: Any = await backend.xrange(stream)
        assert sorted(p["message_id"] for p in pending) == sorted(e for e, _ in entries)[1:]
        markers = [
            await backend.sismember(bus.keys.marker_events(p["tenantId"]), f"{bus.settings.consumer_group}|global|{i}")
            for p, i in zip(payloads, ids, strict=True)
        ]
        assert markers == [1, 0, 0]


async def test_cancel_right_after_start_returns_at_once(fake_client: aioredis.Redis) -> None:
    """Cancelling the loop right after it started (nothing in flight) returns at once, not after the grace period."""
    async with EventBus(fast_settings(shutdown_grace_s=5), client=fake_client) as bus:
        bus.subscribe("TICKET_CREATED", Recorder())
        begun = anyio.current_time()
        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                await tg.start(bus.run)
                tg.cancel_scope.cancel()
        assert anyio.current_time() - begun < 0.5


async def test_grace_period_bounds_the_drain(backend: aioredis.Redis, test_prefix: str) -> None:
    """A handler still running when shutdown_grace_s ends is cancelled and its entry stays pending."""
    cancelled = anyio.Event()

    async def stuck(delivery: Delivery) -> None:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    async with make_bus(backend, test_prefix, shutdown_grace_s=0.2, handler_timeout_s=30) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        bus.subscribe("TICKET_CREATED", stuck)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                await recorder.wait(1)
            begun = anyio.current_time()
            tg.cancel_scope.cancel()
        assert anyio.current_time() - begun < 2
        assert cancelled.is_set()
        status = await bus.status()
        assert (status.pending, status.dead_letters, bus.stats.failed) == (1, 0, 0)


async def test_stop_drains_and_returns(backend: aioredis.Redis, test_prefix: str) -> None:
    """bus.stop() while a handler runs: run() returns normally after the handler finished and was acked."""
    release, began = anyio.Event(), anyio.Event()

    async def waits(delivery: Delivery) -> None:
        bus.stop()
        began.set()
        await release.wait()

    async with make_bus(backend, test_prefix) as bus:
        bus.subscribe("TICKET_CREATED", waits)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await tg.start(bus.run)
                await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
                await began.wait()
                await anyio.lowlevel.checkpoint()  # the stop is under way: run() must still wait for the handler
                release.set()
        assert bus.stats.handled == 1
        assert (await bus.status()).pending == 0


class RecordingService:
    """A service that subscribes a recorder and runs the consume loop."""

    def __init__(self, name: str, channel: str = "global") -> None:
        self.name = name
        self.channel = channel
        self.recorder = Recorder()
        self.bus: EventBus | None = None

    async def run(self, bus: EventBus, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, then consume until cancelled."""
        self.bus = bus
        bus.subscribe("TICKET_CREATED", self.recorder, channel=self.channel, subscriber_id=self.name)
        await bus.run(task_status=task_status)


async def test_runner_stops_gracefully_on_sigterm(fake_client: aioredis.Redis) -> None:
    """The runner runs each service on its own bus (unique consumer names) and SIGTERM stops them all gracefully."""
    services = [RecordingService("mailer", "emailservice::v7"), RecordingService("notifier", "internal-notifications")]
    settings = fast_settings(consumer_name="pod-7")
    runner = Runner(
        services, settings, bus_factory=lambda s: EventBus(s, client=fake_client), signals=(signal.SIGTERM,)
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)
            for service in services:
                await xadd_reference(fake_client, "TICKET_CREATED", ticket_created_payload(), channel=service.channel)
            for service in services:
                await service.recorder.wait(1)
            os.kill(os.getpid(), signal.SIGTERM)
    assert runner.stopped_by == signal.SIGTERM
    assert [s.bus.consumer_name for s in services if s.bus] == ["pod-7-mailer", "pod-7-notifier"]
    assert all(s.bus is not None and s.bus.is_closed for s in services)
    assert [len(s.recorder.deliveries) for s in services] == [1, 1]


async def test_runner_raises_a_service_error_as_itself(fake_client: aioredis.Redis) -> None:
    """A service failing with AuthenticationError stops the runner with that error, not an exception group."""

    class Broken:
        async def run(self, bus: EventBus, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            """Fail like a consume loop whose credentials were revoked."""
            task_status.started()
            raise AuthenticationError("Redis rejected the credentials (WRONGPASS)")

    runner = Runner(
        [RecordingService("ok"), Broken()],
        BusSettings(),
        bus_factory=lambda s: EventBus(fast_settings(), client=fake_client),
        signals=(),
    )
    with anyio.fail_after(5), pytest.raises(AuthenticationError, match="WRONGPASS"):
        await runner.run()
