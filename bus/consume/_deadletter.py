"""Dead letters: an entry that can never succeed is copied to ``{stream}:dead-letter`` and acked.

The copy holds the original fields byte for byte, then the reference's metadata
(``sourceStream``, ``sourceMessageId``, ``deliveries``, ``deadLetteredAt``) and ours
(``lastError``: the last failure, ``deadLetterReason``: why). The XADD and the XACK go in one
MULTI/EXEC (the consume side's ack flush), so an entry is never both lost and acked.

Reasons: ``max-deliveries`` (failed on its last allowed delivery, or found pending with that
many deliveries), ``invalid`` (missing ``event`` field, bad JSON, unknown event type, schema
violation: after one attempt) and ``rejected`` (a handler raised :class:`bus.Reject`).

Secrets: ``lastError`` is redacted (``_redact.py``: known secrets, URL passwords, credentials,
secret-named keys), and a value this process knows as a secret (the Redis password, registered
ones) is masked in the copied fields too; nothing else of the original is changed.

Two formats (a subscription picks one): :class:`PerTypeDeadLetters` above, and
:class:`WorkflowDeadLetters`, the reference's workflow DLQ entry (``original_message``: the flat
fields as JSON, ``error_message``, ``error_stack``, ``source_stream``, ``original_id``,
``moved_at``) in one configured stream, with the same redaction.

Bounds (:class:`DeadLetterCap`, ``BUS_DEAD_LETTER_MAXLEN``, default 10,000 per dead-letter
stream): a warning threshold, never a trim. Dead letters are the entries nobody has looked at
yet; dropping the oldest silently would lose exactly what an operator must see. Past the cap each
dead letter still lands, counts in ``dead_lettered_over_cap`` (stats and metric), and one warning
per stream says so (again only after the stream went back under the cap and past it once more);
``bus status`` flags the stream. Operators empty it with ``bus dlq replay``/``purge``. The
reference instead writes its dead letters with ``MAXLEN`` and so drops the oldest unseen ones.

The reference also keeps a set ``dead_lettered_messages:{stream}`` (3-day TTL) so that its
XADD-succeeded/XACK-failed retry does not copy an entry twice. We do not write it: our XADD and
XACK go in one MULTI/EXEC, so no entry of ours is ever dead-lettered yet still pending, and the
reference's dead-letter path, which only handles pending entries, never meets one (writing
members and renewing the TTL of a reference-owned set would buy nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec
import orjson

from schemas import utc_now_iso

from .._keys import Keys
from .._redact import redact_bytes, redact_text
from .._redis import redis_errors

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ._entry import Entry, Failure
    from ._stats import StatsBoard

__all__ = [
    "DeadLetter",
    "DeadLetterCap",
    "DeadLetterFormat",
    "DeadLetterReason",
    "PerTypeDeadLetters",
    "WorkflowDeadLetters",
    "dead_letter_fields",
    "read_dead_letters",
]

log = logging.getLogger("bus.consume")

DeadLetterReason = Literal["max-deliveries", "invalid", "rejected"]

_META = (
    b"sourceStream",
    b"sourceMessageId",
    b"deliveries",
    b"deadLetteredAt",
    b"lastError",
    b"deadLetterReason",
    b"consumerGroup",
)
#: Longest ``lastError`` kept (a handler's message could be huge).
MAX_ERROR_CHARS = 2000
#: Longest ``error_stack`` kept in a workflow DLQ entry (its tail: the innermost frames).
MAX_STACK_CHARS = 8000


class DeadLetterCap:
    """``BUS_DEAD_LETTER_MAXLEN`` as a warning threshold (see the module docstring): never trims."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        #: Dead-letter streams past the cap, with the length last seen.
        self.over: dict[str, int] = {}

    def seen(self, stream: str, length: int, added: list[Entry], board: StatsBoard) -> None:
        """A flush wrote ``added`` to ``stream``, which now holds ``length`` entries."""
        if length <= self.max_len:
            self.over.pop(stream, None)
            return
        past = min(len(added), length - self.max_len)
        board.stats.dead_lettered_over_cap += past
        if board.metrics is not None:
            for entry in added[len(added) - past :]:
                board.metrics.inc("dead_lettered_over_cap", board.labels(entry.delivery))
        if stream not in self.over:
            log.warning(
                "dead-letter stream %s holds %d entries, past BUS_DEAD_LETTER_MAXLEN (%d); nothing is trimmed "
                "(dead letters are never dropped unseen): look at them with `bus dlq list`, then replay or purge",
                stream,
                length,
                self.max_len,
            )
        self.over[stream] = length


def dead_letter_fields(
    fields: Mapping[bytes, bytes],
    *,
    stream: str,
    entry_id: str,
    deliveries: int,
    error: str,
    reason: DeadLetterReason,
) -> dict[bytes, bytes]:
    """The dead-letter entry: the original fields (known secrets masked), then the metadata fields."""
    out = {k: redact_bytes(v) if isinstance(v, bytes) else v for k, v in fields.items()}
    out[b"sourceStream"] = stream.encode()
    out[b"sourceMessageId"] = entry_id.encode()
    out[b"deliveries"] = str(deliveries).encode()
    out[b"deadLetteredAt"] = utc_now_iso().encode()
    out[b"lastError"] = redact_text(error)[:MAX_ERROR_CHARS].encode(errors="replace")
    out[b"deadLetterReason"] = reason.encode()
    return out


class DeadLetterFormat(Protocol):
    """Where a dead letter goes and what it holds."""

    def build(
        self, stream: str, entry_id: str, fields: Mapping[bytes, bytes], deliveries: int, failure: Failure
    ) -> tuple[str, dict[bytes, bytes]]:
        """The dead-letter stream and the entry's fields."""
        ...


class PerTypeDeadLetters(msgspec.Struct, frozen=True):
    """``{stream}:dead-letter`` with the original fields and the metadata fields above;
    ``group`` (when set) is recorded as ``consumerGroup``."""

    group: str = ""

    def build(
        self, stream: str, entry_id: str, fields: Mapping[bytes, bytes], deliveries: int, failure: Failure
    ) -> tuple[str, dict[bytes, bytes]]:
        """The per-type dead letter of one entry."""
        reason: Any = failure.reason
        out = dead_letter_fields(
            fields, stream=stream, entry_id=entry_id, deliveries=deliveries, error=failure.text, reason=reason
        )
        if self.group:
            out[b"consumerGroup"] = self.group.encode()
        return Keys.dead_letter(stream), out


class WorkflowDeadLetters(msgspec.Struct, frozen=True):
    """The reference's workflow DLQ entry in ``dlq`` (redacted as the per-type format is)."""

    dlq: str

    def build(
        self, stream: str, entry_id: str, fields: Mapping[bytes, bytes], deliveries: int, failure: Failure
    ) -> tuple[str, dict[bytes, bytes]]:
        """The workflow DLQ entry of one entry."""
        original = {k.decode(errors="replace"): redact_bytes(v).decode(errors="replace") for k, v in fields.items()}
        message = redact_text(failure.message or failure.text)[:MAX_ERROR_CHARS]
        return self.dlq, {
            b"original_message": orjson.dumps(original),
            b"error_message": message.encode(errors="replace"),
            b"error_stack": redact_text(failure.stack or message)[-MAX_STACK_CHARS:].encode(errors="replace"),
            b"source_stream": stream.encode(),
            b"original_id": entry_id.encode(),
            b"moved_at": utc_now_iso().encode(),
        }


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a dead-letter stream, parsed; ``fields`` are the original entry's fields."""

    stream: str
    entry_id: str
    source_stream: str
    source_message_id: str
    deliveries: int
    dead_lettered_at: str
    last_error: str
    reason: str
    fields: dict[bytes, bytes]

    @classmethod
    def from_entry(cls, stream: str, entry_id: Any, raw: Mapping[Any, Any]) -> DeadLetter:
        """Parse a dead-letter entry (bytes or str keys and values)."""
        norm = {_b(k): _b(v) for k, v in raw.items()}
        meta = {k: norm.get(k, b"").decode(errors="replace") for k in _META}
        return cls(
            stream=stream,
            entry_id=_b(entry_id).decode(),
            source_stream=meta[b"sourceStream"],
            source_message_id=meta[b"sourceMessageId"],
            deliveries=int(meta[b"deliveries"] or 0),
            dead_lettered_at=meta[b"deadLetteredAt"],
            last_error=meta[b"lastError"],
            reason=meta[b"deadLetterReason"],
            fields={k: v for k, v in norm.items() if k not in _META},
        )


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def read_dead_letters(client: aioredis.Redis, stream: str, *, count: int = 100) -> list[DeadLetter]:
    """The oldest ``count`` dead letters of a per-type stream (``stream`` is the source stream)."""
    key = Keys.dead_letter(stream)
    with redis_errors(f"XRANGE {key}"):
        entries: Any = await client.xrange(key, count=count)
    return [DeadLetter.from_entry(key, entry_id, fields) for entry_id, fields in entries]
