"""Operability: Prometheus metrics, liveness and readiness probes, and the daemons' HTTP server.

```python
from bus.observability import BusMetrics, Health, probe_app, serve_http

metrics, health = BusMetrics(), Health()
async with anyio.create_task_group() as tg:
    port = await tg.start(serve_http, probe_app(health, metrics), "0.0.0.0", 9102)
```
"""

from __future__ import annotations

from ._daemon import runner_health
from ._metrics import METRICS, BusMetrics, MetricSpec
from ._probes import Check, Health
from ._server import probe_app, serve_http

__all__ = ["METRICS", "BusMetrics", "Check", "Health", "MetricSpec", "probe_app", "runner_health", "serve_http"]
