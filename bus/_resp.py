"""RESP2 packing and reply reading for the publish fast path.

redis-py's pipeline machinery costs ~11 us of client CPU per queued command (argument
normalisation, one Python object per command, response callbacks). The publish path instead
packs its commands straight into RESP bytes, sends them with one ``send_packed_command`` on a
connection from the client's pool, and reads the replies back. redis-py stays the connection,
reconnection and parsing layer.

Reading: ``Connection.read_response()`` costs ~6 us per reply (a timeout context and error
formatting per call), which dominates a 1,000-entry MULTI/EXEC (1,000 ``QUEUED`` replies).
:func:`read_replies` therefore reads from the connection's parser directly under ONE timeout for
the whole round trip (~0.35 us per reply), and falls back to ``read_response()`` per reply on
connections without a parser it knows. Either way error replies come back as
``redis.exceptions.ResponseError`` values, not raised: the caller decides what they mean.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import anyio
import redis.exceptions as rex
from redis.asyncio.connection import AbstractConnection

_STOCK_READ_RESPONSE = AbstractConnection.read_response

try:  # redis-py's hiredis parser: its reader can be drained without a coroutine per reply
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser
except ImportError:  # pragma: no cover - another redis-py layout: the parser's read_response is used
    _AsyncHiredisParser = None  # type: ignore[assignment,misc]
    _NOT_ENOUGH_DATA = None
_STOCK_SEND = AbstractConnection.send_packed_command

__all__ = [
    "DISCARD",
    "EXEC",
    "MULTI",
    "bulk",
    "header",
    "pack",
    "pack_many",
    "read_replies",
    "send_packed",
]

MULTI = b"*1\r\n$5\r\nMULTI\r\n"
EXEC = b"*1\r\n$4\r\nEXEC\r\n"
DISCARD = b"*1\r\n$7\r\nDISCARD\r\n"

_HEADERS = [b"*%d\r\n" % n for n in range(64)]
_LENGTHS = [b"$%d\r\n" % n for n in range(256)]


def header(count: int) -> bytes:
    """The array header of a command with ``count`` arguments: ``*3\\r\\n``."""
    return _HEADERS[count] if count < 64 else b"*%d\r\n" % count


def bulk(value: bytes) -> bytes:
    """One bulk string: ``$5\\r\\nhello\\r\\n``."""
    n = len(value)
    return (_LENGTHS[n] if n < 256 else b"$%d\r\n" % n) + value + b"\r\n"


def pack(*args: bytes | str | int) -> bytes:
    """A whole command from its arguments (str is UTF-8 encoded, int written in decimal)."""
    parts = [header(len(args))]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(bulk(arg))
    return b"".join(parts)


def pack_many(commands: Iterable[tuple[bytes | str | int, ...]]) -> bytes:
    """Several commands back to back."""
    return b"".join(pack(*command) for command in commands)


def _fast_reader(conn: Any) -> Any:
    """The connection's parser (hiredis or Python, RESP2 or RESP3), else None.

    Only for connections that read with redis-py's own ``read_response`` (plain and TLS sockets).
    Both parsers return error replies as values and, for RESP3, consume out-of-band push
    messages themselves (``push_request=False``), so replies come back in command order.
    """
    if getattr(type(conn), "read_response", None) is not _STOCK_READ_RESPONSE:
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
    parser = _fast_reader(conn) if fast else None
    out: list[Any] = []
    append = out.append
    with anyio.fail_after(timeout_s):
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
    return out


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
            with anyio.fail_after(timeout_s):
                await writer.drain()
        else:
            await writer.drain()  # raises at once if the connection was lost
        return
    await conn.send_packed_command(data, check_health=False)
