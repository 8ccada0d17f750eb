"""Errors of the operator calls, in the bus error tree (``BusError``)."""

from __future__ import annotations

from .._errors import BusError

__all__ = ["AmbiguousDeadLetterError", "DeadLetterNotFoundError", "InvalidEntryIdError", "StreamNotFoundError"]


class StreamNotFoundError(BusError, LookupError):
    """The stream does not exist (``tail`` without ``follow``)."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f"no stream {stream}")


class InvalidEntryIdError(BusError, ValueError):
    """A string that is not a stream entry id (``MS-SEQ``)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        super().__init__(f"not a stream entry id: {', '.join(ids)} (expected MS-SEQ, e.g. 1712345678901-0)")


class DeadLetterNotFoundError(BusError, LookupError):
    """No dead letter with these ids in the dead-letter streams searched."""

    def __init__(self, ids: list[str], streams: list[str]) -> None:
        self.ids, self.streams = ids, streams
        where = streams[0] if len(streams) == 1 else f"{len(streams)} dead-letter streams"
        super().__init__(f"no dead letter {', '.join(ids)} in {where}")


class AmbiguousDeadLetterError(BusError, ValueError):
    """An id found in several dead-letter streams: name the stream."""

    def __init__(self, ids: list[str], streams: list[str]) -> None:
        self.ids, self.streams = ids, streams
        super().__init__(
            f"{', '.join(ids)} exists in several dead-letter streams ({', '.join(streams)}); "
            "name one (stream=... or bus dlq --stream)"
        )
