"""The ``bus`` command line, the top layer: thin commands over library calls.

One module per command group, each exposing ``register(subparsers)``; the registered handler
receives the parsed namespace and returns an exit code:

- ``_catalog``: ``catalog list|show|schema|export``, ``validate`` (``schemas``);
- ``_status``, ``_dlq``, ``_tail``: ``status``, ``dlq list|show|replay|purge``, ``tail`` (:mod:`bus.ops`);
- ``_publish``: ``publish`` (:class:`~bus.EventBus`, fan-out from :mod:`bus.routing`);
- ``_run``: ``run`` (:class:`~bus.Runner`; services from ``psa_event_bus.services`` or ``module:attr``);
- ``_acl``: ``acl`` (:mod:`bus._acl`); ``_bench``: ``bench`` (``benchmarks/run_all.py`` of a checkout);
- ``_dashboard``: ``dashboard`` (:mod:`bus.dashboard`).

Installed distributions add commands through the ``psa_event_bus.commands`` entry-point group
(``bus demo`` comes from ``subscribers.demo`` that way); see :mod:`bus.loader`. ``bus.cli:main``
is the console script and ``python -m bus`` runs the same.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..loader import COMMANDS_GROUP, ImportStringError, entry_point_names, load_entry_point, package_version
from . import _acl, _bench, _catalog, _dashboard, _dlq, _publish, _run, _status, _tail

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

# Modules that add sub-commands; each has ``register(subparsers) -> None``.
_COMMAND_MODULES = (_catalog, _bench, _status, _dlq, _publish, _tail, _run, _acl, _dashboard)


def _contributed(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands other distributions register (``psa_event_bus.commands``); a broken one is skipped
    with a note on stderr so that the rest of the CLI keeps working."""
    for name in entry_point_names(COMMANDS_GROUP):
        if name in sub.choices:
            continue
        try:
            register = load_entry_point(COMMANDS_GROUP, name)
            register(sub)
        except ImportStringError as exc:
            print(f"bus: command {name!r} is unavailable: {exc}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every built-in and contributed sub-command."""
    parser = argparse.ArgumentParser(
        prog="bus",
        description="psa-event-bus: an asyncio event bus on Redis Streams, wire-compatible with the PSA reference bus.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _COMMAND_MODULES:
        module.register(sub)
    _contributed(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 failure, 2 usage error, 3 Redis unreachable)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
