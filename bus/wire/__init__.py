"""The wire layer: the only code that packs RESP or touches redis-py internals.

- :mod:`._resp`: packing commands to RESP bytes;
- :mod:`._hiredis`: sending on and reading from a redis-py connection (its parser, its writer);
- :mod:`._roundtrip`: the one round trip (acquire, send, read, release; drop on failure);
- :mod:`._xread`: the consume loop's pre-packed XREADGROUP and its raw replies;
- :mod:`._cluster`: the same on Redis Cluster: per-node connections, one MULTI/EXEC per slot.
"""

from __future__ import annotations

from ._cluster import (
    SlotBlock,
    is_cluster,
    node_of_slot,
    node_round_trip,
    on_each_primary,
    read_connection,
    redirect_of,
    refresh_slots,
    slot_of,
    slot_transactions,
)
from ._connects import count_connect_attempts
from ._hiredis import check_internals, connect, read_replies, send_packed
from ._resp import DISCARD, EXEC, MULTI, bulk, header, pack, pack_command, pack_many, split_commands
from ._roundtrip import acquire, drop, exchange, release, round_trip
from ._xread import Fields, GroupReader, RawEntry, event_of, fields_dict

__all__ = [
    "DISCARD",
    "EXEC",
    "MULTI",
    "Fields",
    "GroupReader",
    "RawEntry",
    "SlotBlock",
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
    "is_cluster",
    "node_of_slot",
    "node_round_trip",
    "on_each_primary",
    "pack",
    "pack_command",
    "pack_many",
    "read_connection",
    "read_replies",
    "redirect_of",
    "refresh_slots",
    "release",
    "round_trip",
    "send_packed",
    "slot_of",
    "slot_transactions",
    "split_commands",
]
