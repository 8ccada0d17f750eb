"""``bus dashboard``: serve the web dashboard (:mod:`bus.dashboard`) until interrupted.

Read-only unless a write token is given (``BUS_DASHBOARD_TOKEN`` or ``--token-file``; never a
flag value, which ``ps`` would show); a host other than loopback needs one.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .._errors import ConfigurationError
from ..dashboard import DashboardSettings, serve_dashboard
from ._common import EXIT_OK, command, connection_parent

if TYPE_CHECKING:
    from .._bus import EventBus

__all__ = ["register"]

TOKEN_VARIABLE = "BUS_DASHBOARD_TOKEN"


def _settings(args: argparse.Namespace) -> DashboardSettings:
    token = os.environ.get(TOKEN_VARIABLE) or None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip() or None
        except OSError as exc:
            raise ConfigurationError("--token-file", f"cannot read {args.token_file}: {exc.strerror}") from None
    return DashboardSettings(host=args.host, port=args.port, write_token=token, refresh_s=args.refresh_s)


async def _dashboard(bus: EventBus, args: argparse.Namespace) -> int:
    settings = _settings(args)
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_dashboard, bus, settings)
        mode = "replay and purge need the write token" if settings.write_token else "read-only"
        print(f"bus dashboard: http://{settings.host}:{port}/ ({mode}); Ctrl-C or SIGTERM stops it", file=sys.stderr)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                tg.cancel_scope.cancel()
                break
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``dashboard``."""
    p = sub.add_parser(
        "dashboard",
        parents=[connection_parent()],
        help="the web dashboard: streams, groups, dead letters, catalog, /metrics",
        description="Serve the web dashboard: streams and groups (lag, pending, oldest pending age, dead "
        "letters), a stream's recent entries (secrets masked), the dead-letter browser (replay and purge need "
        f"the write token from {TOKEN_VARIABLE} or --token-file), the event catalog, and /metrics with the "
        "stream and group gauges of the whole deployment. Exit 0 on Ctrl-C or SIGTERM; 2 on a bad setting "
        "(a non-loopback --host without a token); 3 when Redis cannot be reached.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)")
    p.add_argument("--token-file", metavar="FILE", help=f"read the write token from FILE (else {TOKEN_VARIABLE})")
    p.add_argument("--refresh-s", type=float, default=5.0, help="seconds between live refreshes (default 5)")
    p.set_defaults(handler=command("dashboard", _dashboard))
