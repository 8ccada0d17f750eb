"""The small HTTP server of a daemon: ``/metrics``, ``/healthz``, ``/readyz``.

Starlette routes served by uvicorn on the caller's event loop, inside the caller's task group.
The socket is bound before ``task_status.started()``, so a probe that arrives right after start
waits in the listen backlog instead of being refused. A service that has its own web app mounts
:func:`probe_app` (or just ``metrics.registry``) there instead.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ._metrics import BusMetrics
from ._probes import Health

__all__ = ["probe_app", "serve_http"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the runner owns the signals (uvicorn would replace its handlers)


def probe_app(health: Health, metrics: BusMetrics) -> Starlette:
    """An ASGI app with ``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz`` (JSON)."""

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        checks = await health.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )


async def serve_http(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout_s: float = 2.0,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; reports the bound port through ``task_status`` (``port=0``: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = _Server(config)
    task_status.started(sock.getsockname()[1])
    try:
        await server.serve(sockets=[sock])
    finally:
        server.should_exit = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(shutdown_timeout_s):
            await server.shutdown()
        sock.close()
