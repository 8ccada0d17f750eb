"""The reader: this consumer's own pending entries first (a crash), then XREADGROUP on its own
connection, each read under a hard timeout that resets the connection.

The connection is set up (connect, authenticate) before the read and outside its hard timeout,
under its own budget (connect plus one socket timeout for the handshake replies): on a slow
link a new connection's handshake plus a full BLOCK could otherwise exceed the read timeout on
every attempt after a reset.

On Redis Cluster, :class:`bus.consume._cluster_reading.ClusterReads` reads instead (one
connection per node; see there).
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

import anyio
import redis.asyncio as aioredis

from .._errors import AuthenticationError, BackendError, BackendTimeoutError, BusError, GroupMissingError
from .._redis import copy_pool, redis_errors
from ..wire import GroupReader, RawEntry, count_connect_attempts, is_cluster
from ._dispatch import send_batch
from ._pending import PendingEntry, read_own_pending

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectSendStream

    from ._entry import Entry, InFlight
    from ._groups import Groups
    from ._retry import TransportRetry
    from ._stats import StatsBoard
    from ._subscription import StreamSubscription

__all__ = ["Reader"]

#: Entries whose field sizes are summed per reply; more are estimated from that many spread evenly.
SIZE_SAMPLE = 32


def _fields_size(entries: list[RawEntry]) -> int:
    """The bytes of the entries' field names and values, for the read count: exact up to
    :data:`SIZE_SAMPLE` entries, else estimated from a sample spread over the reply (the count
    follows the typical entry size; summing every field of every entry cost a per-entry loop)."""
    n = len(entries)
    step = max(1, n // SIZE_SAMPLE)
    sample = entries[::step] if step > 1 else entries
    total = 0
    for entry in sample:
        if entry[1]:
            total += sum(map(len, entry[1]))
    return total * n // len(sample) if sample else 0


class Reader:
    """Reads batches for the dispatcher (through a one-batch buffer)."""

    def __init__(
        self,
        client: aioredis.Redis,
        spec: StreamSubscription,
        groups: Groups,
        in_flight: InFlight,
        retry: TransportRetry,
        board: StatsBoard,
        connect_timeout_s: float,
    ) -> None:
        self.client = client
        self.connect_timeout_s = connect_timeout_s
        self.spec = spec
        self.groups = groups
        self.in_flight = in_flight
        self.retry = retry
        self.board = board
        # The read count starts at the reference's 10 and adapts (see _adapt): up to spec.count
        # while replies stay small, down when entries are large, so that one reply stays near
        # spec.read_bytes whatever a writer put in the stream.
        self._command = GroupReader(spec.group, spec.consumer, spec.streams, min(spec.count, 10), spec.timing.block_ms)
        self._own: aioredis.Redis | None = None
        self._opening: anyio.Event | None = None  # set once open_early's handshake ended
        self._handshake_s: float | None = None
        self.is_cluster = is_cluster(client)
        self._stream_of: dict[bytes | str, str] = {}
        for stream in spec.streams:
            self._stream_of[stream] = stream
            self._stream_of[stream.encode()] = stream

    @property
    def command(self) -> GroupReader:
        """The packed XREADGROUP of a single node (its count is where cluster reads start)."""
        return self._command

    def _read_client(self) -> aioredis.Redis:
        """The dedicated connection for blocking reads (same server and options, no socket timeout:
        the hard read timeout governs it)."""
        if self._own is None:
            own = copy_pool(self.client.connection_pool, socket_timeout=None)
            metrics = self.board.metrics
            if metrics is not None:
                count_connect_attempts(own, functools.partial(metrics.inc, "connection_attempts", ("read",)))
            self._own = aioredis.Redis(connection_pool=own, single_connection_client=True)
        return self._own

    async def aclose(self) -> None:
        """Close the read connection (it is reopened on the next read)."""
        client, self._own = self._own, None
        if client is not None:
            with anyio.move_on_after(1.0, shield=True), contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)  # a broken socket may complain

    async def open_early(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect the read connection while the start-up work runs (trimming check, own pending
        entries): on a slow link its handshake round trips would otherwise come after that work,
        in front of the first read. A failure is left to the first read, which reports and
        retries it; that read waits for this handshake to end (one connection, one handshake)."""
        if self.is_cluster:  # ClusterReads opens a connection per node itself
            task_status.started()
            return
        opening = self._opening = anyio.Event()
        task_status.started()
        started = anyio.current_time()
        try:
            with anyio.move_on_after(self.connect_timeout_s), contextlib.suppress(Exception):
                await self._command.connection(self._read_client())
                self._handshake_s = anyio.current_time() - started
        finally:
            opening.set()

    async def handshake_time(self) -> float | None:
        """Seconds :meth:`open_early`'s handshake took, once it ended (None: it failed, or a cluster)."""
        if self._opening is not None:
            await self._opening.wait()
        return self._handshake_s

    async def read_once(self) -> list[tuple[bytes, list[RawEntry]]] | None:
        """One XREADGROUP (pre-packed, raw reply: see :mod:`bus.wire`) under the hard read timeout."""
        timeout_s = self.spec.timing.read_timeout_s
        opening = self._opening
        if opening is not None and not opening.is_set():
            await opening.wait()
        try:
            with anyio.fail_after(self.connect_timeout_s), redis_errors("connect for XREADGROUP"):
                conn = await self._command.connection(self._read_client())
            with anyio.fail_after(timeout_s), redis_errors("XREADGROUP"):
                return await self._command.read(conn)
        except AuthenticationError:
            raise
        except GroupMissingError as exc:
            await self.groups.recover(exc)
            return None
        except (TimeoutError, BackendError) as exc:
            await self.aclose()
            if isinstance(exc, BusError):
                raise
            raise BackendTimeoutError(
                f"XREADGROUP did not answer within {timeout_s}s; the connection was reset"
            ) from exc

    async def run(self, batches: MemoryObjectSendStream[list[Entry]]) -> None:
        """Read until cancelled; each batch goes to the dispatcher as one list."""
        if self.is_cluster:
            from ._cluster_reading import ClusterReads

            await ClusterReads(self).run(batches)
            return
        early_s = self.spec.timing.block_ms / 2000
        while True:
            started = anyio.current_time()
            reply = await self.retry("XREADGROUP", self.read_once)
            if reply:
                await self.deliver(reply, batches, self._command)
            elif anyio.current_time() - started < early_s:
                # An empty BLOCK read that returned early (fakeredis ignores BLOCK when COUNT is
                # given; a recreated group) must not become a busy loop: poll gently instead.
                await anyio.sleep(min(0.01, early_s))

    async def deliver(
        self,
        reply: list[tuple[bytes, list[RawEntry]]],
        batches: MemoryObjectSendStream[list[Entry]],
        command: GroupReader,
    ) -> int:
        """Admit one read's entries and hand them to the dispatcher as one batch; how many."""
        stream_of = self._stream_of
        batch: list[Entry] = []
        size = 0
        for key, entries in reply:
            admitted = self.in_flight.admit(stream_of[key], entries)
            if batch:
                batch += admitted
            else:  # one stream (the usual reply): its list as it is, no copy
                batch = admitted
            size += _fields_size(entries)
        self._adapt(len(batch), size, command)
        self.board.stats.read += len(batch)
        self.board.notify()
        await send_batch(batches, batch, self.in_flight)
        await anyio.lowlevel.checkpoint()  # let the dispatcher, workers and acker in between
        return len(batch)

    def _adapt(self, n: int, size: int, command: GroupReader | None = None) -> None:
        """The next read's count: double while replies stay under half of ``read_bytes`` (up to
        ``spec.count``), else as many average entries as ``read_bytes`` holds (at least 1). Of
        ``command`` (a cluster's slot read), by default of the single node's read."""
        command = command or self._command
        budget = self.spec.read_bytes
        count = command.count
        wanted = count * 2 if size * 2 < budget else budget * n // max(size, 1)
        wanted = max(1, min(wanted, self.spec.count))
        if wanted != count:
            command.set_count(wanted)

    async def drain_own_pending(self, batches: MemoryObjectSendStream[list[Entry]]) -> None:
        """Entries this consumer name read but never acked (a crash): first, before new ones."""
        after = dict.fromkeys(self.spec.streams, b"0")
        while after:
            page, after = await self.retry("reading own pending entries", functools.partial(self._own_page, after))
            self.board.stats.read += len(page)
            await send_batch(batches, self.in_flight.admit_pending(page), self.in_flight)

    async def _own_page(self, after: dict[str, bytes]) -> tuple[list[PendingEntry], dict[str, bytes]]:
        spec = self.spec
        try:
            return await read_own_pending(self.client, spec.group, spec.consumer, after, spec.count)
        except GroupMissingError as exc:
            await self.groups.recover(exc)
            return [], {}
