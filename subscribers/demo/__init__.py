"""``bus demo``: a burst of realistic events through the publishers, every subscriber in-process, a report.

``main(argv)`` is what ``bus demo`` runs (``python -m subscribers.demo`` too); see "The demo" in
docs/index.md. ``bus demo`` itself is contributed to the CLI by :func:`register_command`, declared in
the ``psa_event_bus.commands`` entry-point group (``bus`` never imports ``subscribers``). The
scenario is in ``_scenario.py``, the directory of people in ``directory.yaml``, the demo's
workflow triggers in ``_triggers.py``, the checks and printing in ``_report.py``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._main import DIRECTORY_FILE, DemoOptions, build_parser, main, run_demo
from ._report import DemoReport, Step, render_text

__all__ = [
    "DIRECTORY_FILE",
    "DemoOptions",
    "DemoReport",
    "Step",
    "build_parser",
    "main",
    "register_command",
    "render_text",
    "run_demo",
]


def _demo_command(args: argparse.Namespace) -> int:
    """``bus demo``'s handler: the parsed flags handed to :func:`main` as its own argv."""
    argv = ["--out", args.out, "--deadline-s", str(args.deadline_s)]
    for flag, value in (("--redis-url", args.redis_url), ("--prefix", args.prefix)):
        if value:
            argv += [flag, value]
    argv += [flag for flag, on in (("--fake", args.fake), ("--keep", args.keep), ("--json", args.json)) if on]
    argv += ["--verbose"] * args.verbose
    return main(argv)


def register_command(sub: Any) -> None:
    """Add ``bus demo`` to the ``bus`` CLI (the ``psa_event_bus.commands`` entry point ``demo``)."""
    p = sub.add_parser(
        "demo",
        parents=[build_parser()],
        add_help=False,
        help="publish a burst of events and watch email, notifications and workflow handle it",
        description=(
            "Publishes a realistic burst (tickets, a project task, an invoice, an appointment) through the "
            "publishers, runs the email, notification and workflow subscribers in-process until everything is "
            "processed, and prints what happened. Without REDIS_URL it runs on an embedded fakeredis server."
        ),
        epilog="exit codes: 0 every step worked, 1 a step failed (named), 2 usage, 3 Redis unreachable",
    )
    p.set_defaults(handler=_demo_command)
