"""Operator actions as library calls: status, tail, and dead-letter list/show/replay/purge.

The ``bus status|tail|dlq`` commands are thin over these; a service or a script can call them
on an open :class:`~bus.EventBus`::

    from bus import EventBus
    from bus import ops

    async with EventBus.from_env() as bus:
        report = await ops.status(bus, include_empty=False)
        listing = await ops.list_dead_letters(bus, event_type="TICKET_CREATED")
        outcomes = await ops.replay_dead_letters(bus, listing.entries)

Every call raises the bus's errors (:class:`~bus.BusError` and below): backend errors when
Redis is unreachable or refuses, and the lookup errors here (:class:`StreamNotFoundError`,
:class:`DeadLetterNotFoundError`, :class:`AmbiguousDeadLetterError`, :class:`InvalidEntryIdError`).
Unknown event type names raise ``schemas.UnknownEventTypeError`` with the closest names.
"""

from __future__ import annotations

from .._inspect import BusStatus, ConsumerStatus, GroupStatus, StreamStatus
from ._deadletters import (
    JSON_FIELDS,
    DeadLetterListing,
    DeadLetterView,
    dead_letter_streams,
    fields_json,
    find_dead_letters,
    list_dead_letters,
    read_dead_letter_stream,
)
from ._errors import AmbiguousDeadLetterError, DeadLetterNotFoundError, InvalidEntryIdError, StreamNotFoundError
from ._replay import REPLAY_SCRIPT, ReplayOutcome, purge_dead_letters, replay_dead_letters
from ._status import StatusReport, StatusRow, StatusTotals, is_empty, status
from ._streams import dead_letter_stream_of, event_type_of, stream_of
from ._tail import Reconnect, StreamEntry, tail

__all__ = [
    "JSON_FIELDS",
    "REPLAY_SCRIPT",
    "AmbiguousDeadLetterError",
    "BusStatus",
    "ConsumerStatus",
    "DeadLetterListing",
    "DeadLetterNotFoundError",
    "DeadLetterView",
    "GroupStatus",
    "InvalidEntryIdError",
    "Reconnect",
    "ReplayOutcome",
    "StatusReport",
    "StatusRow",
    "StatusTotals",
    "StreamEntry",
    "StreamNotFoundError",
    "StreamStatus",
    "dead_letter_stream_of",
    "dead_letter_streams",
    "event_type_of",
    "fields_json",
    "find_dead_letters",
    "is_empty",
    "list_dead_letters",
    "purge_dead_letters",
    "read_dead_letter_stream",
    "replay_dead_letters",
    "status",
    "stream_of",
    "tail",
]
