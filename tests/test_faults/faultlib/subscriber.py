"""``python -m faultlib.subscriber``: one subscriber process of a fault test.

Builds an :class:`bus.EventBus` from the environment (REDIS_URL, BUS_CONSUMER_NAME,
REDIS_STREAM_*, BUS_*: the product's own variables), subscribes handlers that record into the
ledger, marks itself ``ready`` in the ledger once its groups exist, and consumes until SIGTERM
(graceful stop) or SIGKILL. Harness variables:

- ``FAULT_LEDGER``: ledger file (required);
- ``FAULT_EVENT_TYPES``: comma-separated event types (default ``TICKET_CREATED``);
- ``FAULT_CHANNEL``: channel (default ``global``);
- ``FAULT_HANDLERS``: comma-separated handler names, each its own ``subscriber_id`` (default ``handler``);
- ``FAULT_WORK_MS``: time a handler spends between "begin" and its side effect "done" (default 0);
- ``FAULT_HOLD_MS``: time a handler spends after its side effect before it returns (default 0);
- ``FAULT_SOCKET_TIMEOUT_S``: the bus's socket timeout (no product variable exists for it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from bus import EventBus

from .ledger import Ledger, Phase

if TYPE_CHECKING:
    from bus._delivery import Delivery, Handler


def _handler(ledger: Ledger, bus: EventBus, name: str, work_s: float, hold_s: float) -> Handler:
    def record(delivery: Delivery, phase: Phase) -> None:
        ledger.handled(
            delivery.event_id,
            consumer=bus.consumer_name,
            delivery=delivery.delivery_count,
            handler=name,
            phase=phase,
            stream=delivery.stream,
            entry_id=delivery.entry_id,
        )

    async def handle(delivery: Delivery) -> None:
        record(delivery, "begin")
        if work_s:
            await anyio.sleep(work_s)
        record(delivery, "done")  # the side effect that must happen exactly once
        if hold_s:
            await anyio.sleep(hold_s)

    return handle


async def main() -> None:
    """Subscribe, mark ready, consume until SIGTERM/SIGINT."""
    env = os.environ
    ledger = Ledger(env["FAULT_LEDGER"])
    overrides: dict[str, Any] = {}
    if env.get("FAULT_SOCKET_TIMEOUT_S"):
        overrides["socket_timeout_s"] = float(env["FAULT_SOCKET_TIMEOUT_S"])
    bus = EventBus.from_env(**overrides)
    work_s = float(env.get("FAULT_WORK_MS", "0")) / 1000
    hold_s = float(env.get("FAULT_HOLD_MS", "0")) / 1000
    channel = env.get("FAULT_CHANNEL", "global")
    for event_type in env.get("FAULT_EVENT_TYPES", "TICKET_CREATED").split(","):
        for name in env.get("FAULT_HANDLERS", "handler").split(","):
            bus.subscribe(event_type, _handler(ledger, bus, name, work_s, hold_s), channel=channel, subscriber_id=name)
    async with bus, anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    ledger.mark(bus.consumer_name, "stopping")
                    bus.stop()
                    return

        async def consume(*, task_status: TaskStatus[None]) -> None:
            await bus.run(task_status=task_status)
            tg.cancel_scope.cancel()  # stopped: end the signal watcher too

        tg.start_soon(stop_on_signal)
        await tg.start(consume)
        ledger.mark(bus.consumer_name, "ready")
        logging.info("subscriber %s (pid %d) ready", bus.consumer_name, os.getpid())
    ledger.mark(bus.consumer_name, "exit")


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    anyio.run(main)
