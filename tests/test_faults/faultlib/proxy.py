"""A small TCP fault proxy: clients connect to it, it forwards to an upstream (a redis-server).

The proxy runs its own asyncio loop in a daemon thread, so the same object is driven from sync
and async tests alike; every control method is thread-safe and returns once the proxy applied it.

Forwarding modes (one at a time):

- ``pass_through()``: forward as is.
- ``delay(ms, jitter_ms)``: every chunk, in each direction, is held ``ms ± jitter_ms`` (a round
  trip gains about twice that); order is kept.
- ``blackhole()``: nothing is forwarded in either direction, sockets stay open, new connections
  are accepted and held. Bytes already read are kept and flow again after ``heal()`` (as TCP
  retransmission would deliver them after a short partition).

Independent faults:

- ``reset()``: abort every open connection now (RST on both sides); the mode is unchanged.
- ``refuse(True)``: close every new connection at once (RST) until ``refuse(False)``.
- ``drop_next_reply(n)``: the next ``n`` upstream-to-client chunks are dropped (once each), so
  the client waits for a reply that never comes while the server did run the command.

``heal()`` goes back to pass-through with no refusal and no pending drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Self, TypeVar

__all__ = ["FaultProxy", "ProxyEvent", "ProxyStats"]

T = TypeVar("T")
Mode = Literal["pass", "delay", "blackhole"]
_CHUNK = 64 * 1024
_QUEUE_CHUNKS = 256
_CONTROL_TIMEOUT_S = 5.0


@dataclass
class ProxyStats:
    """Counters since the proxy started (a snapshot is returned by :attr:`FaultProxy.stats`)."""

    accepted: int = 0
    refused: int = 0
    upstream_failures: int = 0
    resets: int = 0
    replies_dropped: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    active: int = 0


class ProxyEvent(NamedTuple):
    """Something that happened to a connection; ``at`` is ``time.monotonic()``.

    Kinds: ``accept``, ``refuse``, ``client_closed`` / ``upstream_closed`` (that side closed or
    broke the connection itself, e.g. a client giving up after a timeout), ``reset`` (by us).
    """

    at: float
    kind: str
    conn: int


@dataclass(eq=False)
class _Conn:
    number: int
    client: asyncio.StreamWriter
    handler: asyncio.Task[Any] | None
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closing: bool = False  # we close it: EOFs seen from now on are not the peers' doing

    def abort(self) -> None:
        """Both sides get an RST."""
        self.closing = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                _abort(writer)

    def close(self) -> None:
        """Both sides get a FIN after what was written (a normal end, e.g. after QUIT)."""
        self.closing = True
        for writer in (self.client, self.upstream):
            if writer is not None and not writer.transport.is_closing():
                writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), not FIN: the peer sees ECONNRESET like a dropped link."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """TCP proxy ``127.0.0.1:<port>`` -> ``upstream_host:upstream_port`` with runtime faults.

    ``with FaultProxy(upstream_port) as proxy: ...`` or ``start()``/``close()``. The listening port
    is chosen by the kernel unless ``listen_port`` is given, and stays the same until close.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", *, listen_port: int = 0) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._listen_port = listen_port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._stats = ProxyStats()
        self._events: list[ProxyEvent] = []
        self._numbers = itertools.count(1)
        self._mode: Mode = "pass"
        self._delay_s = 0.0
        self._jitter_s = 0.0
        self._refuse = False
        self._drop_replies = 0
        self._flowing: asyncio.Event | None = None  # set unless blackholed; lives on the proxy loop
        self._random = random.Random(7)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the proxy thread and listen; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"fault-proxy->{self.upstream_port}", daemon=True)
        self._thread.start()
        if not ready.wait(_CONTROL_TIMEOUT_S) or failure:
            raise RuntimeError(f"the fault proxy did not start: {failure[0] if failure else 'timeout'}")
        return self

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._listen_port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening, abort every connection and stop the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CONTROL_TIMEOUT_S)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        handlers = [c.handler for c in self._conns if c.handler is not None]
        for conn in list(self._conns):
            conn.abort()
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=1.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``: where clients under test should connect."""
        return f"redis://127.0.0.1:{self.port}/0"

    # -- control (thread-safe) ---------------------------------------------------------------

    def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the proxy is not started")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("control the proxy from outside its own thread")

        async def run() -> T:
            return await fn()

        coro: Coroutine[Any, Any, T] = run()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(_CONTROL_TIMEOUT_S)

    def _set(self, **changes: Any) -> None:
        async def apply() -> None:
            for name, value in changes.items():
                setattr(self, name, value)
            assert self._flowing is not None
            if self._mode == "blackhole":
                self._flowing.clear()
            else:
                self._flowing.set()

        self._call(apply)

    @property
    def mode(self) -> Mode:
        """The current forwarding mode."""
        return self._mode

    def pass_through(self) -> None:
        """Forward without delay (held bytes of a blackhole flow again)."""
        self._set(_mode="pass", _delay_s=0.0, _jitter_s=0.0)

    def delay(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Hold every chunk ``ms ± jitter_ms`` milliseconds in each direction (order kept)."""
        if ms < 0 or jitter_ms < 0 or jitter_ms > ms:
            raise ValueError("need 0 <= jitter_ms <= ms")
        self._set(_mode="delay", _delay_s=ms / 1000, _jitter_s=jitter_ms / 1000)

    def blackhole(self) -> None:
        """Stop forwarding in both directions; keep every socket open and accept new ones."""
        self._set(_mode="blackhole")

    def refuse(self, on: bool = True) -> None:
        """Close every new connection immediately (RST) while ``on``; open ones are untouched."""
        self._set(_refuse=on)

    def drop_next_reply(self, n: int = 1) -> None:
        """Drop the next ``n`` upstream-to-client chunks, once each (on whichever connection)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._set(_drop_replies=n)

    def heal(self) -> None:
        """Pass-through, no refusal, no pending drops."""
        self._set(_mode="pass", _delay_s=0.0, _jitter_s=0.0, _refuse=False, _drop_replies=0)

    def reset(self) -> int:
        """Abort every open connection now (RST both sides); returns how many were aborted."""

        async def abort_all() -> int:
            conns = list(self._conns)
            for conn in conns:
                conn.abort()
                self._event("reset", conn.number)
            self._stats.resets += len(conns)
            return len(conns)

        return self._call(abort_all)

    @property
    def stats(self) -> ProxyStats:
        """A snapshot of the counters."""

        async def snapshot() -> ProxyStats:
            return ProxyStats(**{**vars(self._stats), "active": len(self._conns)})

        return self._call(snapshot)

    def events(self, kind: str | None = None, since: float = 0.0) -> list[ProxyEvent]:
        """Connection events (optionally of one kind) at or after ``since`` (monotonic time)."""

        async def snapshot() -> list[ProxyEvent]:
            return [e for e in self._events if e.at >= since and (kind is None or e.kind == kind)]

        return self._call(snapshot)

    def wait_event(self, kind: str, since: float, timeout_s: float) -> ProxyEvent:
        """Block until an event of ``kind`` at or after ``since`` happened; returns the first."""
        deadline = time.monotonic() + timeout_s
        while not (found := self.events(kind, since)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} event through the proxy within {timeout_s} s")
            time.sleep(0.01)
        return found[0]

    @property
    def pending_drops(self) -> int:
        """Reply chunks still to be dropped."""

        async def get() -> int:
            return self._drop_replies

        return self._call(get)

    def wait_active(self, n: int, timeout_s: float = 10.0) -> None:
        """Block until at least ``n`` connections are open through the proxy."""
        deadline = time.monotonic() + timeout_s
        while self.stats.active < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {n} connections through the proxy after {timeout_s} s")
            time.sleep(0.02)

    # -- data path (proxy thread) ------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        number = next(self._numbers)
        if self._refuse:
            self._stats.refused += 1
            self._event("refuse", number)
            _abort(writer)
            return
        self._stats.accepted += 1
        self._event("accept", number)
        conn = _Conn(number, writer, asyncio.current_task())
        self._conns.add(conn)
        ended = False
        try:
            await self._flowing.wait()  # a blackhole holds new connections too
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.upstream_host, self.upstream_port), _CONTROL_TIMEOUT_S
                )
            except (OSError, TimeoutError):
                self._stats.upstream_failures += 1
                _abort(writer)
                return
            conn.upstream = up_writer
            up_q: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_QUEUE_CHUNKS)
            down_q: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_QUEUE_CHUNKS)
            conn.tasks = [
                asyncio.ensure_future(self._read(reader, up_q, conn, "client_closed")),
                asyncio.ensure_future(self._write(up_q, up_writer, downstream=False)),
                asyncio.ensure_future(self._read(up_reader, down_q, conn, "upstream_closed")),
                asyncio.ensure_future(self._write(down_q, writer, downstream=True)),
            ]
            # The connection ends when either side is done writing what it received.
            writers = [conn.tasks[1], conn.tasks[3]]
            await asyncio.wait(writers, return_when=asyncio.FIRST_COMPLETED)
            ended = True
        finally:
            for task in conn.tasks:
                task.cancel()
            if ended:
                conn.close()
            else:
                conn.abort()
            self._conns.discard(conn)

    def _event(self, kind: str, number: int) -> None:
        self._events.append(ProxyEvent(time.monotonic(), kind, number))

    async def _read(
        self, src: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes] | None], conn: _Conn, closed: str
    ) -> None:
        last_due = 0.0
        try:
            while data := await src.read(_CHUNK):
                due = time.monotonic()
                if self._mode == "delay":
                    due += self._delay_s + self._random.uniform(-self._jitter_s, self._jitter_s)
                last_due = max(due, last_due)
                await queue.put((last_due, data))
        except OSError:
            pass
        if not conn.closing:
            self._event(closed, conn.number)
        await queue.put(None)

    async def _write(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], dst: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        assert self._flowing is not None
        while (item := await queue.get()) is not None:
            due, data = item
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            await self._flowing.wait()
            if downstream and self._drop_replies > 0:
                self._drop_replies -= 1
                self._stats.replies_dropped += 1
                continue
            if downstream:
                self._stats.bytes_down += len(data)
            else:
                self._stats.bytes_up += len(data)
            try:
                dst.write(data)
                await dst.drain()
            except OSError:
                return
        # EOF from the source: wait out a blackhole, then pass the EOF on.
        await self._flowing.wait()
