"""What a publish prepares and what it returns: :class:`PreparedEvent`, :class:`PublishResult`,
:class:`PartialWriteError`, and :func:`results_or_raise`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec

from .._errors import BackendError, BusError
from ..wire import header
from ._script import EVAL_HEAD, EVALSHA_HEAD

__all__ = ["Outcome", "PartialWriteError", "PreparedEvent", "PublishResult", "TracedEvent", "results_or_raise"]

#: The best-effort publishers' failures are logged here (the logger name users configure).
log = logging.getLogger("bus.publish")


class PreparedEvent:
    """A validated, encoded publish: one envelope on one or more streams, ready to write.

    Built by :meth:`Preparer.prepare` (no I/O); written by :meth:`Publisher.write`.
    """

    __slots__ = ("command", "event_id", "event_ids", "event_type", "n_commands", "script", "size", "streams")

    def __init__(
        self,
        event_id: str,
        event_type: str,
        streams: tuple[str, ...],
        event_ids: tuple[str, ...] | None,
        command: bytes,
        n_commands: int,
        script: tuple[int, bytes] | None,
    ) -> None:
        self.event_id = event_id
        self.event_type = event_type
        #: Stream keys written, in order (the workflow stream first when present).
        self.streams = streams
        #: Envelope id per stream when the copies carry their own ids; None when all carry event_id.
        self.event_ids = event_ids
        #: RESP of the XADDs (empty for an idempotent publish, which uses ``script``).
        self.command = command
        self.n_commands = n_commands
        #: ``(argument count, packed arguments after the script/sha)`` of an idempotent publish.
        self.script = script
        self.size = len(command) if script is None else len(script[1])

    def __repr__(self) -> str:
        return f"PreparedEvent({self.event_type} {self.event_id} -> {', '.join(self.streams)})"

    @property
    def is_idempotent(self) -> bool:
        """True when written through the idempotency script."""
        return self.script is not None

    def packed(self, *, use_sha: bool) -> bytes:
        """The command bytes (EVALSHA or EVAL form for an idempotent publish)."""
        if self.script is None:
            return self.command
        count, tail = self.script
        return b"".join((header(count + 2), EVALSHA_HEAD if use_sha else EVAL_HEAD, tail))


class TracedEvent(PreparedEvent):
    """A prepared event with its open producer span (only when tracing is on); the writer ends it."""

    __slots__ = ("span",)
    span: Any  # an opentelemetry Span

    @classmethod
    def of(cls, prepared: PreparedEvent, span: Any) -> TracedEvent:
        """``prepared`` with ``span``."""
        traced = cls(
            prepared.event_id,
            prepared.event_type,
            prepared.streams,
            prepared.event_ids,
            prepared.command,
            prepared.n_commands,
            prepared.script,
        )
        traced.span = span
        return traced


class PublishResult(msgspec.Struct, frozen=True):
    """What a publish did: the event id and the stream entry id written per stream.

    ``duplicate`` is True when an idempotency key was seen within its window: nothing was
    written and ``event_id`` is the FIRST publish's id. ``error`` is set only by best-effort
    publishers (``strict=False``) that report a failure instead of raising.
    """

    event_id: str
    event_type: str
    entries: dict[str, str] = msgspec.field(default_factory=dict)
    duplicate: bool = False
    event_ids: dict[str, str] | None = None
    error: BusError | None = None

    @property
    def ok(self) -> bool:
        """True unless a best-effort publish failed."""
        return self.error is None

    @classmethod
    def from_error(cls, event_type: str, event_id: str, error: BusError) -> PublishResult:
        """A best-effort publish's failure as a result, logged at error level (never swallowed silently)."""
        log.error("publish of %s %s failed (best effort, not raised): %s", event_type, event_id, error)
        return cls(event_id, event_type, error=error)

    def event_id_of(self, stream: str) -> str:
        """The envelope id written on ``stream`` (each channel copy has its own unless the caller gave one)."""
        if self.event_ids is not None and stream in self.event_ids:
            return self.event_ids[stream]
        return self.event_id


class PartialWriteError(BackendError):
    """Redis ran the transaction but refused some commands at run time (e.g. WRONGTYPE).

    MULTI/EXEC has no rollback: ``written`` lists ``(event_id, stream, entry_id)`` that exist,
    ``failed`` lists ``(event_id, stream, error)`` that were refused.
    """

    def __init__(
        self,
        message: str,
        *,
        written: Sequence[tuple[str, str, str]] = (),
        failed: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        self.written = tuple(written)
        self.failed = tuple(failed)
        self.event_ids = tuple(dict.fromkeys(e for e, _, _ in (*self.failed, *self.written)))
        super().__init__(message)


Outcome = PublishResult | BusError


def results_or_raise(prepared: Sequence[PreparedEvent], outcomes: Sequence[Outcome]) -> list[PublishResult]:
    """The results when every event was written; else raise its error (one event) or a
    :class:`PartialWriteError` saying which events were written and which were not."""
    errors = [o for o in outcomes if isinstance(o, BusError)]
    if not errors:
        return outcomes  # type: ignore[return-value]
    if len(outcomes) == 1:
        raise errors[0]
    written: list[tuple[str, str, str]] = []
    failed: list[tuple[str, str, str]] = []
    for p, o in zip(prepared, outcomes, strict=True):
        if isinstance(o, PublishResult):
            written += [(o.event_id_of(s), s, e) for s, e in o.entries.items()]
        elif isinstance(o, PartialWriteError):
            written += o.written
            failed += o.failed
        else:
            failed += [(p.event_id, s, str(o)) for s in p.streams]
    raise PartialWriteError(
        f"{len(errors)} of {len(outcomes)} events were not written (the others were): {errors[0]}",
        written=written,
        failed=failed,
    ) from errors[0]
