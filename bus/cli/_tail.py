"""``bus tail``: JSON lines over :func:`bus.ops.tail` (no consumer group; reconnects while following)."""

from __future__ import annotations

import argparse
import sys
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from .. import ops
from ._common import EXIT_OK, command, connection_parent, json_line, non_negative_int, positive_int

if TYPE_CHECKING:
    from .._bus import EventBus

__all__ = ["register"]


def _waiting(stream: str) -> None:
    print(f"bus tail: {stream} does not exist yet; waiting for it", file=sys.stderr)


def _reconnecting(error: BaseException, wait_s: float) -> None:
    print(f"bus tail: lost Redis ({error}); reconnecting in {wait_s:.1f}s", file=sys.stderr, flush=True)


async def _tail(bus: EventBus, args: argparse.Namespace) -> int:
    stream = ops.stream_of(bus.keys, args.stream, args.channel)  # an unknown type: exit 2 before connecting
    await bus.connect()
    entries = ops.tail(
        bus, stream, count=args.count, follow=args.follow, on_missing=_waiting, on_reconnect=_reconnecting
    )
    printed = 0
    async with aclosing(entries):
        async for entry in entries:
            json_line(entry.to_json(raw=args.raw))
            printed += 1
            if args.max is not None and printed >= args.max:
                break
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``tail``."""
    p = sub.add_parser(
        "tail",
        parents=[connection_parent()],
        help="print a stream's entries as JSON lines",
        description="Print the last entries of a stream as JSON lines (oldest first), then with --follow "
        "wait for new ones, reconnecting with backoff when Redis goes away. Reads with XREVRANGE/XREAD: no "
        "consumer group, nothing acked or claimed.",
    )
    p.add_argument("stream", metavar="STREAM|TYPE", help="a stream key (workflow:events:global) or an event type")
    p.add_argument("--channel", help="channel of TYPE (default global)")
    p.add_argument(
        "--count", type=non_negative_int, default=10, help="how many existing entries to print first (default 10)"
    )
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new entries until interrupted")
    p.add_argument("--max", type=positive_int, metavar="N", help="exit after printing N entries in all")
    p.add_argument("--raw", action="store_true", help="field values as stored strings, JSON not parsed")
    p.set_defaults(handler=command("tail", _tail, connect=False))
