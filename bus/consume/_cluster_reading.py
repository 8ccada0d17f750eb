"""Reading a subscription's streams on Redis Cluster: one connection per node, not per stream.

One XREADGROUP can only name streams of one hash slot, and the reference's stream keys carry
no hash tag, so a subscription's streams spread over many slots on every node. The design:

- the streams are grouped by slot (one pre-packed XREADGROUP per slot: a "slot read"), and the
  slot reads by the node serving the slot in redis-py's slot map;
- each node gets ONE reader task with ONE dedicated connection (outside redis-py's pool, no
  socket timeout: the hard read timeout governs it). A node with a single slot read sends it
  with ``BLOCK`` (exactly as on a single Redis); a node with several sends them all without
  BLOCK, back to back in one round trip (a *sweep*), and when a sweep found nothing it waits
  before the next, from 2 ms doubling up to :data:`IDLE_POLL_MAX_S` (reset by the first
  entry). So a consumer holds as many read connections as the cluster has masters serving its
  streams, at the price of up to :data:`IDLE_POLL_MAX_S` of latency after an idle spell;
- ``MOVED`` (a slot migrated, a failover) asks every node task to stop after its current read
  (at most one BLOCK later; never in the middle of handing a batch over: cancelling there would
  strand admitted entries), the slot map is refreshed (``nodes_manager.initialize``) and the
  plan is rebuilt: the slot's reads then go to its new node. ``ASK`` and ``TRYAGAIN`` (a slot
  being migrated right now) skip that slot read for this sweep, as does ``UNBLOCKED`` (a BLOCK
  read whose stream was migrated away under it); it is read again once the migration has
  finished (``MOVED``). No entry is lost either way: XREADGROUP delivers an entry only in a
  reply we received, and a read cut off by a failure leaves its entries pending to this
  consumer (the reclaim loop and the next start's own-pending drain take them);
- a transport failure backs off (as :class:`bus.consume._retry.TransportRetry` does), then
  refreshes the slot map and rebuilds the plan, so a node that left is no longer asked.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import anyio

from .._errors import AuthenticationError, BackendError, BackendTimeoutError, GroupMissingError
from .._redis import redis_errors, translate_error
from ..wire import GroupReader, connect, drop, node_of_slot, read_connection, redirect_of, refresh_slots, slot_of
from ._retry import RECONNECT_INITIAL_S, RECONNECT_MAX_S

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream
    from redis.asyncio.cluster import ClusterNode

    from ._entry import Entry
    from ._reading import Reader

__all__ = ["IDLE_POLL_MAX_S", "ClusterReads"]

log = logging.getLogger("bus.consume")

#: Longest wait between two empty sweeps of a node serving several of the subscription's slots.
IDLE_POLL_MAX_S = 0.05
_IDLE_POLL_MIN_S = 0.002


class ClusterReads:
    """The cluster half of a :class:`Reader`: plans slot reads per node and runs one task per node."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.failures = 0
        #: Plans built so far (for tests: a migration makes another).
        self.plans = 0

    def plan(self) -> list[tuple[ClusterNode, list[GroupReader]]]:
        """The slot reads by node, from the client's current slot map."""
        reader = self.reader
        spec = reader.spec
        by_slot: dict[int, list[str]] = {}
        for stream in spec.streams:
            by_slot.setdefault(slot_of(stream), []).append(stream)
        by_node: dict[str, tuple[ClusterNode, list[list[str]]]] = {}
        for slot, streams in by_slot.items():
            node = node_of_slot(reader.client, slot)
            by_node.setdefault(node.name, (node, []))[1].append(streams)
        count = reader.command.count
        out: list[tuple[ClusterNode, list[GroupReader]]] = []
        for node, groups in by_node.values():
            block = spec.timing.block_ms if len(groups) == 1 else None
            out.append((node, [GroupReader(spec.group, spec.consumer, g, count, block) for g in groups]))
        self.plans += 1
        return out

    async def run(self, batches: MemoryObjectSendStream[list[Entry]]) -> None:
        """Read until cancelled, re-planning after MOVED or a transport failure."""
        while True:
            replan = anyio.Event()
            async with anyio.create_task_group() as tg:
                for node, reads in self.plan():
                    tg.start_soon(self._node, node, reads, batches, replan)
            if self.failures:
                await anyio.sleep(min(RECONNECT_INITIAL_S * 2 ** min(self.failures, 10), RECONNECT_MAX_S))
            try:
                with redis_errors("refreshing the cluster slot map"):
                    await refresh_slots(self.reader.client)
            except BackendError as exc:
                self.failures += 1
                self.reader.retry._reconnect()
                if isinstance(exc, AuthenticationError):
                    raise

    async def _node(
        self,
        node: ClusterNode,
        reads: list[GroupReader],
        batches: MemoryObjectSendStream[list[Entry]],
        replan: anyio.Event,
    ) -> None:
        """One node's reads on one connection until ``replan`` is set (by this task after a MOVED or
        a transport failure, or by another node's task)."""
        reader = self.reader
        conn = read_connection(node)
        blocking = len(reads) == 1
        idle = 0.0
        try:
            while not replan.is_set():
                try:
                    replies = await self._sweep(conn, reads)
                except AuthenticationError:
                    raise
                except BackendError as exc:
                    self.failures += 1
                    reader.retry._reconnect()
                    reader.board.notify()
                    log.warning("XREADGROUP on %s failed, refreshing the slot map: %s", node.name, exc)
                    replan.set()
                    return
                self.failures = 0
                got = 0
                moved = False
                for read, reply in zip(reads, replies, strict=True):
                    if isinstance(reply, Exception):
                        kind, _ = redirect_of(reply)
                        if kind == "MOVED":
                            moved = True
                        elif not kind and not str(reply).startswith("UNBLOCKED"):
                            error = translate_error(reply, f"XREADGROUP {' '.join(read.streams)}")
                            if not isinstance(error, GroupMissingError):
                                raise error from reply
                            await reader.groups.recover(error)
                        continue  # ASK, TRYAGAIN, CLUSTERDOWN, UNBLOCKED (the key migrated away): read it again
                    pairs = GroupReader.entries_of(reply)
                    if pairs:
                        got += await reader.deliver(pairs, batches, read)
                if moved:
                    replan.set()
                    return
                if got:
                    idle = 0.0
                elif not blocking or any(isinstance(r, Exception) for r in replies):
                    idle = min(max(idle * 2, _IDLE_POLL_MIN_S), IDLE_POLL_MAX_S)
                    await anyio.sleep(idle)
        finally:
            with anyio.move_on_after(1.0, shield=True), contextlib.suppress(Exception):
                await conn.disconnect()

    async def _sweep(self, conn: Any, reads: list[GroupReader]) -> list[Any]:
        """Every slot read of one node in one round trip under the hard read timeout."""
        reader = self.reader
        timeout_s = reader.spec.timing.read_timeout_s
        try:
            with anyio.fail_after(reader.connect_timeout_s), redis_errors("connect for XREADGROUP"):
                await connect(conn)
            with anyio.fail_after(timeout_s), redis_errors("XREADGROUP"):
                return await GroupReader.read_many(conn, reads)
        except TimeoutError as exc:
            await drop(conn)
            raise BackendTimeoutError(
                f"XREADGROUP did not answer within {timeout_s}s; the connection was reset"
            ) from exc
