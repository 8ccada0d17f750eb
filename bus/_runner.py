"""Run services until SIGTERM/SIGINT or cancellation, then drain them gracefully.

A service is anything with ``async run(bus, *, task_status)`` (:class:`Service`): it subscribes,
runs ``bus.run(task_status=task_status)`` (or its own loop) and calls ``task_status.started()``
once it is ready. The runner gives each service its own :class:`EventBus` (its own connections,
consume loop and consumer name), starts them one by one in a task group, and on a signal cancels
the group: each consume loop then stops reading, lets in-flight handlers finish within
``shutdown_grace_s``, flushes its acks (shielded, time-boxed) and leaves the rest pending.

``bus`` never imports a service: the CLI loads them from import strings.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio
import msgspec

from ._bus import EventBus
from ._settings import BusSettings
from .consume import single_error

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

__all__ = ["Runner", "Service", "run_services"]

log = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@runtime_checkable
class Service(Protocol):
    """What the runner runs: ``async run(bus, *, task_status)``, until cancelled."""

    async def run(self, bus: EventBus, *, task_status: TaskStatus[None] = ...) -> None:
        """Subscribe and consume (or run any loop); call ``task_status.started()`` once ready."""
        ...


def _service_name(service: Service, index: int) -> str:
    name = getattr(service, "name", None)
    return name if isinstance(name, str) and name else f"{type(service).__name__.lower()}-{index}"


class Runner:
    """Runs services side by side, each on its own bus, until a signal or cancellation.

    ``bus_factory`` builds a bus from settings (default ``EventBus(settings)``; tests pass one
    on a fakeredis server). With several services and a fixed ``consumer_name``, each service
    gets ``{consumer_name}-{service name}`` so their consumer names stay unique.
    """

    def __init__(
        self,
        services: Sequence[Service],
        settings: BusSettings | None = None,
        *,
        bus_factory: Callable[[BusSettings], EventBus] | None = None,
        signals: Sequence[signal.Signals] = DEFAULT_SIGNALS,
    ) -> None:
        self.services = tuple(services)
        self.settings = settings or BusSettings.from_env()
        self.bus_factory = bus_factory or EventBus
        self.signals = tuple(signals)
        self.buses: list[EventBus] = []
        self.stopped_by: signal.Signals | None = None
        #: True from the moment every service reported ready until the runner stops.
        self.started = False
        self._scope: anyio.CancelScope | None = None

    def _settings_for(self, service: Service, index: int) -> BusSettings:
        if self.settings.consumer_name and len(self.services) > 1:
            name = f"{self.settings.consumer_name}-{_service_name(service, index)}"
            return msgspec.structs.replace(self.settings, consumer_name=name)
        return self.settings

    def stop(self) -> None:
        """Stop every service gracefully (as SIGTERM does)."""
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every service (in order), signal ``task_status``, run until stopped; then drain.

        A service's error stops the others and is raised as itself (not wrapped in a group).
        """
        try:
            async with AsyncExitStack() as stack:
                for index, service in enumerate(self.services):
                    bus = self.bus_factory(self._settings_for(service, index))
                    self.buses.append(await stack.enter_async_context(bus))
                async with anyio.create_task_group() as tg:
                    self._scope = tg.cancel_scope
                    if self.signals:
                        await tg.start(self._watch_signals, tg.cancel_scope)
                    for index, (service, bus) in enumerate(zip(self.services, self.buses, strict=True)):
                        await tg.start(service.run, bus, name=_service_name(service, index))
                    log.info(
                        "running %d service(s): %s",
                        len(self.services),
                        ", ".join(_service_name(s, i) for i, s in enumerate(self.services)),
                    )
                    self.started = True
                    task_status.started()
        except BaseExceptionGroup as group:
            error = single_error(group)
            if error is not None:
                raise error from None
            raise
        finally:
            self._scope = None
            self.started = False
        log.info("all services stopped%s", f" ({self.stopped_by.name})" if self.stopped_by else "")

    async def _watch_signals(
        self, scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.open_signal_receiver(*self.signals) as received:
            task_status.started()
            async for signum in received:
                self.stopped_by = signal.Signals(signum)
                log.warning("%s received: stopping (in-flight handlers get their grace period)", signum.name)
                scope.cancel()
                return


async def run_services(
    services: Sequence[Service],
    settings: BusSettings | None = None,
    *,
    bus_factory: Callable[[BusSettings], EventBus] | None = None,
    signals: Sequence[signal.Signals] = DEFAULT_SIGNALS,
) -> None:
    """Run ``services`` until SIGTERM/SIGINT (see :class:`Runner`)."""
    await Runner(services, settings, bus_factory=bus_factory, signals=signals).run()
