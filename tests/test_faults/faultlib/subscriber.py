"""The subscriber of fault tests: handlers that record into the ledger, as a bus service.

Two ways to run it as its own OS process (both read the product's variables: REDIS_URL,
BUS_CONSUMER_NAME, REDIS_STREAM_*, BUS_*):

- ``python -m bus run faultlib.subscriber:service``: the product's daemon CLI;
- ``python -m faultlib.subscriber``: the same service under :class:`bus.Runner`, plus
  ``FAULT_SOCKET_TIMEOUT_S`` (``socket_timeout_s`` has no product variable).

Either way the service marks itself ``ready`` in the ledger once its consumer groups exist and
stops gracefully on SIGTERM. Harness variables:

- ``FAULT_LEDGER``: ledger file (required);
- ``FAULT_EVENT_TYPES``: comma-separated event types (default ``TICKET_CREATED``);
- ``FAULT_CHANNEL``: channel (default ``global``);
- ``FAULT_HANDLERS``: comma-separated handler names, each its own ``subscriber_id`` (default ``handler``);
- ``FAULT_WORK_MS``: time a handler spends between "begin" and its side effect "done" (default 0);
- ``FAULT_HOLD_MS``: time a handler spends after its side effect before it returns (default 0).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import TaskStatus

from bus import BusSettings, Delivery, EventBus, Handler, run_services

from .ledger import Ledger, Phase

__all__ = ["RecordingService", "service"]


class RecordingService:
    """Subscribes one recording handler per (event type, handler name) and consumes."""

    name = "faults"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.ledger = Ledger(environ["FAULT_LEDGER"])
        self.event_types = environ.get("FAULT_EVENT_TYPES", "TICKET_CREATED").split(",")
        self.channel = environ.get("FAULT_CHANNEL", "global")
        self.handlers = environ.get("FAULT_HANDLERS", "handler").split(",")
        self.work_s = float(environ.get("FAULT_WORK_MS", "0")) / 1000
        self.hold_s = float(environ.get("FAULT_HOLD_MS", "0")) / 1000

    def _handler(self, bus: EventBus, name: str) -> Handler:
        def record(delivery: Delivery, phase: Phase) -> None:
            self.ledger.handled(
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
            if self.work_s:
                await anyio.sleep(self.work_s)
            record(delivery, "done")  # the side effect that must happen exactly once
            if self.hold_s:
                await anyio.sleep(self.hold_s)

        return handle

    async def run(self, bus: EventBus, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, consume, mark ``ready`` once the groups exist."""
        for event_type in self.event_types:
            for name in self.handlers:
                bus.subscribe(event_type, self._handler(bus, name), channel=self.channel, subscriber_id=name)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            self.ledger.mark(bus.consumer_name, "ready")
            task_status.started()


def service(environ: dict[str, str]) -> RecordingService:
    """Factory for ``bus run faultlib.subscriber:service`` (it passes the environment)."""
    return RecordingService(environ)


async def main() -> None:
    """Run the service under the product's runner until SIGTERM/SIGINT."""
    overrides: dict[str, Any] = {}
    if os.environ.get("FAULT_SOCKET_TIMEOUT_S"):
        overrides["socket_timeout_s"] = float(os.environ["FAULT_SOCKET_TIMEOUT_S"])
    await run_services([service(dict(os.environ))], BusSettings.from_env(**overrides))


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    anyio.run(main)
