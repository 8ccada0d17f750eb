"""``bus status``: tables (or JSON) over :func:`bus.ops.status`.

Streams that hold nothing (no entries, no dead letters, nothing pending) are left out unless
``--all``; the totals line says how many. Warnings follow it: dead-letter streams past
``BUS_DEAD_LETTER_MAXLEN`` (``!`` in the DLQ column) and a Redis that refuses writes (every
consumer on it is paused until it recovers).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from .. import ops
from ._common import EXIT_OK, command, connection_parent, fmt_ms, opt, table, write_json

if TYPE_CHECKING:
    from .._bus import EventBus

__all__ = ["register"]

_HEADER = (
    "STREAM",
    "LENGTH",
    "DLQ",
    "GROUP",
    "LAG",
    "PENDING",
    "OLDEST PENDING",
    "OLDEST IDLE",
    "TRIMMED",
    "CONSUMERS",
)


def _row_json(row: ops.StatusRow) -> dict[str, Any]:
    return {"kind": row.kind, **msgspec.to_builtins(row.stream), "dead_letter_stream": row.dead_letter_stream}


def _print_tables(streams: Sequence[ops.StreamStatus], cap: int = 0) -> None:
    rows: list[tuple[str, ...]] = []
    consumers: list[tuple[str, ...]] = []
    for s in streams:
        over = "!" if cap and s.dead_letter_length > cap else ""
        base = (s.stream, str(s.length), f"{s.dead_letter_length}{over}")
        if not s.groups:
            rows.append((*base, "-", "-", "-", "-", "-", "-", "0"))
        for g in s.groups:
            rows.append(
                (
                    *base,
                    g.name,
                    opt(g.lag),
                    str(g.pending),
                    fmt_ms(g.oldest_pending_age_ms),
                    fmt_ms(g.oldest_pending_idle_ms),
                    opt(g.trimmed_unread),
                    str(len(g.consumers)),
                )
            )
            for c in g.consumers:
                consumers.append((s.stream, g.name, c.name, str(c.pending), fmt_ms(c.idle_ms), fmt_ms(c.inactive_ms)))
    if not rows:
        print("no streams found")
        return
    print(table(rows, _HEADER))
    if consumers:
        print()
        print(table(consumers, ("STREAM", "GROUP", "CONSUMER", "PENDING", "IDLE", "INACTIVE")))


async def _status(bus: EventBus, args: argparse.Namespace) -> int:
    report = await ops.status(
        bus,
        channel=args.channel,
        event_type=ops.event_type_of(args.type) if args.type else None,
        group=args.group,
        include_workflow=not args.no_workflow,
        include_empty=args.all,
    )
    totals = report.totals
    if args.json:
        write_json(
            {
                "server_time_ms": report.server_time_ms,
                "totals": msgspec.to_builtins(totals),
                "hidden_empty_streams": report.hidden_empty,
                "dead_letter_cap": report.dead_letter_cap,
                "dead_letter_streams_over_cap": list(report.over_cap),
                "writes_refused": report.writes_refused,
                "streams": [_row_json(r) for r in report.rows],
            }
        )
        return EXIT_OK
    _print_tables([r.stream for r in report.rows], report.dead_letter_cap)
    hidden = f", {report.hidden_empty} empty streams hidden (--all shows them)" if report.hidden_empty else ""
    print(
        f"{totals.streams} streams, {totals.groups} groups, {totals.lag} unread, {totals.pending} pending, "
        f"{totals.dead_letters} dead letters, {totals.trimmed_unread} trimmed unread{hidden}",
        file=sys.stderr,
    )
    for stream in report.over_cap:
        print(
            f"warning: {stream} is past BUS_DEAD_LETTER_MAXLEN ({report.dead_letter_cap}); nothing is trimmed: "
            "look at it with `bus dlq list`, then replay or purge",
            file=sys.stderr,
        )
    if report.writes_refused:
        print(
            f"warning: Redis refuses writes, so every consumer on it is paused (no reads, no claims) until it "
            f"recovers: {report.writes_refused}",
            file=sys.stderr,
        )
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``status``."""
    p = sub.add_parser(
        "status",
        parents=[connection_parent()],
        help="streams, groups, lag, pending, consumers and dead letters",
        description="Per stream and consumer group: length, lag (entries not yet delivered), pending, age and "
        "idle time of the oldest pending entry, entries trimmed before the group read them, consumers with "
        "their idle time, and the dead-letter length. Streams: every per-type stream under the prefix (SCAN) "
        "plus the workflow stream; streams holding nothing (no entries, no dead letters, nothing pending) are "
        "left out unless --all. Exit 0; 3 when Redis cannot be reached.",
    )
    p.add_argument("--channel", help="only streams of this channel (e.g. global, emailservice::v7)")
    p.add_argument("--type", metavar="TYPE", help="only streams of this event type (e.g. TICKET_CREATED)")
    p.add_argument("--group", help="only this consumer group")
    p.add_argument("--no-workflow", action="store_true", help="leave out the workflow stream")
    p.add_argument("--all", action="store_true", help="also streams that hold nothing (e.g. only an empty group)")
    p.add_argument("--json", action="store_true", help="print JSON (totals and every stream) instead of tables")
    p.set_defaults(handler=command("status", _status))
