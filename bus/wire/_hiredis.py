"""Sending and reading on a redis-py connection: the only code that touches redis-py internals.

redis-py stays the connection, reconnection and parsing layer; this module reaches into it in
exactly three places, each checked by ``tests/test_bus/test_wire.py`` (:func:`check_internals`):
``redis._parsers.hiredis._AsyncHiredisParser`` (its ``_reader`` is drained directly),
``Connection._parser`` and ``Connection._writer`` (an ``asyncio.StreamWriter`` written directly).
Sentinel mode's ``SentinelManagedConnection`` is read the same way, with its one addition (a
demoted master's READONLY disconnects and raises ``ConnectionError``) done here.

Reading: ``Connection.read_response()`` sets up a timeout context and formats errors on every
call, which dominates a 1,000-entry MULTI/EXEC (1,000 ``QUEUED`` replies). :func:`read_replies`
therefore reads from the connection's parser directly under ONE timeout for the whole round
trip, and falls back to ``read_response()`` per reply on connections without a parser it knows.
Either way error replies come back as ``redis.exceptions.ResponseError`` values, not raised: the
caller decides what they mean. Timeouts here are stdlib ``asyncio.timeout``: the same
``TimeoutError`` as ``anyio.fail_after``, it composes with anyio's cancel scopes, and it does a
fraction of the work (one per round trip; ``benchmarks/RESULTS.md``, session 9).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions as rex
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.sentinel import DEMOTED_MASTER_UNBLOCKED_ERROR

_STOCK_READ_RESPONSE = AbstractConnection.read_response

try:  # redis-py's hiredis parser: its reader can be drained without a coroutine per reply
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser
except ImportError:  # pragma: no cover - another redis-py layout: the parser's read_response is used
    _AsyncHiredisParser = None  # type: ignore[assignment,misc]
    _NOT_ENOUGH_DATA = None
_STOCK_SEND = AbstractConnection.send_packed_command
# Sentinel mode: its connection's read_response is the stock one plus "a demoted master's
# READONLY/UNBLOCKED reply disconnects and raises ConnectionError"; the fast reader does the same.
_SENTINEL_READ_RESPONSE = SentinelManagedConnection.read_response

__all__ = ["check_internals", "connect", "fast_reader", "read_replies", "send_packed"]


def fast_reader(conn: Any) -> Any:
    """The connection's parser (hiredis or Python, RESP2 or RESP3), else None.

    Only for connections that read with redis-py's own ``read_response`` (plain and TLS sockets).
    Both parsers return error replies as values and, for RESP3, consume out-of-band push
    messages themselves (``push_request=False``), so replies come back in command order.
    """
    if getattr(type(conn), "read_response", None) not in (_STOCK_READ_RESPONSE, _SENTINEL_READ_RESPONSE):
        return None  # a subclass reads its own way (fakeredis queues Python objects): respect it
    parser = getattr(conn, "_parser", None)
    if parser is None or not callable(getattr(parser, "read_response", None)):
        return None
    return parser


async def read_replies(conn: Any, count: int, timeout_s: float | None, *, fast: bool = True) -> list[Any]:
    """Read ``count`` replies; error replies are returned as ``ResponseError`` values.

    Raises ``TimeoutError`` when all ``count`` replies did not arrive within ``timeout_s``
    (one budget for the whole round trip), and redis-py's ``ConnectionError`` when the
    connection drops. The caller must disconnect the connection on any exception: it may hold
    unread replies.
    """
    parser = fast_reader(conn) if fast else None
    out: list[Any] = []
    append = out.append
    async with asyncio.timeout(timeout_s):
        if parser is not None and type(parser) is _AsyncHiredisParser and parser._connected:
            await _drain_hiredis(parser, count, append)
        elif parser is not None:
            read = parser.read_response
            for _ in range(count):
                append(await read())
        else:
            for _ in range(count):
                try:
                    append(await conn.read_response())
                except rex.ResponseError as exc:
                    append(exc)
    if parser is not None and type(conn).read_response is _SENTINEL_READ_RESPONSE and conn.connection_pool.is_master:
        await _check_master(conn, out)
    return out


async def _check_master(conn: Any, replies: list[Any]) -> None:
    """A sentinel-managed master connection whose server was demoted to a replica: disconnect it
    and raise ``ConnectionError`` (as redis-py's ``SentinelManagedConnection.read_response``), so
    the next connect asks the sentinels for the new master."""
    for reply in replies:
        if isinstance(reply, rex.ReadOnlyError) or (
            isinstance(reply, rex.ResponseError) and str(reply).startswith(DEMOTED_MASTER_UNBLOCKED_ERROR)
        ):
            await conn.disconnect()
            raise rex.ConnectionError("The previous master is now a slave")


async def _drain_hiredis(parser: Any, count: int, append: Any) -> None:
    """``count`` replies straight from the hiredis reader, as its ``read_response`` returns them.

    The reader returns complete replies from what was fed to it; only when it needs more data
    does this await the socket. Error replies stay values; a connection error is raised; an
    out-of-band push (RESP3) goes to the parser's handler and does not count as a reply.
    """
    gets = parser._reader.gets
    fill = parser.read_from_socket
    push_type = parser._hiredis_PushNotificationType
    while count:
        reply = gets()
        while reply is _NOT_ENOUGH_DATA:
            await fill()
            reply = gets()
        if type(reply) is not bytes:  # the common replies (QUEUED, OK, entry ids) are bytes
            if isinstance(reply, rex.ConnectionError):
                raise reply
            if push_type is not None and isinstance(reply, push_type):
                await parser.handle_push_response(reply)
                continue
            if isinstance(reply, list) and reply and isinstance(reply[0], rex.ConnectionError):
                raise reply[0]
        append(reply)
        count -= 1


async def send_packed(conn: Any, data: bytes, timeout_s: float | None) -> None:
    """Send packed commands on a connected connection.

    redis-py's ``send_packed_command`` runs every write under ``asyncio.wait_for`` (a new task and
    an extra loop iteration per call when a socket timeout is set). On a plain redis-py
    connection with an asyncio stream this writes to the stream directly and waits for the
    buffer to drain only when the socket did not take everything at once (then under
    ``timeout_s``). Anything else (fakeredis, a subclass or an instance with its own
    ``send_packed_command``) goes through ``send_packed_command``. The caller must disconnect
    the connection on any exception: part of the data may have gone out.
    """
    writer = getattr(conn, "_writer", None)
    if (
        type(writer) is asyncio.StreamWriter
        and type(conn).send_packed_command is _STOCK_SEND
        and "send_packed_command" not in vars(conn)
    ):
        writer.write(data)
        if writer.transport.get_write_buffer_size():
            async with asyncio.timeout(timeout_s):
                await writer.drain()
        else:
            await writer.drain()  # raises at once if the connection was lost
        return
    await conn.send_packed_command(data, check_health=False)


async def connect(conn: Any) -> None:
    """Connect (and authenticate) ``conn`` unless it is connected; a no-op on a live connection.

    Lets a caller run the handshake under its own budget, before a read whose hard timeout
    should cover the read alone.
    """
    if not getattr(conn, "is_connected", False):
        await conn.connect()


def check_internals(conn: Any = None) -> list[str]:
    """What this module relies on in redis-py that is missing or changed shape (empty: all present).

    Without ``conn`` the module-level names are checked; with a connected real connection also
    its parser and writer.
    """
    problems: list[str] = []
    for cls, name in ((AbstractConnection, "read_response"), (AbstractConnection, "send_packed_command")):
        if not callable(getattr(cls, name, None)):
            problems.append(f"redis.asyncio.connection.AbstractConnection.{name} is gone")
    if _AsyncHiredisParser is None or _NOT_ENOUGH_DATA is None:
        problems.append("redis._parsers.hiredis no longer exports _AsyncHiredisParser and NOT_ENOUGH_DATA")
    else:
        for name in ("read_from_socket", "handle_push_response", "read_response"):
            if not callable(getattr(_AsyncHiredisParser, name, None)):
                problems.append(f"redis._parsers.hiredis._AsyncHiredisParser.{name} is gone")
    if conn is None:
        return problems
    parser = getattr(conn, "_parser", None)
    if type(parser) is not _AsyncHiredisParser:
        problems.append(f"a connected Connection's _parser is {type(parser).__name__}, not _AsyncHiredisParser")
    else:
        if not callable(getattr(getattr(parser, "_reader", None), "gets", None)):
            problems.append("_AsyncHiredisParser._reader has no gets() (the hiredis reader moved)")
        for name in ("_connected", "_hiredis_PushNotificationType"):
            if not hasattr(parser, name):
                problems.append(f"_AsyncHiredisParser has no {name} attribute")
    if type(getattr(conn, "_writer", None)) is not asyncio.StreamWriter:
        problems.append(
            f"a connected Connection's _writer is {type(getattr(conn, '_writer', None)).__name__}, "
            "not asyncio.StreamWriter"
        )
    if fast_reader(conn) is not parser:
        problems.append("Connection.read_response is overridden: the parser is no longer read directly")
    return problems
