"""Liveness and readiness, as Kubernetes probes ask them.

``/healthz``: the event loop answers (a blocked loop cannot serve the request, so the probe times
out). ``/readyz``: every readiness check passes (Redis reachable, groups exist, the consume loop
running) and the process is not draining. A check is an async callable returning ``None`` when
fine or a sentence saying what is wrong; each runs under a time limit, so a hung Redis reads as
"not ready", never as a hung probe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from ._metrics import BusMetrics

__all__ = ["Check", "Health"]

#: ``async () -> None | problem``.
Check = Callable[[], Awaitable[str | None]]


class Health:
    """Readiness checks and the draining flag of one process."""

    def __init__(self, metrics: BusMetrics | None = None, *, check_timeout_s: float = 2.0) -> None:
        self.metrics = metrics
        self.check_timeout_s = check_timeout_s
        self._checks: dict[str, Check] = {}
        self._draining = False

    def add_check(self, name: str, check: Check) -> None:
        """Make ``check`` part of readiness under ``name`` (replacing one of the same name)."""
        self._checks[name] = check

    def remove_check(self, name: str) -> None:
        """Drop a check (e.g. when the service that added it stops)."""
        self._checks.pop(name, None)

    @property
    def draining(self) -> bool:
        """True once a graceful shutdown began: not ready from then on."""
        return self._draining

    def set_draining(self, draining: bool = True) -> None:
        """Mark the process as draining (or not)."""
        self._draining = draining
        if self.metrics is not None:
            self.metrics.set("draining", 1.0 if draining else 0.0)

    async def readiness(self) -> dict[str, str]:
        """``{check: "ok" | problem}``, checks run concurrently, each within ``check_timeout_s``."""
        results: dict[str, str] = {}

        async def run(name: str, check: Check) -> None:
            try:
                with anyio.fail_after(self.check_timeout_s):
                    problem = await check()
            except TimeoutError:
                problem = f"no answer within {self.check_timeout_s:g} s"
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            results[name] = "ok" if problem is None else problem

        async with anyio.create_task_group() as tg:
            for name, check in list(self._checks.items()):
                tg.start_soon(run, name, check)
        if self._draining:
            results["draining"] = "shutting down"
        ready = all(v == "ok" for v in results.values())
        if self.metrics is not None:
            self.metrics.set("ready", 1.0 if ready else 0.0)
        return dict(sorted(results.items()))

    async def is_ready(self) -> bool:
        """True when every check passes and the process is not draining."""
        return all(v == "ok" for v in (await self.readiness()).values())
