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
- ``FAULT_HOLD_MS``: time a handler spends after its side effect before it returns (default 0);
- ``FAULT_GUARD``: ``1`` commits the side effect keyed by :attr:`bus.Delivery.effect_key`
  (:meth:`Ledger.commit_effect`: the key and the "done" row in one SQLite transaction, ``ON
  CONFLICT DO NOTHING``), so a redelivery records "skip" instead of a second "done".

The service also watches the bus's counters every 20 ms and marks (under its consumer name)
``reconnect`` when ``stats.reconnects`` grew (a transport failure was noticed), ``nogroup`` when
``stats.group_recreations`` grew and ``lost_group`` when ``stats.lost_groups`` grew.
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
        self.guard = environ.get("FAULT_GUARD", "") == "1"

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
            if self.guard:  # the side effect and its idempotency key, in one transaction
                self.ledger.commit_effect(
                    delivery.event_id,
                    effect_key=delivery.effect_key,
                    consumer=bus.consumer_name,
                    delivery=delivery.delivery_count,
                    handler=name,
                    stream=delivery.stream,
                    entry_id=delivery.entry_id,
                )
            else:
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
            await tg.start(self._consume, bus, tg.cancel_scope)
            self.ledger.mark(bus.consumer_name, "ready")
            tg.start_soon(self._watch, bus)
            task_status.started()

    @staticmethod
    async def _consume(
        bus: EventBus, scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """``bus.run``; when it ends (stopped, or an error) the watcher ends with it."""
        try:
            await bus.run(task_status=task_status)
        finally:
            scope.cancel()

    async def _watch(self, bus: EventBus) -> None:
        """Mark ``reconnect``/``nogroup``/``lost_group`` when the bus's counters grow."""
        counters = {"reconnects": "reconnect", "group_recreations": "nogroup", "lost_groups": "lost_group"}
        seen = dict.fromkeys(counters, 0)
        while True:
            await anyio.sleep(0.02)
            stats = bus.stats
            for attr, event in counters.items():
                value = getattr(stats, attr)
                if value > seen[attr]:
                    seen[attr] = value
                    await anyio.to_thread.run_sync(self.ledger.mark, bus.consumer_name, event)


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
