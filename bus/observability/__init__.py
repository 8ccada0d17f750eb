"""Operability: Prometheus metrics, liveness and readiness probes, and the daemons' HTTP server.

```python
from bus.observability import BusMetrics, Health, probe_app, serve_http

metrics, health = BusMetrics(), Health()
async with anyio.create_task_group() as tg:
    port = await tg.start(serve_http, probe_app(health, metrics), "0.0.0.0", 9102)
```

:class:`Tracing` (OpenTelemetry spans) needs the ``otel`` extra; it is imported on first use, so
importing this package never imports ``opentelemetry``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._daemon import runner_health
from ._metrics import METRICS, BusMetrics, MetricSpec
from ._probes import Check, Health
from ._server import probe_app, serve_http

if TYPE_CHECKING:
    from ._tracing import Tracing

__all__ = [
    "METRICS",
    "BusMetrics",
    "Check",
    "Health",
    "MetricSpec",
    "Tracing",
    "probe_app",
    "runner_health",
    "serve_http",
]


def __getattr__(name: str) -> Any:
    if name == "Tracing":  # the otel extra: imported only when asked for
        from ._tracing import Tracing

        return Tracing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
