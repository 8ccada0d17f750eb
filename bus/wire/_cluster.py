"""Redis Cluster on the packed fast path: per-node connections of redis-py's ``RedisCluster``,
one MULTI/EXEC per hash slot, MOVED/ASK/TRYAGAIN handled where nothing ran.

redis-py's asyncio cluster client owns the slot map (``nodes_manager``), the nodes and their
connections (``ClusterNode.acquire_connection`` / ``release``); this module only sends packed
commands on those connections, as :mod:`._roundtrip` does on a single node's pool. It relies on
``RedisCluster.nodes_manager`` (``get_node_from_slot``, ``initialize``), ``ClusterNode``
(``acquire_connection``, ``release``, ``connection_class``, ``connection_kwargs``, ``name``)
and ``redis.crc.key_slot``.

:func:`slot_transactions` writes blocks of commands, each block's keys in one slot: every
block on one node goes out in ONE round trip (``MULTI ... EXEC`` per block back to back; the
nodes in parallel). A block whose commands Redis redirected at queue time (``MOVED``, ``ASK``,
``TRYAGAIN``, ``CLUSTERDOWN``: the transaction was aborted, nothing of it ran) is sent again:
after ``MOVED`` once the slot map is refreshed, after ``ASK`` to the importing node behind
``ASKING`` when the block has a single key (the migrating node said that key is gone, so the
target holds it or nobody does), else after a short wait until the migration ends (a block
with several keys, some still on the source, must not create them on the target).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import redis.exceptions as rex

from .._redis import is_cluster_client, key_slot
from ._resp import EXEC, MULTI, pack
from ._roundtrip import drop, exchange

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode

__all__ = [
    "ASKING",
    "SlotBlock",
    "is_cluster",
    "node_of_slot",
    "node_round_trip",
    "on_each_primary",
    "read_connection",
    "redirect_of",
    "refresh_slots",
    "slot_of",
    "slot_transactions",
]

ASKING = pack("ASKING")
#: Rounds of sending a redirected block again before its last reply stands.
REDIRECT_ROUNDS = 8


#: True for redis-py's asyncio ``RedisCluster``.
is_cluster = is_cluster_client
#: The hash slot of a key (its ``{tag}`` when it has one).
slot_of = key_slot


def node_of_slot(client: aioredis.Redis, slot: int) -> ClusterNode:
    """The primary serving ``slot`` in the client's current slot map."""
    node: ClusterNode = client.nodes_manager.get_node_from_slot(slot)  # type: ignore[attr-defined]
    return node


async def refresh_slots(client: aioredis.Redis) -> None:
    """Reload the slot map from the cluster (after a MOVED)."""
    await client.nodes_manager.initialize()  # type: ignore[attr-defined]


def redirect_of(reply: Any) -> tuple[str, str | None]:
    """``(kind, "host:port" or None)`` of a redirect error reply; ``("", None)`` for anything else.

    Kinds: ``MOVED``, ``ASK`` (with the node), ``TRYAGAIN``, ``CLUSTERDOWN`` (without).
    """
    if not isinstance(reply, rex.ResponseError):
        return "", None
    if isinstance(reply, rex.AskError):  # (redis-py's MovedError is an AskError)
        kind = "MOVED" if isinstance(reply, rex.MovedError) else "ASK"
        host, port = reply.host, reply.port
        return kind, f"{host}:{port}"
    if isinstance(reply, rex.TryAgainError):
        return "TRYAGAIN", None
    if isinstance(reply, rex.ClusterDownError):
        return "CLUSTERDOWN", None
    text = str(reply)
    head = text.split(" ", 1)[0]
    if head in ("MOVED", "ASK"):
        parts = text.split()
        return head, parts[2] if len(parts) > 2 else None
    if head in ("TRYAGAIN", "CLUSTERDOWN"):
        return head, None
    return "", None


async def node_round_trip(
    node: ClusterNode, data: bytes, n_replies: int, timeout_s: float | None, *, asking: bool = False
) -> list[Any]:
    """:func:`bus.wire.exchange` on a pooled connection of ``node`` (``ASKING`` first when asked;
    its reply is not returned). redis-py's errors are raised as they are."""
    conn: Any = node.acquire_connection()
    try:
        if not conn.is_connected:
            await conn.connect()
        if asking:
            return (await exchange(conn, ASKING + data, n_replies + 1, timeout_s))[1:]
        return await exchange(conn, data, n_replies, timeout_s)
    except BaseException:
        await drop(conn)
        raise
    finally:
        node.release(conn)


async def on_each_primary(client: aioredis.Redis, data: bytes, n_replies: int, timeout_s: float | None) -> list[Any]:
    """``data`` (packed commands) sent to every primary of the client's slot map, one node after
    another; the replies, each node's behind its name (``"host:port"``), error replies as
    exceptions. A node that cannot be reached raises (redis-py's error, as it is)."""
    out: list[Any] = []
    for node in client.get_primaries():  # type: ignore[attr-defined]
        out += [(node.name, reply) for reply in await node_round_trip(node, data, n_replies, timeout_s)]
    return out


def read_connection(node: ClusterNode) -> Any:
    """A new connection to ``node`` outside its pool and without a socket timeout (a blocking
    reader's own: the caller's hard read timeout governs it, the caller disconnects it)."""
    kwargs = dict(node.connection_kwargs)
    kwargs["socket_timeout"] = None
    return node.connection_class(**kwargs)


class SlotBlock:
    """Commands whose keys share one slot, to run as one MULTI/EXEC (or bare, when not ``transaction``)."""

    __slots__ = ("commands", "n_keys", "replies", "slot", "transaction")

    def __init__(self, slot: int, commands: Sequence[bytes], *, n_keys: int = 1, transaction: bool = True) -> None:
        self.slot = slot
        self.commands = list(commands)
        #: Distinct keys the commands touch (an ASK is followed only for a single-key block).
        self.n_keys = n_keys
        self.transaction = transaction
        #: After :func:`slot_transactions`: the EXEC reply (a list, or the error that aborted it),
        #: or the replies of the bare commands; an exception when the round trip failed.
        self.replies: Any = None

    @property
    def data(self) -> bytes:
        body = b"".join(self.commands)
        return MULTI + body + EXEC if self.transaction else body

    @property
    def n_replies(self) -> int:
        return len(self.commands) + 2 if self.transaction else len(self.commands)


async def slot_transactions(client: aioredis.Redis, blocks: Sequence[SlotBlock], timeout_s: float | None) -> None:
    """Run every block (see the module docstring); each block's ``replies`` is set.

    A failed round trip (a connection error, a timeout) sets the exception as ``replies`` of
    each block it carried: their outcome is unknown, the caller decides. Other blocks stand.
    """
    pending = list(blocks)
    asking: dict[int, str] = {}  # id(block) -> the node to ASK
    for round_no in range(REDIRECT_ROUNDS):
        by_node: dict[str, tuple[ClusterNode, bool, list[SlotBlock]]] = {}
        for block in pending:
            target = asking.pop(id(block), None)
            node = client.nodes_manager.get_node(node_name=target) if target else None  # type: ignore[attr-defined]
            if node is None:
                target = None
                try:
                    node = node_of_slot(client, block.slot)
                except (rex.RedisClusterException, rex.RedisError) as exc:  # the map has no node for it
                    block.replies = rex.ClusterDownError(f"CLUSTERDOWN no known node serves slot {block.slot}: {exc}")
                    continue
            key = f"{node.name}|{target is not None}"
            by_node.setdefault(key, (node, target is not None, []))[2].append(block)
        async with anyio.create_task_group() as tg:
            for node, is_asking, node_blocks in by_node.values():
                tg.start_soon(_send_node, node, node_blocks, timeout_s, is_asking)
        again: list[SlotBlock] = []
        moved = False
        for block in pending:
            if isinstance(block.replies, rex.ConnectionError | OSError | TimeoutError):
                moved = True  # a node failed: the next write should see a failover's new map
                continue
            kind, where = _block_redirect(block)
            if not kind or round_no == REDIRECT_ROUNDS - 1:
                continue
            if kind in ("MOVED", "CLUSTERDOWN"):
                moved = True
            elif kind == "ASK" and where is not None and block.n_keys == 1:
                asking[id(block)] = where
            again.append(block)
        if moved:
            with contextlib.suppress(rex.RedisError, OSError):  # unreachable: the next round's replies say so
                await refresh_slots(client)
        if not again:
            return
        if any(id(b) not in asking for b in again):
            await anyio.sleep(0.01 * (round_no + 1))  # TRYAGAIN, CLUSTERDOWN, a multi-key ASK: let it settle
        pending = again


async def _send_node(node: ClusterNode, blocks: list[SlotBlock], timeout_s: float | None, asking: bool) -> None:
    """One round trip to ``node`` with every block; each block gets its slice of the replies."""
    if asking:  # ASKING holds for one command, or for a whole MULTI: one ASKING per block
        data = b"".join(ASKING + b.data for b in blocks)
        n = sum(b.n_replies + 1 for b in blocks)
    else:
        data = b"".join(b.data for b in blocks)
        n = sum(b.n_replies for b in blocks)
    try:
        replies = await node_round_trip(node, data, n, timeout_s)
    except (rex.RedisError, OSError, TimeoutError) as exc:
        for block in blocks:
            block.replies = exc
        return
    pos = 0
    for block in blocks:
        pos += asking
        part = replies[pos : pos + block.n_replies]
        pos += block.n_replies
        if block.transaction:
            exec_reply = part[-1]
            if not isinstance(exec_reply, list):  # aborted: the refusal at queue time says why
                queued = next((r for r in part[:-1] if isinstance(r, rex.ResponseError)), None)
                exec_reply = queued if queued is not None else exec_reply
            block.replies = exec_reply
        else:
            block.replies = part


def _block_redirect(block: SlotBlock) -> tuple[str, str | None]:
    """The redirect that kept a block from running (nothing of it ran), or ``("", None)``."""
    replies = block.replies
    if block.transaction:
        return redirect_of(replies)
    if isinstance(replies, list):
        for reply in replies:
            kind, where = redirect_of(reply)
            if kind:
                return kind, where
    return "", None
