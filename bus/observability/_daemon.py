"""Readiness of a daemon run by :class:`bus.Runner`: Redis reachable from every service's bus,
every service started, no consume loop paused because Redis refuses writes (out of memory,
read-only replica, ...: see :mod:`bus.consume._health`), not draining (the runner's caller marks
the drain)."""

from __future__ import annotations

from .._errors import BusError
from .._redis import redis_errors
from .._runner import Runner
from ._metrics import BusMetrics
from ._probes import Health

__all__ = ["runner_health"]


def runner_health(runner: Runner, metrics: BusMetrics | None = None, *, check_timeout_s: float = 2.0) -> Health:
    """A :class:`Health` whose readiness checks ``runner``'s buses and services."""
    health = Health(metrics, check_timeout_s=check_timeout_s)

    async def redis() -> str | None:
        for bus in list(runner.buses):
            try:
                with redis_errors("PING"):
                    await bus.client.ping()
            except BusError as exc:
                return str(exc)
        return None

    async def services() -> str | None:
        return None if runner.started else "services are not running (starting, or stopped)"

    async def consumers() -> str | None:
        paused = []
        for bus in list(runner.buses):
            consumer = bus.consumer
            problem = consumer.health.status() if consumer is not None else None
            if problem is not None:
                paused.append(f"consumer {consumer.name if consumer else '?'} {problem}")
        return "; ".join(paused) or None

    health.add_check("redis", redis)
    health.add_check("services", services)
    health.add_check("consumers", consumers)
    return health
