"""``bus publish``: validate and publish one event (one channel, or the reference fan-out).

``--fanout`` takes the channels from the routing table (:func:`bus.routing.fanout_channels`, the
one the publishers use); the publish itself is :meth:`EventBus.prepare` and :meth:`EventBus.write`.
The payload is validated before connecting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .. import ops
from .._errors import PayloadValidationError, PublishOutcomeUnknownError
from .._keys import CHANNEL_GLOBAL
from ..routing import fanout_channels
from ._common import EXIT_OK, EXIT_USAGE, CommandError, command, connection_parent, write_json

if TYPE_CHECKING:
    from .._bus import EventBus

__all__ = ["register"]


def _read_payload(spec: str) -> bytes:
    if spec == "-":
        return sys.stdin.buffer.read()
    if spec.startswith("@"):
        try:
            return Path(spec[1:]).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {spec[1:]}: {exc.strerror or exc}", EXIT_USAGE) from None
    return spec.encode()


def _retry_advice(args: argparse.Namespace, event_id: str) -> str:
    """How to publish again after an unknown outcome without a duplicate."""
    if args.idempotency_key:
        return f"publish again with the same --idempotency-key {args.idempotency_key} (nothing is written twice)"
    if args.fanout:
        # One --event-id on every copy would make them share it; the first write left no marker to check.
        return "check with bus tail before publishing again, and pass --idempotency-key to make retries safe"
    return f"publish again with --event-id {event_id} (consumers dedupe on it)"


async def _publish(bus: EventBus, args: argparse.Namespace) -> int:
    event_type = ops.event_type_of(args.event_type)
    try:
        payload = orjson.loads(_read_payload(args.payload))
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"{event_type}: invalid $.payload: not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise CommandError(f"{event_type}: invalid $.payload: Expected `object`, got `{type(payload).__name__}`")
    if args.tenant is not None:
        payload["tenantId"] = args.tenant
    channels = fanout_channels(event_type, args.channel) if args.fanout else (args.channel or CHANNEL_GLOBAL)
    try:
        prepared = bus.prepare(
            event_type,
            payload,
            channel=channels,
            event_id=args.event_id,
            force=args.force,
            idempotency_key=args.idempotency_key,
        )
    except PayloadValidationError as exc:
        raise CommandError(f"{exc}; nothing was written") from None
    await bus.connect()
    try:
        (result,) = await bus.write((prepared,))
    except PublishOutcomeUnknownError as exc:
        raise CommandError(
            f"{exc}; the event may have been written: {_retry_advice(args, prepared.event_id)}"
        ) from None
    if args.json:
        write_json(
            {
                "event_id": result.event_id,
                "event_type": result.event_type,
                "entries": result.entries,
                "event_ids": {stream: result.event_id_of(stream) for stream in result.entries},
                "duplicate": result.duplicate,
            }
        )
        return EXIT_OK
    if result.duplicate:
        print(f"duplicate {event_type} {result.event_id}: idempotency key seen, nothing written")
        return EXIT_OK
    print(f"published {event_type} {result.event_id}")
    for stream, entry_id in result.entries.items():
        copy_id = result.event_id_of(stream)
        print(f"  {stream}  {entry_id}" + (f"  (id {copy_id})" if copy_id != result.event_id else ""))
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``publish``."""
    p = sub.add_parser(
        "publish",
        parents=[connection_parent()],
        help="validate and publish one event",
        description="Validate and publish one event on one channel's stream (global, the default, also writes "
        "the workflow stream entry); --fanout applies the reference fan-out instead. Prints the event id and "
        "the entry id per stream. Exit 1 with the event type, path and rule when invalid (nothing written).",
    )
    p.add_argument("event_type", metavar="TYPE", help="event type, e.g. TICKET_CREATED")
    p.add_argument("--payload", required=True, metavar="JSON|@FILE|-", help="payload JSON, @file, or - (stdin)")
    p.add_argument("--tenant", help="sets the payload's tenantId (overrides it)")
    p.add_argument("--channel", help="channel (default global); with --fanout: global plus this channel")
    p.add_argument("--event-id", help="envelope id (uuid; default a fresh one), e.g. to retry a publish")
    p.add_argument(
        "--fanout",
        action="store_true",
        help="reference fan-out (global + internal-notifications/emailservice::v7 copies by type), "
        "from the routing table (bus.routing)",
    )
    p.add_argument("--force", action="store_true", help="mark as a recovery re-publish (force=1)")
    p.add_argument("--idempotency-key", help="write at most once per tenant and key within the window")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=command("publish", _publish, connect=False))
