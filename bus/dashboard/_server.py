"""``bus dashboard``: open a bus, serve the dashboard until cancelled."""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus

from .._bus import EventBus
from ..observability import serve_http
from ._app import dashboard_app
from ._settings import DashboardSettings

__all__ = ["serve_dashboard"]


async def serve_dashboard(
    bus: EventBus,
    settings: DashboardSettings,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard of ``bus`` on ``settings.host:port``; reports the bound port when listening."""
    await serve_http(dashboard_app(bus, settings), settings.host, settings.port, task_status=task_status)
