"""``bus dlq list|show|replay|purge``: printing over the :mod:`bus.ops` dead-letter calls.

Both dead-letter formats (per-type and workflow) are read by :class:`bus.ops.DeadLetterView`;
replay and purge are :func:`bus.ops.replay_dead_letters` / :func:`bus.ops.purge_dead_letters`.
Exit codes: 0 ok, 1 nothing in scope, an id not found, an entry not replayed, or a purge
declined; 2 usage (ids and ``--all`` together or neither, a malformed or ambiguous id, no
``--yes`` when not interactive); 3 Redis unreachable or refusing.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import orjson

from .. import ops
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    command,
    confirm,
    connection_parent,
    opt,
    positive_int,
    table,
    write_json,
)

if TYPE_CHECKING:
    from .._bus import EventBus

__all__ = ["register"]


def _type(args: argparse.Namespace) -> str | None:
    name: str | None = getattr(args, "type", None)
    return ops.event_type_of(name) if name else None


async def _find(bus: EventBus, args: argparse.Namespace, ids: list[str]) -> list[ops.DeadLetterView]:
    return await ops.find_dead_letters(bus, ids, stream=args.stream, channel=args.channel, event_type=_type(args))


async def _selected(bus: EventBus, args: argparse.Namespace) -> list[ops.DeadLetterView]:
    """``ID...`` or ``--all`` (exactly one of them) in the scope."""
    if bool(args.ids) == bool(args.all):
        raise CommandError("give dead-letter IDs or --all (not both)", EXIT_USAGE)
    if args.ids:
        return await _find(bus, args, args.ids)
    listing = await ops.list_dead_letters(
        bus, stream=args.stream, channel=args.channel, event_type=_type(args), limit_per_stream=None
    )
    return list(listing.entries)


def _dl_row(v: ops.DeadLetterView) -> tuple[str, ...]:
    error = v.error.replace("\n", " ")
    return (
        v.id,
        v.source_stream,
        v.event_type or "-",
        opt(v.deliveries),
        v.reason or "-",
        v.dead_lettered_at or "-",
        error if len(error) <= 80 else error[:77] + "...",
    )


async def _list(bus: EventBus, args: argparse.Namespace) -> int:
    if args.stream and args.all:
        raise CommandError("give a STREAM or --all, not both", EXIT_USAGE)
    listing = await ops.list_dead_letters(
        bus, stream=args.stream, channel=args.channel, event_type=_type(args), limit_per_stream=args.count
    )
    views = listing.entries
    if args.json:
        write_json([v.to_json() for v in views])
    elif views:
        header = ("ID", "SOURCE STREAM", "EVENT TYPE", "DELIVERIES", "REASON", "DEAD-LETTERED AT", "ERROR")
        print(table([_dl_row(v) for v in views], header))
    else:
        print("no dead letters")
    total = listing.total
    shown = f"{len(views)} of {total}" if len(views) < total else str(total)
    print(f"{shown} dead letters in {sum(1 for n in listing.lengths.values() if n)} streams", file=sys.stderr)
    return EXIT_OK


async def _show(bus: EventBus, args: argparse.Namespace) -> int:
    (view,) = await _find(bus, args, [args.id])
    if args.json:
        write_json(view.to_json(raw=args.raw))
        return EXIT_OK
    facts = [
        ("dead-letter stream", view.dead_letter_stream),
        ("format", view.format),
        ("source stream", view.source_stream),
        ("source entry id", view.source_id or "-"),
        ("event type", view.event_type or "-"),
        ("event id", view.event_id or "-"),
        ("deliveries", opt(view.deliveries)),
        ("reason", view.reason or "-"),
        ("dead-lettered at", view.dead_lettered_at or "-"),
        ("error", view.error or "-"),
    ]
    if view.problem:
        facts.append(("cannot replay", view.problem))
    print(f"dead letter {view.id}")
    width = max(len(k) for k, _ in facts)
    for k, v in facts:
        print(f"  {k.ljust(width)}  {v}")
    if view.original is not None:
        print("original fields:")
        for name, stored in view.original:
            value = stored.decode(errors="replace")
            if not args.raw and name in ops.JSON_FIELDS:
                try:
                    value = orjson.dumps(orjson.loads(stored), option=orjson.OPT_INDENT_2).decode()
                    value = value.replace("\n", "\n    ")
                except orjson.JSONDecodeError:
                    pass
            print(f"  {name.decode(errors='replace')}: {value}")
    return EXIT_OK


async def _replay(bus: EventBus, args: argparse.Namespace) -> int:
    views = await _selected(bus, args)
    if not views:
        raise CommandError("nothing to replay: no dead letters in scope")
    outcomes = await ops.replay_dead_letters(bus, views)
    if args.json:
        write_json(
            [
                {
                    "dead_letter_stream": o.dead_letter.dead_letter_stream,
                    "id": o.dead_letter.id,
                    "stream": o.dead_letter.source_stream,
                    "status": o.status,
                    **({"entry_id": o.entry_id} if o.ok else {"detail": o.detail}),
                }
                for o in outcomes
            ]
        )
    for o in outcomes:
        v = o.dead_letter
        if o.ok:
            if not args.json:
                print(f"replayed {v.id} -> {v.source_stream} {o.entry_id}")
        else:
            print(f"bus dlq replay: {o.status} {v.id} ({v.dead_letter_stream}): {o.detail}", file=sys.stderr)
    replayed = sum(1 for o in outcomes if o.ok)
    print(f"replayed {replayed} of {len(outcomes)} dead letters", file=sys.stderr)
    return EXIT_OK if replayed == len(outcomes) else EXIT_FAILED


async def _purge(bus: EventBus, args: argparse.Namespace) -> int:
    views = await _selected(bus, args)
    if not views:
        raise CommandError("nothing to purge: no dead letters in scope")
    streams = list(dict.fromkeys(v.dead_letter_stream for v in views))
    where = streams[0] if len(streams) == 1 else f"{len(streams)} dead-letter streams"
    if not confirm(f"Delete {len(views)} dead letters from {where}?", assume_yes=args.yes):
        print("bus dlq purge: nothing deleted", file=sys.stderr)
        return EXIT_FAILED
    deleted = await ops.purge_dead_letters(bus, views)
    print(f"purged {deleted} dead letters from {where}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``dlq list|show|replay|purge``."""
    conn = connection_parent()
    dlq = sub.add_parser(
        "dlq",
        help="list, show, replay or purge dead letters",
        description="Dead letters of the per-type streams ({stream}:dead-letter) and of the workflow stream "
        "(workflow:events:global:dlq). IDs are dead-letter entry ids; --stream narrows the search.",
    )
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND")
    dsub.required = True
    scope = argparse.ArgumentParser(add_help=False)
    scope.add_argument(
        "--channel", help="channel of a TYPE given as stream (default global); with --all, only this channel"
    )
    scope_stream = argparse.ArgumentParser(add_help=False)
    scope_stream.add_argument(
        "--stream",
        metavar="STREAM|TYPE",
        help="only this dead-letter stream: a dead-letter key, a source stream key, or an event type",
    )

    lst = dsub.add_parser(
        "list",
        parents=[conn, scope],
        help="list dead letters",
        description="List dead letters (oldest first): id, source stream, event type, deliveries, reason, "
        "dead-lettered at, error. Without STREAM: every dead-letter stream (--all).",
    )
    lst.add_argument("stream", nargs="?", metavar="STREAM|TYPE", help="a dead-letter key, source stream or type")
    lst.add_argument("--all", action="store_true", help="every dead-letter stream (the default)")
    lst.add_argument("--type", metavar="TYPE", help="with --all: only dead letters of this event type's streams")
    lst.add_argument("--count", type=positive_int, default=100, help="at most this many per stream (default 100)")
    lst.add_argument("--json", action="store_true", help="print a JSON array (with the original fields)")
    lst.set_defaults(handler=command("dlq list", _list))

    show = dsub.add_parser(
        "show",
        parents=[conn, scope, scope_stream],
        help="show one dead letter",
        description="Show a dead letter: metadata, the error, and the original fields (JSON pretty-printed).",
    )
    show.add_argument("id", metavar="ID", help="dead-letter entry id (MS-SEQ)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--raw", action="store_true", help="original fields as stored strings, JSON not parsed")
    show.set_defaults(handler=command("dlq show", _show))

    replay = dsub.add_parser(
        "replay",
        parents=[conn, scope, scope_stream],
        help="re-publish dead letters to their source stream",
        description="Write each dead letter's original fields, byte for byte, to its source stream as a new "
        "entry and delete the dead letter, atomically (one Lua script per entry: nothing is deleted unless the "
        "write succeeded; an entry already replayed is skipped). Exit 1 when nothing was in scope or some "
        "entry could not be replayed.",
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="dead-letter entry ids")
    replay.add_argument("--all", action="store_true", help="every dead letter in scope")
    replay.add_argument("--type", metavar="TYPE", help="with --all: only this event type's streams")
    replay.add_argument("--json", action="store_true", help="print a JSON array of outcomes")
    replay.set_defaults(handler=command("dlq replay", _replay))

    purge = dsub.add_parser(
        "purge",
        parents=[conn, scope, scope_stream],
        help="delete dead letters",
        description="Delete dead letters for good. Asks for confirmation on a terminal; otherwise --yes is "
        "required (exit 2 without it).",
    )
    purge.add_argument("ids", nargs="*", metavar="ID", help="dead-letter entry ids")
    purge.add_argument("--all", action="store_true", help="every dead letter in scope")
    purge.add_argument("--type", metavar="TYPE", help="with --all: only this event type's streams")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=command("dlq purge", _purge))
