"""Reading dead letters of both formats: finding the streams, listing, looking ids up.

Two formats live side by side:

- per-type (ours and the reference's), ``{stream}:dead-letter``: the original entry's fields plus
  ``sourceStream``, ``sourceMessageId``, ``deliveries``, ``deadLetteredAt``, ``lastError``,
  ``deadLetterReason`` (parsed by :class:`bus.DeadLetter`);
- workflow (the reference's workflow consumer, and ours), ``workflow:events:global:dlq`` (with
  ``BUS_KEY_HASHTAG``: ``{tag}:workflow:events:global:dlq``, :attr:`bus.Keys.workflow_dlq`):
  ``original_message`` (JSON object of the flat entry's string fields), ``error_message``,
  ``error_stack``, ``source_stream``, ``original_id``, ``moved_at``.

:class:`DeadLetterView` reads either into one shape, with the original fields ready to replay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import orjson

from .._keys import WORKFLOW_STREAM
from .._redis import redis_errors
from ..consume import DeadLetter
from ._errors import AmbiguousDeadLetterError, DeadLetterNotFoundError, InvalidEntryIdError
from ._streams import DEAD_LETTER_SUFFIX, WORKFLOW_DLQ_SUFFIX, b, dead_letter_stream_of, s

if TYPE_CHECKING:
    from .._bus import EventBus

__all__ = [
    "JSON_FIELDS",
    "DeadLetterListing",
    "DeadLetterView",
    "dead_letter_streams",
    "fields_json",
    "find_dead_letters",
    "list_dead_letters",
    "read_dead_letter_stream",
]

_ENTRY_ID = re.compile(r"^\d+-\d+$")
#: Fields holding JSON documents (shown parsed unless raw): the envelope, a flat payload, a workflow original.
JSON_FIELDS = (b"event", b"payload_json", b"original_message")
#: The workflow dead-letter fields (written by the workflow consumer, ours and the reference's).
WF_ORIGINAL, WF_ERROR, WF_SOURCE, WF_ORIGINAL_ID, WF_MOVED_AT = (
    b"original_message",
    b"error_message",
    b"source_stream",
    b"original_id",
    b"moved_at",
)
_PAGE = 500


def _workflow_source(dead_letter_stream: str) -> str:
    """The workflow stream a workflow dead-letter stream belongs to (``{stream}:dlq``), for an entry
    that does not name it; the reference's workflow stream for a DLQ named otherwise."""
    if dead_letter_stream.endswith(WORKFLOW_DLQ_SUFFIX):
        return dead_letter_stream[: -len(WORKFLOW_DLQ_SUFFIX)]
    return WORKFLOW_STREAM


def fields_json(fields: Mapping[bytes, bytes], *, raw: bool = False) -> dict[str, Any]:
    """Entry fields as a JSON-ready dict of strings; the :data:`JSON_FIELDS` parsed unless ``raw``."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if not raw and k in JSON_FIELDS:
            try:
                out[s(k)] = orjson.loads(v)
                continue
            except orjson.JSONDecodeError:
                pass
        out[s(k)] = s(v)
    return out


class DeadLetterView(msgspec.Struct, frozen=True, kw_only=True):
    """One dead letter of either format, with the original fields ready to replay."""

    dead_letter_stream: str
    id: str
    format: Literal["per-type", "workflow"]
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
    #: Why the dead letter cannot be replayed ("" when it can).
    problem: str = ""

    @classmethod
    def parse(cls, dead_letter_stream: str, entry_id: Any, raw: Mapping[Any, Any]) -> DeadLetterView:
        """Parse one entry of a dead-letter stream (per-type or workflow format)."""
        fields = {b(k): b(v) for k, v in raw.items()}
        if WF_ORIGINAL in fields:
            return cls._workflow(dead_letter_stream, s(entry_id), fields)
        dl = DeadLetter.from_entry(dead_letter_stream, entry_id, fields)
        if dead_letter_stream.endswith(DEAD_LETTER_SUFFIX):
            source = dead_letter_stream[: -len(DEAD_LETTER_SUFFIX)]
        else:
            source = dl.source_stream
        event_type, event_id = "", ""
        try:
            envelope = orjson.loads(dl.fields.get(b"event", b""))
            if isinstance(envelope, dict):
                event_type, event_id = str(envelope.get("eventType", "")), str(envelope.get("id", ""))
        except orjson.JSONDecodeError:
            pass
        return cls(
            dead_letter_stream=dead_letter_stream,
            id=dl.entry_id,
            format="per-type",
            source_stream=source,
            source_id=dl.source_message_id,
            event_type=event_type or source.rpartition(":")[2],
            event_id=event_id,
            deliveries=dl.deliveries if fields.get(b"deliveries") else None,
            reason=dl.reason,
            error=dl.last_error,
            dead_lettered_at=dl.dead_lettered_at,
            original=tuple(dl.fields.items()) if dl.fields else None,
            problem="" if dl.fields else "the dead letter holds no original fields",
        )

    @classmethod
    def _workflow(cls, dead_letter_stream: str, entry_id: str, fields: dict[bytes, bytes]) -> DeadLetterView:
        original: tuple[tuple[bytes, bytes], ...] | None = None
        problem = ""
        try:
            doc = orjson.loads(fields[WF_ORIGINAL])
        except orjson.JSONDecodeError as exc:
            doc, problem = None, f"original_message is not JSON: {exc}"
        if isinstance(doc, dict) and doc and all(isinstance(v, str) for v in doc.values()):
            original = tuple((k.encode(), v.encode()) for k, v in doc.items())
        elif not problem:
            problem = "original_message is not an object of string fields"
        flat = doc if isinstance(doc, dict) else {}
        return cls(
            dead_letter_stream=dead_letter_stream,
            id=entry_id,
            format="workflow",
            source_stream=s(fields.get(WF_SOURCE) or _workflow_source(dead_letter_stream)),
            source_id=s(fields.get(WF_ORIGINAL_ID, b"")),
            event_type=str(flat.get("event_type", "")),
            event_id=str(flat.get("event_id", "")),
            deliveries=None,
            reason="failed",
            error=s(fields.get(WF_ERROR, b"")),
            dead_lettered_at=s(fields.get(WF_MOVED_AT, b"")),
            original=original,
            problem=problem,
        )

    def to_json(self, *, raw: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; the original fields as strings (JSON fields parsed unless ``raw``)."""
        out = {f: getattr(self, f) for f in self.__struct_fields__ if f != "original"}
        out["original"] = None if self.original is None else fields_json(dict(self.original), raw=raw)
        return out


class DeadLetterListing(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`list_dead_letters` found: the entries read, and how many each stream holds."""

    #: Dead-letter stream -> its length (every stream in scope, empty ones too).
    lengths: dict[str, int]
    entries: tuple[DeadLetterView, ...]

    @property
    def total(self) -> int:
        """Dead letters in scope (read or not)."""
        return sum(self.lengths.values())


async def dead_letter_streams(
    bus: EventBus,
    *,
    stream: str | None = None,
    channel: str | None = None,
    event_type: str | None = None,
) -> list[str]:
    """The dead-letter streams in scope, sorted.

    ``stream`` names one (a dead-letter key, a source stream key, or an event type on
    ``channel``); without it every per-type dead-letter stream under the prefix (SCAN), narrowed
    by ``channel`` and ``event_type``, plus ``workflow:events:global:dlq`` when it exists and
    neither narrows.
    """
    keys, client = bus.keys, bus.client
    if stream:
        return [dead_letter_stream_of(keys, stream, channel)]
    pattern = keys.stream_pattern(channel or "*") + DEAD_LETTER_SUFFIX
    found: set[str] = set()
    with redis_errors("SCAN (dead-letter streams)"):
        async for key in client.scan_iter(match=pattern, count=1000, _type="stream"):
            name = s(key)
            parsed = keys.parse_stream(name[: -len(DEAD_LETTER_SUFFIX)])
            if parsed is not None and (event_type is None or parsed[1] == event_type):
                found.add(name)
        if event_type is None and channel is None and await client.exists(keys.workflow_dlq):
            found.add(keys.workflow_dlq)
    return sorted(found)


async def read_dead_letter_stream(
    bus: EventBus, dead_letter_stream: str, limit: int | None = None
) -> list[DeadLetterView]:
    """The dead letters of one stream, oldest first: all of them, or the first ``limit``."""
    out: list[DeadLetterView] = []
    start = "-"
    while limit is None or len(out) < limit:
        page = _PAGE if limit is None else min(_PAGE, limit - len(out))
        with redis_errors(f"XRANGE {dead_letter_stream}"):
            entries: Any = await bus.client.xrange(dead_letter_stream, min=start, count=page)
        out.extend(DeadLetterView.parse(dead_letter_stream, eid, fields) for eid, fields in entries)
        if len(entries) < page:
            break
        start = "(" + s(entries[-1][0])
    return out


async def list_dead_letters(
    bus: EventBus,
    *,
    stream: str | None = None,
    channel: str | None = None,
    event_type: str | None = None,
    limit_per_stream: int | None = 100,
) -> DeadLetterListing:
    """The dead letters in scope (see :func:`dead_letter_streams`), oldest first per stream, at
    most ``limit_per_stream`` of each (None: all), with every stream's length."""
    streams = await dead_letter_streams(bus, stream=stream, channel=channel, event_type=event_type)
    pipe = bus.client.pipeline(transaction=False)
    for name in streams:
        pipe.xlen(name)
    with redis_errors("XLEN (dead letters)"):
        lengths: list[Any] = await pipe.execute() if streams else []
    entries: list[DeadLetterView] = []
    for name, n in zip(streams, lengths, strict=True):
        if int(n):
            entries.extend(await read_dead_letter_stream(bus, name, limit_per_stream))
    return DeadLetterListing(
        lengths={name: int(n) for name, n in zip(streams, lengths, strict=True)}, entries=tuple(entries)
    )


async def find_dead_letters(
    bus: EventBus,
    ids: Sequence[str],
    *,
    stream: str | None = None,
    channel: str | None = None,
    event_type: str | None = None,
) -> list[DeadLetterView]:
    """The dead letters with these entry ids, in the order given (repeats once).

    Looked up in ``stream``'s dead-letter stream, or in every one in scope (:func:`dead_letter_streams`).
    Raises :class:`InvalidEntryIdError`, :class:`DeadLetterNotFoundError` (any id missing) or
    :class:`AmbiguousDeadLetterError` (an id in several streams: name ``stream``).
    """
    ids = list(dict.fromkeys(ids))  # a repeated id is one lookup, not an ambiguity
    bad = [i for i in ids if not _ENTRY_ID.match(i)]
    if bad:
        raise InvalidEntryIdError(bad)
    streams = await dead_letter_streams(bus, stream=stream, channel=channel, event_type=event_type)
    pipe = bus.client.pipeline(transaction=False)
    for name in streams:
        for entry_id in ids:
            pipe.xrange(name, min=entry_id, max=entry_id)
    with redis_errors("XRANGE (dead letters)"):
        replies: list[Any] = await pipe.execute() if streams else []
    hits: dict[str, list[DeadLetterView]] = {i: [] for i in ids}
    pos = 0
    for name in streams:
        for entry_id in ids:
            for eid, fields in replies[pos]:
                hits[entry_id].append(DeadLetterView.parse(name, eid, fields))
            pos += 1
    missing = [i for i, found in hits.items() if not found]
    if missing:
        raise DeadLetterNotFoundError(missing, streams)
    ambiguous = [i for i, found in hits.items() if len(found) > 1]
    if ambiguous:
        raise AmbiguousDeadLetterError(ambiguous, sorted({v.dead_letter_stream for i in ambiguous for v in hits[i]}))
    return [hits[i][0] for i in ids]
