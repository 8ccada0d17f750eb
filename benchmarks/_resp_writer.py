"""The ceiling of a Python client for the publish comparison: a hand-written RESP writer.

It does only what any client must do per call: frame each command's arguments as RESP
(``*n``, ``$len`` and CRLF around pre-encoded bytes), write the MULTI/XADD.../EXEC batch to one
asyncio stream in chunks as they are framed (Redis parses one chunk while the next is framed,
as ``publish_many`` streams its transaction), and read the replies with hiredis (the C parser
redis-py uses). No validation, no envelope or id building, no connection pool, no retries, no error
mapping: the bytes on the wire are the ones ``publish_many`` writes for the same events.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse

import hiredis

__all__ = ["RespWriter", "command"]


_HEADS = [b"*%d\r\n" % n for n in range(64)]


def command(*args: bytes) -> bytes:
    """One command as RESP: an array of bulk strings."""
    return _HEADS[len(args)] + b"".join([b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args])


class RespWriter:
    """One connection, pipelined writes, hiredis replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()

    @classmethod
    async def connect(cls, url: str) -> RespWriter:
        """Connect to ``redis://host:port/db`` (no auth: the benchmark's local Redis)."""
        parsed = urlparse(url)
        reader, writer = await asyncio.open_connection(parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self = cls(reader, writer)
        db = (parsed.path or "/0").strip("/") or "0"
        await self.execute(command(b"SELECT", db.encode()), 1)
        return self

    def write(self, data: bytes) -> None:
        """Queue ``data`` on the stream (sent as the socket takes it)."""
        self._writer.write(data)

    async def execute(self, data: bytes, replies: int) -> list[object]:
        """Write ``data`` (ending a pipeline of ``replies`` commands) and read that many replies."""
        self._writer.write(data)
        out: list[object] = []
        parser = self._parser
        while len(out) < replies:
            reply = parser.gets()
            if reply is False:
                parser.feed(await self._reader.read(1 << 16))
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise reply
            out.append(reply)
        return out

    async def aclose(self) -> None:
        """Close the connection."""
        self._writer.close()
        await self._writer.wait_closed()
