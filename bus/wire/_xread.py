"""The consume loop's XREADGROUP: one pre-packed command on the reader's own connection, raw replies.

redis-py's ``xreadgroup`` encodes its arguments on every call and runs its response callbacks on
the reply (``parse_stream_list`` and ``pairs_to_dict`` per entry, about 1 us per entry at
COUNT 1000). The reader sends the very same command every time, so :class:`GroupReader` packs it
once (:func:`bus.wire.pack`), sends it with :func:`bus.wire.exchange` and takes the reply straight
from the connection's parser (:func:`bus.wire.read_replies`): nested lists of bytes, with the
streams in a map under RESP3. Entries keep their fields as the flat ``[field, value, ...]`` list
Redis sent; :func:`event_of` and :func:`fields_dict` read them with the semantics of a dict built
from the pairs (a repeated field name: the last value wins).

Connections without a parser we know (fakeredis) go through redis-py's own ``read_response()``
(see :func:`bus.wire.read_replies`), which returns the same raw shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from ._hiredis import connect
from ._resp import pack
from ._roundtrip import drop, exchange

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["Fields", "GroupReader", "RawEntry", "event_of", "fields_dict"]

#: An entry's fields: the flat list of the fast read, or a dict (redis-py's pending and claim paths).
Fields: TypeAlias = "list[bytes] | dict[bytes, bytes]"
#: ``[entry_id, fields]`` as Redis sends it (fields None for an entry deleted while pending).
RawEntry: TypeAlias = "Sequence[Any]"

_EVENT = b"event"
_CHANNEL = b"channel"
_FORCE = b"force"


def fields_dict(fields: Fields) -> dict[bytes, bytes]:
    """The fields as a dict (a repeated field name keeps its last value, as ``pairs_to_dict`` does)."""
    if isinstance(fields, dict):
        return fields
    it = iter(fields)
    return dict(zip(it, it, strict=False))


def event_of(fields: Fields) -> tuple[bytes | None, bool]:
    """The ``event`` field (None when absent) and whether ``force`` is ``"1"``.

    The bus's own entries (``event``, ``channel``) are recognised without building a dict.
    """
    if type(fields) is list and len(fields) == 4 and fields[0] == _EVENT and fields[2] == _CHANNEL:
        return fields[1], False
    d = fields_dict(fields)
    return d.get(_EVENT), d.get(_FORCE) == b"1"


class GroupReader:
    """``XREADGROUP GROUP g c COUNT n BLOCK ms STREAMS s... > ...``, packed once per count
    (without BLOCK when ``block_ms`` is None: a non-blocking read, as a cluster sweep sends)."""

    __slots__ = ("_args", "_commands", "command", "count", "streams")

    def __init__(self, group: str, consumer: str, streams: Sequence[str], count: int, block_ms: int | None) -> None:
        self.streams = tuple(streams)
        self._args = (group, consumer, block_ms, tuple(streams))
        self._commands: dict[int, bytes] = {}
        self.set_count(count)

    def set_count(self, count: int) -> None:
        """Read ``count`` entries per stream from now on (each count's command is packed once)."""
        command = self._commands.get(count)
        if command is None:
            group, consumer, block_ms, streams = self._args
            ids = (">",) * len(streams)
            block = () if block_ms is None else ("BLOCK", block_ms)
            command = pack("XREADGROUP", "GROUP", group, consumer, "COUNT", count, *block, "STREAMS", *streams, *ids)
            if len(self._commands) < 64:
                self._commands[count] = command
        self.command = command
        self.count = count

    @staticmethod
    async def connection(client: aioredis.Redis) -> Any:
        """``client``'s single connection, connected and authenticated (a no-op when it is).

        Separate from :meth:`read` so that the handshake of a new connection is not charged to
        the read's hard timeout (on a slow link the two together can exceed it every time).
        """
        conn: Any = client.connection
        if conn is None:
            await client.initialize()
            conn = client.connection
        try:
            await connect(conn)
        except BaseException:
            await drop(conn)
            raise
        return conn

    async def read(self, conn: Any) -> list[tuple[bytes, list[RawEntry]]]:
        """One read on a connection from :meth:`connection`: ``[(stream key, [[id, fields], ...]), ...]``.

        An empty list when BLOCK expired. An error reply is raised as redis-py raises it (the
        caller translates it); any failure, cancellation included, disconnects the connection,
        which may hold an unread reply (redis-py reconnects it on the next send).
        """
        return self.entries_of((await exchange(conn, self.command, 1, None))[0])

    @staticmethod
    def entries_of(reply: Any) -> list[tuple[bytes, list[RawEntry]]]:
        """An XREADGROUP reply as ``[(stream key, entries), ...]``; an error reply is raised."""
        if isinstance(reply, Exception):
            raise reply
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3: a map of stream -> entries
            return list(reply.items())
        return [(key, entries) for key, entries in reply]

    @staticmethod
    async def read_many(conn: Any, readers: Sequence[GroupReader]) -> list[Any]:
        """Every reader's command in one round trip; the raw replies (error replies as values,
        for :meth:`entries_of`). Any failure disconnects the connection, as :meth:`read`."""
        return await exchange(conn, b"".join(r.command for r in readers), len(readers), None)
