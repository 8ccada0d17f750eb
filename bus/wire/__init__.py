"""The wire layer: the only code that packs RESP or touches redis-py internals.

- :mod:`._resp`: packing commands to RESP bytes;
- :mod:`._hiredis`: sending on and reading from a redis-py connection (its parser, its writer);
- :mod:`._roundtrip`: the one round trip (acquire, send, read, release; drop on failure);
- :mod:`._xread`: the consume loop's pre-packed XREADGROUP and its raw replies.
"""

from __future__ import annotations

from ._connects import count_connect_attempts
from ._hiredis import check_internals, connect, read_replies, send_packed
from ._resp import DISCARD, EXEC, MULTI, bulk, header, pack, pack_command, pack_many
from ._roundtrip import acquire, drop, exchange, release, round_trip
from ._xread import Fields, GroupReader, RawEntry, event_of, fields_dict

__all__ = [
    "DISCARD",
    "EXEC",
    "MULTI",
    "Fields",
    "GroupReader",
    "RawEntry",
    "acquire",
    "bulk",
    "check_internals",
    "connect",
    "count_connect_attempts",
    "drop",
    "event_of",
    "exchange",
    "fields_dict",
    "header",
    "pack",
    "pack_command",
    "pack_many",
    "read_replies",
    "release",
    "round_trip",
    "send_packed",
]
