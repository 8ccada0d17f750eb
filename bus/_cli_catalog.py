"""``bus catalog ...`` and ``bus validate ...`` (placeholder list until the full catalog CLI lands)."""

from __future__ import annotations

import argparse
from typing import Any

from schemas import REGISTRY

__all__ = ["register"]


def _list(args: argparse.Namespace) -> int:
    for spec in REGISTRY:
        if args.category and spec.category.lower() != args.category.lower():
            continue
        if args.status and spec.status != args.status:
            continue
        print(f"{spec.event_type:<48} {spec.category:<18} {spec.status:<13} {spec.schema_ref}")
    return 0


def register(sub: Any) -> None:
    """Add ``catalog`` to the CLI."""
    catalog = sub.add_parser("catalog", help="browse the event catalog")
    csub = catalog.add_subparsers(dest="catalog_command", metavar="COMMAND")
    csub.required = True
    lst = csub.add_parser("list", help="list event types")
    lst.add_argument("--category")
    lst.add_argument("--status", choices=["emitted", "catalog_only"])
    lst.set_defaults(handler=_list)
