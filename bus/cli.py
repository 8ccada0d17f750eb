"""The ``bus`` command line: ``bus catalog ...``, ``bus validate ...`` and, as issues land, more.

Each command group lives in its own ``_cli_*`` module exposing ``register(subparsers)``; the
registered handler receives the parsed namespace and returns an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import _cli_acl, _cli_bench, _cli_catalog, _cli_ops, _cli_run

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

# Modules that add sub-commands; each has ``register(subparsers) -> None``.
_COMMAND_MODULES = (_cli_catalog, _cli_bench, _cli_ops, _cli_run, _cli_acl)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="bus",
        description="psa-event-bus: an asyncio event bus on Redis Streams, wire-compatible with the PSA reference bus.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _COMMAND_MODULES:
        module.register(sub)
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
