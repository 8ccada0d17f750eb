"""Operator commands: ``bus status``, ``bus dlq list|show|replay|purge``, ``bus publish``, ``bus tail``.

Exit codes (see :mod:`bus._cli_common`): 0 ok, 1 the operation failed (invalid payload, entry not
found, nothing to replay), 2 usage error (bad flags, unknown event type, ``--yes`` missing when
not interactive), 3 Redis unreachable, timed out or refusing the credentials.

- ``status`` reads :func:`bus._inspect.inspect_streams` for the per-type streams found by SCAN
  plus the (never prefixed) workflow stream, whose dead letters live in ``workflow:events:global:dlq``.
- ``dlq`` handles both dead-letter formats: ours/the reference's per-type one (the original
  fields plus metadata fields) and the workflow consumer's (``original_message`` JSON of the
  flat fields). ``replay`` writes the original fields back to the source stream and deletes the
  dead letter in ONE Lua script: it writes only if the dead letter still exists (two operators
  replaying at once replay it once), and deletes it only after the XADD succeeded (a refused
  XADD, e.g. WRONGTYPE, deletes nothing). Replays never trim the source stream.
- ``publish`` writes one channel's stream via :meth:`EventBus.publish` (``global`` also writes
  the workflow entry); ``--fanout`` applies the reference fan-out through
  ``publishers:prepare_event``, loaded by import string at run time (``bus`` never imports
  ``publishers`` statically). The payload is validated before connecting.
- ``tail`` reads with XREVRANGE/XREAD: no consumer group, nothing acked or claimed.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from schemas import REGISTRY

from ._cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    confirm,
    connection_parent,
    fmt_ms,
    json_line,
    non_negative_int,
    positive_int,
    run_with_bus,
    table,
    write_json,
)
from ._deadletter import DeadLetter
from ._errors import AuthenticationError, PayloadValidationError, PublishOutcomeUnknownError
from ._inspect import StreamStatus, discover_streams, inspect_streams
from ._keys import CHANNEL_GLOBAL, WORKFLOW_DLQ, WORKFLOW_STREAM, Keys
from ._redis import redis_errors, translate_error

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._bus import EventBus

__all__ = ["REPLAY_SCRIPT", "DeadLetterView", "register"]

_ENTRY_ID = re.compile(r"^\d+-\d+$")
_DL_SUFFIX = ":dead-letter"
#: Fields holding JSON documents, shown as objects by ``tail`` (unless ``--raw``).
_JSON_FIELDS = (b"event", b"payload_json", b"original_message")

#: KEYS[1] = dead-letter stream, KEYS[2] = source stream; ARGV[1] = dead-letter entry id,
#: ARGV[2..] = the original field/value pairs. Returns the new entry id, or nil when the dead
#: letter is gone (already replayed or purged). The XDEL runs only after the XADD succeeded.
REPLAY_SCRIPT = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
local t = redis.call('TYPE', KEYS[2])
t = t['ok'] or t
if t ~= 'stream' and t ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. t .. ', not a stream; nothing was replayed')
end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""
_REPLAY_CHUNK = 100


def _s(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _event_type(name: str) -> str:
    """A registry event type (any case); unknown names raise with the closest names (exit 2)."""
    return REGISTRY.get(name.upper() if name.upper() in REGISTRY else name).event_type


def _stream_of(keys: Keys, name: str, channel: str | None) -> str:
    """``STREAM|TYPE``: a stream key as is (it has a ``:``), else the type's stream on ``channel``."""
    if ":" in name:
        return name
    return keys.stream(channel or CHANNEL_GLOBAL, _event_type(name))


# ----------------------------------------------------------------------------- status


def _stream_json(s: StreamStatus, *, kind: str, dead_letter_stream: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, **msgspec.to_builtins(s), "dead_letter_stream": dead_letter_stream}
    return out


async def _status(bus: EventBus, args: argparse.Namespace) -> int:
    client, keys = bus.client, bus.keys
    wanted_type = _event_type(args.type) if args.type else None
    names = await discover_streams(client, keys, args.channel)
    if wanted_type:
        names = [n for n in names if (keys.parse_stream(n) or ("", ""))[1] == wanted_type]
    status = await inspect_streams(client, keys, names, group=args.group)
    rows: list[tuple[StreamStatus, str, str]] = [(s, "per-type", Keys.dead_letter(s.stream)) for s in status.streams]
    if not args.no_workflow and wanted_type is None and args.channel in (None, CHANNEL_GLOBAL):
        wf = await inspect_streams(client, keys, [WORKFLOW_STREAM], group=args.group)
        if wf.streams:
            with redis_errors(f"XLEN {WORKFLOW_DLQ}"):
                dl_len = int(await client.xlen(WORKFLOW_DLQ))
            fixed = msgspec.structs.replace(wf.streams[0], channel="", event_type="", dead_letter_length=dl_len)
            rows.append((fixed, "workflow", WORKFLOW_DLQ))
    streams = [s for s, _, _ in rows]
    totals = {
        "streams": len(streams),
        "groups": sum(len(s.groups) for s in streams),
        "length": sum(s.length for s in streams),
        "lag": sum(g.lag or 0 for s in streams for g in s.groups),
        "pending": sum(g.pending for s in streams for g in s.groups),
        "dead_letters": sum(s.dead_letter_length for s in streams),
        "trimmed_unread": sum(g.trimmed_unread or 0 for s in streams for g in s.groups),
    }
    if args.json:
        write_json(
            {
                "server_time_ms": status.server_time_ms,
                "totals": totals,
                "streams": [_stream_json(s, kind=k, dead_letter_stream=d) for s, k, d in rows],
            }
        )
        return EXIT_OK
    _print_status(streams)
    print(
        f"{totals['streams']} streams, {totals['groups']} groups, {totals['lag']} unread, {totals['pending']} pending, "
        f"{totals['dead_letters']} dead letters, {totals['trimmed_unread']} trimmed unread",
        file=sys.stderr,
    )
    return EXIT_OK


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def _print_status(streams: Sequence[StreamStatus]) -> None:
    header = (
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
    rows: list[tuple[str, ...]] = []
    consumers: list[tuple[str, ...]] = []
    for s in streams:
        base = (s.stream, str(s.length), str(s.dead_letter_length))
        if not s.groups:
            rows.append((*base, "-", "-", "-", "-", "-", "-", "0"))
        for g in s.groups:
            rows.append(
                (
                    *base,
                    g.name,
                    _opt(g.lag),
                    str(g.pending),
                    fmt_ms(g.oldest_pending_age_ms),
                    fmt_ms(g.oldest_pending_idle_ms),
                    _opt(g.trimmed_unread),
                    str(len(g.consumers)),
                )
            )
            for c in g.consumers:
                consumers.append((s.stream, g.name, c.name, str(c.pending), fmt_ms(c.idle_ms), fmt_ms(c.inactive_ms)))
    if not rows:
        print("no streams found")
        return
    print(table(rows, header))
    if consumers:
        print()
        print(table(consumers, ("STREAM", "GROUP", "CONSUMER", "PENDING", "IDLE", "INACTIVE")))


# ----------------------------------------------------------------------------- dead letters


class DeadLetterView(msgspec.Struct, frozen=True, kw_only=True):
    """One dead letter of either format, with the original fields ready to replay."""

    dead_letter_stream: str
    id: str
    format: str  # "per-type" | "workflow"
    source_stream: str
    source_id: str
    event_type: str
    event_id: str
    deliveries: int | None
    reason: str
    error: str
    dead_lettered_at: str
    #: The original entry's field/value pairs, in order (None when they cannot be recovered).
    original: tuple[tuple[bytes, bytes], ...] | None
    problem: str = ""

    @classmethod
    def parse(cls, dlq: str, entry_id: Any, raw: dict[Any, Any]) -> DeadLetterView:
        """Parse one entry of a dead-letter stream (per-type or workflow format)."""
        fields = {_b(k): _b(v) for k, v in raw.items()}
        if b"original_message" in fields:
            return cls._workflow(dlq, _s(entry_id), fields)
        dl = DeadLetter.from_entry(dlq, entry_id, fields)
        source = dlq[: -len(_DL_SUFFIX)] if dlq.endswith(_DL_SUFFIX) else dl.source_stream
        event_type, event_id = "", ""
        try:
            envelope = orjson.loads(dl.fields.get(b"event", b""))
            if isinstance(envelope, dict):
                event_type, event_id = str(envelope.get("eventType", "")), str(envelope.get("id", ""))
        except orjson.JSONDecodeError:
            pass
        if not event_type:
            event_type = source.rpartition(":")[2]
        return cls(
            dead_letter_stream=dlq,
            id=dl.entry_id,
            format="per-type",
            source_stream=source,
            source_id=dl.source_message_id,
            event_type=event_type,
            event_id=event_id,
            deliveries=dl.deliveries if fields.get(b"deliveries") else None,
            reason=dl.reason,
            error=dl.last_error,
            dead_lettered_at=dl.dead_lettered_at,
            original=tuple(dl.fields.items()) if dl.fields else None,
            problem="" if dl.fields else "the dead letter holds no original fields",
        )

    @classmethod
    def _workflow(cls, dlq: str, entry_id: str, fields: dict[bytes, bytes]) -> DeadLetterView:
        original: tuple[tuple[bytes, bytes], ...] | None = None
        problem = ""
        try:
            doc = orjson.loads(fields[b"original_message"])
        except orjson.JSONDecodeError as exc:
            doc, problem = None, f"original_message is not JSON: {exc}"
        if isinstance(doc, dict) and doc and all(isinstance(v, str) for v in doc.values()):
            original = tuple((k.encode(), v.encode()) for k, v in doc.items())
        elif not problem:
            problem = "original_message is not an object of string fields"
        flat = doc if isinstance(doc, dict) else {}
        return cls(
            dead_letter_stream=dlq,
            id=entry_id,
            format="workflow",
            source_stream=_s(fields.get(b"source_stream") or WORKFLOW_STREAM),
            source_id=_s(fields.get(b"original_id", b"")),
            event_type=str(flat.get("event_type", "")),
            event_id=str(flat.get("event_id", "")),
            deliveries=None,
            reason="failed",
            error=_s(fields.get(b"error_message", b"")),
            dead_lettered_at=_s(fields.get(b"moved_at", b"")),
            original=original,
            problem=problem,
        )

    def to_json(self, *, raw: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; the original fields as strings (JSON fields parsed unless ``raw``)."""
        out = {f: getattr(self, f) for f in self.__struct_fields__ if f != "original"}
        out["original"] = None if self.original is None else _fields_json(dict(self.original), raw=raw)
        return out


def _fields_json(fields: dict[bytes, bytes], *, raw: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if not raw and k in _JSON_FIELDS:
            try:
                out[_s(k)] = orjson.loads(v)
                continue
            except orjson.JSONDecodeError:
                pass
        out[_s(k)] = _s(v)
    return out


def _dead_letter_key(keys: Keys, name: str, channel: str | None) -> str:
    """``--stream`` / ``STREAM``: a dead-letter key as is, a source stream's or a type's dead-letter key."""
    if name.endswith((_DL_SUFFIX, ":dlq")):
        return name
    stream = _stream_of(keys, name, channel)
    return WORKFLOW_DLQ if stream == WORKFLOW_STREAM else Keys.dead_letter(stream)


async def _dead_letter_keys(bus: EventBus, args: argparse.Namespace, stream: str | None) -> list[str]:
    """The dead-letter streams in scope: one named stream, or every one found (plus the workflow DLQ)."""
    keys, client = bus.keys, bus.client
    if stream:
        return [_dead_letter_key(keys, stream, args.channel)]
    wanted_type = _event_type(args.type) if getattr(args, "type", None) else None
    pattern = keys.stream_pattern(args.channel or "*") + _DL_SUFFIX
    found: set[str] = set()
    with redis_errors("SCAN (dead-letter streams)"):
        async for key in client.scan_iter(match=pattern, count=1000, _type="stream"):
            name = _s(key)
            parsed = keys.parse_stream(name[: -len(_DL_SUFFIX)])
            if parsed is not None and (wanted_type is None or parsed[1] == wanted_type):
                found.add(name)
        if wanted_type is None and args.channel is None and await client.exists(WORKFLOW_DLQ):
            found.add(WORKFLOW_DLQ)
    return sorted(found)


async def _read_all(bus: EventBus, dlq: str, limit: int | None = None) -> list[DeadLetterView]:
    """Dead letters of one stream, oldest first (all of them, or the first ``limit``)."""
    out: list[DeadLetterView] = []
    start = "-"
    while limit is None or len(out) < limit:
        batch = 500 if limit is None else min(500, limit - len(out))
        with redis_errors(f"XRANGE {dlq}"):
            entries: Any = await bus.client.xrange(dlq, min=start, count=batch)
        out.extend(DeadLetterView.parse(dlq, eid, fields) for eid, fields in entries)
        if len(entries) < batch:
            break
        start = "(" + _s(entries[-1][0])
    return out


async def _find(bus: EventBus, args: argparse.Namespace, ids: Sequence[str]) -> list[DeadLetterView]:
    """The dead letters with these ids in the scope; not found or ambiguous raises CommandError."""
    bad = [i for i in ids if not _ENTRY_ID.match(i)]
    if bad:
        raise CommandError(
            f"not a stream entry id: {', '.join(bad)} (expected MS-SEQ, e.g. 1712345678901-0)", EXIT_USAGE
        )
    dlqs = await _dead_letter_keys(bus, args, args.stream)
    pipe = bus.client.pipeline(transaction=False)
    for dlq in dlqs:
        for entry_id in ids:
            pipe.xrange(dlq, min=entry_id, max=entry_id)
    with redis_errors("XRANGE (dead letters)"):
        replies: list[Any] = await pipe.execute() if dlqs else []
    hits: dict[str, list[DeadLetterView]] = {i: [] for i in ids}
    pos = 0
    for dlq in dlqs:
        for entry_id in ids:
            for eid, fields in replies[pos]:
                hits[entry_id].append(DeadLetterView.parse(dlq, eid, fields))
            pos += 1
    missing = [i for i, found in hits.items() if not found]
    if missing:
        where = dlqs[0] if len(dlqs) == 1 else f"{len(dlqs)} dead-letter streams"
        raise CommandError(f"no dead letter {', '.join(missing)} in {where}")
    ambiguous = [i for i, found in hits.items() if len(found) > 1]
    if ambiguous:
        streams = sorted({v.dead_letter_stream for i in ambiguous for v in hits[i]})
        raise CommandError(
            f"{', '.join(ambiguous)} exists in several dead-letter streams ({', '.join(streams)}); pass --stream",
            EXIT_USAGE,
        )
    return [hits[i][0] for i in dict.fromkeys(ids)]


async def _selected(bus: EventBus, args: argparse.Namespace) -> list[DeadLetterView]:
    """``ID...`` or ``--all`` (exactly one of them) in the scope."""
    if bool(args.ids) == bool(args.all):
        raise CommandError("give dead-letter IDs or --all (not both)", EXIT_USAGE)
    if args.ids:
        return await _find(bus, args, args.ids)
    out: list[DeadLetterView] = []
    for dlq in await _dead_letter_keys(bus, args, args.stream):
        out.extend(await _read_all(bus, dlq))
    return out


def _dl_row(v: DeadLetterView) -> tuple[str, ...]:
    error = v.error.replace("\n", " ")
    return (
        v.id,
        v.source_stream,
        v.event_type or "-",
        _opt(v.deliveries),
        v.reason or "-",
        v.dead_lettered_at or "-",
        error if len(error) <= 80 else error[:77] + "...",
    )


async def _dlq_list(bus: EventBus, args: argparse.Namespace) -> int:
    if args.stream and args.all:
        raise CommandError("give a STREAM or --all, not both", EXIT_USAGE)
    dlqs = await _dead_letter_keys(bus, args, args.stream)
    pipe = bus.client.pipeline(transaction=False)
    for dlq in dlqs:
        pipe.xlen(dlq)
    with redis_errors("XLEN (dead letters)"):
        lengths: list[Any] = await pipe.execute() if dlqs else []
    total = sum(int(n) for n in lengths)
    views: list[DeadLetterView] = []
    for dlq, n in zip(dlqs, lengths, strict=True):
        if int(n):
            views.extend(await _read_all(bus, dlq, args.count))
    if args.json:
        write_json([v.to_json() for v in views])
    elif views:
        header = ("ID", "SOURCE STREAM", "EVENT TYPE", "DELIVERIES", "REASON", "DEAD-LETTERED AT", "ERROR")
        print(table([_dl_row(v) for v in views], header))
    else:
        print("no dead letters")
    shown = f"{len(views)} of {total}" if len(views) < total else str(total)
    print(f"{shown} dead letters in {sum(1 for n in lengths if int(n))} streams", file=sys.stderr)
    return EXIT_OK


async def _dlq_show(bus: EventBus, args: argparse.Namespace) -> int:
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
        ("deliveries", _opt(view.deliveries)),
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
            value = _s(stored)
            if not args.raw and name in _JSON_FIELDS:
                try:
                    value = orjson.dumps(orjson.loads(stored), option=orjson.OPT_INDENT_2).decode()
                    value = value.replace("\n", "\n    ")
                except orjson.JSONDecodeError:
                    pass
            print(f"  {_s(name)}: {value}")
    return EXIT_OK


async def _replay(bus: EventBus, views: Sequence[DeadLetterView]) -> list[tuple[DeadLetterView, str, str]]:
    """Replay each dead letter: ``(view, status, detail)`` with status replayed/skipped/failed."""
    out: list[tuple[DeadLetterView, str, str]] = []
    todo = []
    for v in views:
        if v.original is None or not v.source_stream:
            out.append((v, "failed", v.problem or "the dead letter names no source stream"))
        else:
            todo.append(v)
    for start in range(0, len(todo), _REPLAY_CHUNK):
        chunk = todo[start : start + _REPLAY_CHUNK]
        pipe = bus.client.pipeline(transaction=False)
        for v in chunk:
            assert v.original is not None
            args = [v.id.encode()] + [part for pair in v.original for part in pair]
            pipe.eval(REPLAY_SCRIPT, 2, v.dead_letter_stream, v.source_stream, *args)
        with redis_errors("replay (EVAL)"):
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        for v, reply in zip(chunk, replies, strict=True):
            if isinstance(reply, Exception):
                failure = translate_error(reply, "replay")
                if isinstance(failure, AuthenticationError):
                    raise failure from reply  # NOAUTH/NOPERM: the whole command fails (exit 3)
                out.append((v, "failed", str(reply)))
            elif reply is None:
                out.append((v, "skipped", "no longer in the dead-letter stream (replayed or purged meanwhile)"))
            else:
                out.append((v, "replayed", _s(reply)))
    return out


async def _dlq_replay(bus: EventBus, args: argparse.Namespace) -> int:
    views = await _selected(bus, args)
    if not views:
        raise CommandError("nothing to replay: no dead letters in scope")
    results = await _replay(bus, views)
    replayed = sum(1 for _, status, _ in results if status == "replayed")
    if args.json:
        write_json(
            [
                {
                    "dead_letter_stream": v.dead_letter_stream,
                    "id": v.id,
                    "stream": v.source_stream,
                    "status": status,
                    **({"entry_id": detail} if status == "replayed" else {"detail": detail}),
                }
                for v, status, detail in results
            ]
        )
    for v, status, detail in results:
        if status == "replayed":
            if not args.json:
                print(f"replayed {v.id} -> {v.source_stream} {detail}")
        else:
            print(f"bus dlq replay: {status} {v.id} ({v.dead_letter_stream}): {detail}", file=sys.stderr)
    print(f"replayed {replayed} of {len(results)} dead letters", file=sys.stderr)
    return EXIT_OK if replayed == len(results) else EXIT_FAILED


async def _dlq_purge(bus: EventBus, args: argparse.Namespace) -> int:
    views = await _selected(bus, args)
    if not views:
        raise CommandError("nothing to purge: no dead letters in scope")
    by_stream: dict[str, list[str]] = {}
    for v in views:
        by_stream.setdefault(v.dead_letter_stream, []).append(v.id)
    where = next(iter(by_stream)) if len(by_stream) == 1 else f"{len(by_stream)} dead-letter streams"
    if not confirm(f"Delete {len(views)} dead letters from {where}?", assume_yes=args.yes):
        print("bus dlq purge: nothing deleted", file=sys.stderr)
        return EXIT_FAILED
    pipe = bus.client.pipeline(transaction=True)
    for dlq, ids in by_stream.items():
        pipe.xdel(dlq, *ids)
    with redis_errors("XDEL (dead letters)"):
        deleted = sum(int(n) for n in await pipe.execute())
    print(f"purged {deleted} dead letters from {where}")
    return EXIT_OK


# ----------------------------------------------------------------------------- publish


def _read_payload(spec: str) -> bytes:
    if spec == "-":
        return sys.stdin.buffer.read()
    if spec.startswith("@"):
        try:
            return Path(spec[1:]).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {spec[1:]}: {exc.strerror or exc}", EXIT_USAGE) from None
    return spec.encode()


async def _publish(bus: EventBus, args: argparse.Namespace) -> int:
    event_type = _event_type(args.event_type)
    try:
        payload = orjson.loads(_read_payload(args.payload))
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"{event_type}: invalid $.payload: not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise CommandError(f"{event_type}: invalid $.payload: Expected `object`, got `{type(payload).__name__}`")
    if args.tenant is not None:
        payload["tenantId"] = args.tenant
    options: dict[str, Any] = {
        "event_id": args.event_id,
        "force": args.force,
        "idempotency_key": args.idempotency_key,
    }
    try:
        if args.fanout:
            prepare_event = _load("publishers:prepare_event")
            prepared = prepare_event(bus, event_type, payload, channel=args.channel, **options)
        else:
            prepared = bus.prepare(event_type, payload, channel=args.channel or CHANNEL_GLOBAL, **options)
    except PayloadValidationError as exc:
        raise CommandError(f"{exc}; nothing was written") from None
    await bus.connect()
    try:
        (result,) = await bus.write((prepared,))
    except PublishOutcomeUnknownError as exc:
        raise CommandError(
            f"{exc}; the event may have been written: publish again with --event-id {prepared.event_id}"
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


def _load(target: str) -> Any:
    """``module:attr`` imported at run time (keeps ``bus`` free of static upward imports)."""
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise CommandError(f"--fanout needs {target} (the publishers package): {exc}", EXIT_USAGE) from None


# ----------------------------------------------------------------------------- tail


def _entry_json(stream: str, entry_id: Any, fields: dict[Any, Any], *, raw: bool) -> dict[str, Any]:
    return {
        "stream": stream,
        "id": _s(entry_id),
        "fields": _fields_json({_b(k): _b(v) for k, v in fields.items()}, raw=raw),
    }


async def _tail(bus: EventBus, args: argparse.Namespace) -> int:
    client = bus.client
    stream = _stream_of(bus.keys, args.stream, args.channel)
    with redis_errors(f"XREVRANGE {stream}"):
        exists = bool(await client.exists(stream))
        recent: Any = await client.xrevrange(stream, count=max(args.count, 1)) if exists else []
    if not exists and not args.follow:
        raise CommandError(f"no stream {stream}")
    if not exists:
        print(f"bus tail: {stream} does not exist yet; waiting for it", file=sys.stderr)
    printed = 0
    last = _s(recent[0][0]) if recent else "0-0"
    for entry_id, fields in reversed(recent[: args.count]):
        json_line(_entry_json(stream, entry_id, fields, raw=args.raw))
        printed += 1
        if args.max is not None and printed >= args.max:
            return EXIT_OK
    if not args.follow:
        return EXIT_OK
    block_ms = max(1, min(2000, int(bus.settings.socket_timeout_s * 500)))
    while args.max is None or printed < args.max:
        with redis_errors(f"XREAD {stream}"):
            reply: Any = await client.xread({stream: last}, count=100, block=block_ms)
        items = reply.items() if isinstance(reply, dict) else (reply or [])
        for _, entries in items:
            for entry_id, fields in entries:
                last = _s(entry_id)
                json_line(_entry_json(stream, entry_id, fields, raw=args.raw))
                printed += 1
                if args.max is not None and printed >= args.max:
                    return EXIT_OK
    return EXIT_OK


# ----------------------------------------------------------------------------- wiring


def _command(name: str, body: Any, *, connect: bool = True) -> Any:
    def handler(args: argparse.Namespace) -> int:
        return run_with_bus(name, args, lambda bus: body(bus, args), connect=connect)

    return handler


def register(sub: Any) -> None:
    """Add ``status``, ``dlq``, ``publish`` and ``tail`` to the CLI."""
    conn = connection_parent()

    status = sub.add_parser(
        "status",
        parents=[conn],
        help="streams, groups, lag, pending, consumers and dead letters",
        description="Per stream and consumer group: length, lag (entries not yet delivered), pending, age and "
        "idle time of the oldest pending entry, entries trimmed before the group read them, consumers with "
        "their idle time, and the dead-letter length. Streams: every per-type stream under the prefix (SCAN) "
        "plus the workflow stream. Exit 0; 3 when Redis cannot be reached.",
    )
    status.add_argument("--channel", help="only streams of this channel (e.g. global, emailservice::v7)")
    status.add_argument("--type", metavar="TYPE", help="only streams of this event type (e.g. TICKET_CREATED)")
    status.add_argument("--group", help="only this consumer group")
    status.add_argument("--no-workflow", action="store_true", help="leave out the workflow stream")
    status.add_argument("--json", action="store_true", help="print JSON (totals and every stream) instead of tables")
    status.set_defaults(handler=_command("status", _status))

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
    lst.set_defaults(handler=_command("dlq list", _dlq_list))

    show = dsub.add_parser(
        "show",
        parents=[conn, scope, scope_stream],
        help="show one dead letter",
        description="Show a dead letter: metadata, the error, and the original fields (JSON pretty-printed).",
    )
    show.add_argument("id", metavar="ID", help="dead-letter entry id (MS-SEQ)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--raw", action="store_true", help="original fields as stored strings, JSON not parsed")
    show.set_defaults(handler=_command("dlq show", _dlq_show))

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
    replay.set_defaults(handler=_command("dlq replay", _dlq_replay))

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
    purge.set_defaults(handler=_command("dlq purge", _dlq_purge))

    publish = sub.add_parser(
        "publish",
        parents=[conn],
        help="validate and publish one event",
        description="Validate and publish one event on one channel's stream (global, the default, also writes "
        "the workflow stream entry); --fanout applies the reference fan-out instead. Prints the event id and "
        "the entry id per stream. Exit 1 with the event type, path and rule when invalid (nothing written).",
    )
    publish.add_argument("event_type", metavar="TYPE", help="event type, e.g. TICKET_CREATED")
    publish.add_argument("--payload", required=True, metavar="JSON|@FILE|-", help="payload JSON, @file, or - (stdin)")
    publish.add_argument("--tenant", help="sets the payload's tenantId (overrides it)")
    publish.add_argument("--channel", help="channel (default global); with --fanout: global plus this channel")
    publish.add_argument("--event-id", help="envelope id (uuid; default a fresh one), e.g. to retry a publish")
    publish.add_argument(
        "--fanout",
        action="store_true",
        help="reference fan-out (global + internal-notifications/emailservice::v7 copies by type), "
        "via publishers:prepare_event",
    )
    publish.add_argument("--force", action="store_true", help="mark as a recovery re-publish (force=1)")
    publish.add_argument("--idempotency-key", help="write at most once per tenant and key within the window")
    publish.add_argument("--json", action="store_true", help="print JSON")
    publish.set_defaults(handler=_command("publish", _publish, connect=False))

    tail = sub.add_parser(
        "tail",
        parents=[conn],
        help="print a stream's entries as JSON lines",
        description="Print the last entries of a stream as JSON lines (oldest first), then with --follow "
        "wait for new ones. Reads with XREVRANGE/XREAD: no consumer group, nothing acked or claimed.",
    )
    tail.add_argument("stream", metavar="STREAM|TYPE", help="a stream key (workflow:events:global) or an event type")
    tail.add_argument("--channel", help="channel of TYPE (default global)")
    tail.add_argument(
        "--count", type=non_negative_int, default=10, help="how many existing entries to print first (default 10)"
    )
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new entries until interrupted")
    tail.add_argument("--max", type=positive_int, metavar="N", help="exit after printing N entries in all")
    tail.add_argument("--raw", action="store_true", help="field values as stored strings, JSON not parsed")
    tail.set_defaults(handler=_command("tail", _tail))
