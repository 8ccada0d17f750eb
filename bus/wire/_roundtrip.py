"""The one round trip: send pre-packed commands on a connection, read the replies, release it.

A connection that failed mid-way (an error, a timeout, a cancellation) may hold unread replies
or half a transaction, so it is disconnected, never handed back as is; disconnect and release
are shielded from cancellation, so a cancelled caller cannot leak a connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ._hiredis import read_replies, send_packed

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["acquire", "drop", "exchange", "release", "round_trip"]


async def acquire(client: aioredis.Redis) -> Any:
    """A connected connection from ``client``'s pool (redis-py's errors raised as they are)."""
    return await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]


async def drop(conn: Any) -> None:
    """Disconnect ``conn`` (shielded): it may hold unread replies."""
    with anyio.CancelScope(shield=True):
        await conn.disconnect(nowait=True)


async def release(client: aioredis.Redis, conn: Any) -> None:
    """Give ``conn`` back to ``client``'s pool (shielded)."""
    with anyio.CancelScope(shield=True):
        await client.connection_pool.release(conn)


async def exchange(conn: Any, data: bytes, n_replies: int, timeout_s: float | None) -> list[Any]:
    """Send ``data`` and read ``n_replies`` replies (error replies as values) under one
    ``timeout_s``; on any failure the connection is dropped and the failure re-raised."""
    try:
        await send_packed(conn, data, timeout_s)
        return await read_replies(conn, n_replies, timeout_s)
    except BaseException:
        await drop(conn)
        raise


async def round_trip(client: aioredis.Redis, data: bytes, n_replies: int, timeout_s: float | None) -> list[Any]:
    """:func:`exchange` on a connection of ``client``'s pool, released afterwards.

    redis-py's errors (``ConnectionError``, ``TimeoutError``...) are raised as they are: the
    caller translates them (``bus._redis.redis_errors``).
    """
    conn = await acquire(client)
    try:
        return await exchange(conn, data, n_replies, timeout_s)
    finally:
        await release(client, conn)
