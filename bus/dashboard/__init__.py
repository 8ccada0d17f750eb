"""The web dashboard (``bus dashboard``): streams and groups, a stream's entries, the dead-letter
browser with replay and purge behind a write token and CSRF, the event catalog, and ``/metrics``
with the stream and group gauges of the whole deployment (so it doubles as an exporter).

```python
from bus.dashboard import DashboardSettings, dashboard_app   # mount in your own ASGI app, or
await tg.start(serve_dashboard, bus, DashboardSettings(port=8765, write_token=token))
```
"""

from __future__ import annotations

from ._app import dashboard_app
from ._gauges import render_status_metrics
from ._server import serve_dashboard
from ._settings import DashboardSettings

__all__ = ["DashboardSettings", "dashboard_app", "render_status_metrics", "serve_dashboard"]
