"""Backend health of a consume loop: ride out Redis-wide refusals instead of burning deliveries.

When Redis refuses for a reason about Redis, not about the event (out of memory under
``noeviction``, a read-only replica after a failover, loading its dataset, writes stopped after a
failed save, the connection lost, a NOAUTH race after a restart), every handler that writes to
Redis fails, and so would every redelivery: counting those failures toward ``max_deliveries``
dead-letters good events. Instead the loop *pauses*:

- **Confirm.** A failure whose exception is, or chains to, such an error (:func:`outage_cause`:
  the bus's own calls raise typed :class:`~bus.BackendError` kinds, :func:`bus.redis_effect`
  included; a handler's own redis-py error is translated first) is checked with one write probe
  (:data:`PROBE_SCRIPT`). If the probe passes, the error was about that command or event, and it
  counts as usual (a handler that overfills Redis by itself is still dead-lettered in the end).
  If the probe is refused too, the consumer is paused.
- **Pause.** The reader, the dead-letter and ack flushes, the marker lookups (all through
  :class:`~bus.consume._retry.TransportRetry`), the workers before a new entry, and the
  maintenance (reclaim, keep-alive, trimming) wait for the resume; nothing is read or claimed.
- **Not a delivery attempt.** A handler that failed because of the outage is not given up: its
  worker keeps the entry in flight, waits for the resume and calls the handler again in-process
  (:meth:`BackendHealth.ride_out`). The entry is never released, so it is neither redelivered nor
  reclaimed because of the outage, and its delivery count in Redis (the PEL counter that
  XREADGROUP and XCLAIM raise, and by which both this bus and the reference dead-letter) does not
  grow however long the outage lasts. No per-entry bookkeeping is needed, and a peer, or a
  reference consumer, sees the true count. A shutdown during the outage leaves the entry pending
  with the one delivery it had.
- **Probe and resume.** One waiter at a time probes, with capped, jittered exponential backoff
  (``retry_backoff_s`` doubling up to ``outage_probe_max_s``); the first probe that writes ends
  the pause and every waiter goes on.

The probe is ``EVAL "#!lua\\nreturn 1" 0``: a Redis 7 script without the ``no-writes`` flag is
refused exactly as writes are (OOM, READONLY, MISCONF, LOADING) but writes no key. A reply that
is no outage (a Redis 6 without shebang support answers a script error) counts as "Redis answers".
On Redis Cluster the probe runs on every primary (see :func:`probe_writes`): the loop pauses while
any node it may write to refuses, and resumes once every one writes.

**One voice per outage** (:class:`OutageVoice`, one per Redis server per process, shared by its
consumers): one warning with the cause when the first consumer pauses, then at most one summary
line per ``outage_log_interval_s`` (refused operations, paused consumers), and one line when the
last consumer resumes, with the outage's duration. What each consumer met during the outage is
logged at debug.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import redis.exceptions as rex

from .._errors import (
    AuthenticationError,
    BackendError,
    BackendRefusedError,
    BackendUnavailableError,
)
from .._redis import redis_errors, translate_error
from ..wire import is_cluster, on_each_primary, pack, refresh_slots

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ._stats import StatsBoard

__all__ = [
    "PROBE_SCRIPT",
    "BackendHealth",
    "OutageVoice",
    "capped_backoff",
    "outage_cause",
    "paused_consumers",
    "probe_writes",
    "write_refusal",
]

log = logging.getLogger("bus.consume")

#: The write probe: refused by Redis 7 whenever writes are (see the module docstring).
PROBE_SCRIPT = "#!lua\nreturn 1\n"


def _is_outage(error: BackendError) -> bool:
    if isinstance(error, BackendRefusedError | BackendUnavailableError):
        return True
    # A NOAUTH race (a restarted Redis with a password, a connection made before AUTH): not
    # wrong credentials (WRONGPASS) and not an ACL denial (NOPERM), which retrying cannot fix.
    return type(error) is AuthenticationError and str(error).endswith("(NOAUTH)")


def outage_cause(exc: BaseException) -> BackendError | None:
    """The Redis-wide refusal behind ``exc`` (itself, or along its ``__cause__``/``__context__``
    chain), else None. redis-py errors (a handler's own client) are translated first."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, BackendError):
            if _is_outage(cur):
                return cur
        elif isinstance(cur, rex.RedisError):
            translated = translate_error(cur)
            if isinstance(translated, BackendError) and _is_outage(translated):
                return translated
        cur = cur.__cause__ or cur.__context__
    return None


_PROBE = pack("EVAL", PROBE_SCRIPT, 0)


async def probe_writes(client: aioredis.Redis) -> None:
    """One write probe (:data:`PROBE_SCRIPT`); raises the bus error Redis answered with.

    On Redis Cluster a keyless command has no slot, so redis-py would send it to a random node:
    the probe goes to every primary instead (one after another), and the first refusal raises,
    naming its node. A consumer reads, acks and dead-letters on many nodes, so it pauses while
    any of them refuses writes, as it would while a single Redis does."""
    if is_cluster(client):
        with redis_errors("write probe"):
            try:
                replies = await on_each_primary(client, _PROBE, 1, None)
            except (rex.ConnectionError, rex.TimeoutError, OSError):
                # A master gone (a failover): the next probe asks the masters of a fresh slot map
                # (a paused consumer reads nothing, so no MOVED would refresh it).
                with contextlib.suppress(rex.RedisError, OSError):
                    await refresh_slots(client)
                raise
        for node, reply in replies:
            if isinstance(reply, Exception):
                raise translate_error(reply, f"write probe on {node}") from reply
        return
    with redis_errors("write probe"):
        await client.eval(PROBE_SCRIPT, 0)


async def write_refusal(client: aioredis.Redis) -> BackendError | None:
    """The Redis-wide refusal a write meets right now (one probe), else None."""
    try:
        await probe_writes(client)
    except BackendError as exc:
        return exc if _is_outage(exc) else None
    return None


def capped_backoff(attempt: int, initial_s: float, max_s: float) -> float:
    """The wait before retry ``attempt`` (1, 2, ...): ``initial_s`` doubling up to ``max_s``, plus
    up to ``initial_s`` of jitter (tenacity's ``wait_exponential_jitter``), never over ``max_s``."""
    if max_s <= 0:
        return 0.0
    base = min(max_s, initial_s * 2.0 ** max(attempt - 1, 0))
    return min(max_s, base + random.uniform(0, initial_s))


class OutageVoice:
    """The log of one Redis server's outage in this process (see the module docstring)."""

    def __init__(self, server: str, interval_s: float) -> None:
        self.server = server
        self.interval_s = interval_s
        self.paused: set[BackendHealth] = set()
        #: Operations refused since the outage began, and at the last summary line.
        self.refused = 0
        self._summarised = 0
        self._started = 0.0
        self._last_line = 0.0

    def pause(self, health: BackendHealth, cause: BackendError, what: str) -> None:
        """``health`` paused; the first consumer to pause opens the outage with one warning."""
        self.refused += 1
        if not self.paused:
            self._started = self._last_line = anyio.current_time()
            self.refused, self._summarised = 1, 0
            log.warning(
                "Redis at %s refuses %s: %s; consumers pause (no reads, no claims, failures caused by it are "
                "not counted as deliveries) and resume by themselves once a write succeeds",
                self.server,
                what,
                cause,
            )
        else:
            log.debug("consumer %s pauses too (%s refused: %s)", health.name, what, cause)
        self.paused.add(health)

    def note(self, health: BackendHealth, cause: BaseException, what: str) -> None:
        """One more refused operation during the outage (debug only)."""
        self.refused += 1
        log.debug("during the outage of %s, %s (consumer %s) was refused: %s", self.server, what, health.name, cause)

    def tick(self) -> None:
        """At most one summary line per interval while the outage lasts."""
        now = anyio.current_time()
        if not self.paused or now - self._last_line < self.interval_s:
            return
        log.warning(
            "Redis at %s still refuses writes after %.0f s: %d operations refused in the last %.0f s, "
            "%d consumer(s) paused",
            self.server,
            now - self._started,
            self.refused - self._summarised,
            now - self._last_line,
            len(self.paused),
        )
        self._summarised, self._last_line = self.refused, now

    def resume(self, health: BackendHealth) -> None:
        """``health`` resumed; the last one closes the outage with its duration."""
        self.paused.discard(health)
        if self.paused:
            log.debug("consumer %s resumes (%d still paused)", health.name, len(self.paused))
            return
        log.warning(
            "Redis at %s accepts writes again: the outage lasted %.1f s (%d operations refused); consumers resume",
            self.server,
            anyio.current_time() - self._started,
            self.refused,
        )


_VOICES: dict[str, OutageVoice] = {}


def _voice(server: str, interval_s: float) -> OutageVoice:
    voice = _VOICES.get(server)
    if voice is None:
        voice = _VOICES[server] = OutageVoice(server, interval_s)
    return voice


def paused_consumers() -> list[BackendHealth]:
    """Every consume loop of this process paused by an outage right now."""
    return [h for voice in _VOICES.values() for h in voice.paused]


def _server_of(client: aioredis.Redis) -> str:
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a RedisCluster: one voice for the whole cluster
        node = client.get_default_node() if hasattr(client, "get_default_node") else None
        return f"cluster {node.host}:{node.port}" if node is not None else "cluster"
    kwargs = pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}/{kwargs.get('db', 0)}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


class BackendHealth:
    """Pause, probe and resume of one consume loop (see the module docstring).

    ``probe`` (default: :data:`PROBE_SCRIPT` on ``client``) raises a :class:`~bus.BackendError`
    when Redis refuses; ``sleep`` is the backoff's sleep (tests pass a zero ``probe_max_s``).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        name: str,
        *,
        probe_initial_s: float,
        probe_max_s: float,
        log_interval_s: float,
        board: StatsBoard | None = None,
        probe: Callable[[], Awaitable[object]] | None = None,
        server: str | None = None,
    ) -> None:
        self.client = client
        self.board = board
        self.name = name
        self.probe_initial_s = probe_initial_s
        self.probe_max_s = probe_max_s
        self.voice = _voice(server or _server_of(client), log_interval_s)
        self._probe = probe or self._probe_writes
        #: True while Redis refuses and this loop waits for it (set here only; a plain attribute, not
        #: a property: the workers read it once per entry).
        self.paused = False
        self._lock = anyio.Lock()
        #: What paused the loop (empty when running), and since when (``anyio.current_time()``).
        self.reason = ""
        self.since = 0.0

    async def _probe_writes(self) -> None:
        await probe_writes(self.client)

    async def _writes(self) -> bool:
        """True when the probe passes, or fails for a reason that is no outage (Redis answers)."""
        try:
            await self._probe()
        except BackendError as exc:
            return not _is_outage(exc)
        return True

    async def confirm(self, exc: BaseException, what: str) -> bool:
        """True when ``exc`` comes from a Redis-wide refusal that is still going on: the loop is
        paused (now, or already). False for any other failure, and for a refusal the probe does not
        confirm (it was about that command or event): the caller handles it as usual."""
        cause = outage_cause(exc)
        if cause is None:
            return False
        if self.paused:
            self.voice.note(self, cause, what)
            return True
        async with self._lock:  # concurrent failures: one probe, the others see its verdict
            if self.paused:
                self.voice.note(self, cause, what)
                return True
            if await self._writes():
                return False
            self.paused = True
            self.reason = str(cause)
            self.since = anyio.current_time()
            self.voice.pause(self, cause, what)
            self._changed(outages=1)
            return True

    async def wait_resumed(self) -> None:
        """Return once the loop is not paused; one waiter at a time probes with capped backoff."""
        if not self.paused:
            return
        async with self._lock:
            attempt = 0
            while self.paused:
                attempt += 1
                await anyio.sleep(capped_backoff(attempt, self.probe_initial_s, self.probe_max_s))
                self.voice.tick()
                if await self._writes():
                    self.paused = False
                    self.reason = ""
                    self.voice.resume(self)
                    self._changed()

    async def ride_out(
        self, error: BaseException | None, again: Callable[[], Awaitable[BaseException | None]], what: str
    ) -> BaseException | None:
        """While ``error`` is a confirmed outage: wait for the resume and call ``again`` (the same
        handler on the same delivery); the error it ends with, or None once it succeeded."""
        while error is not None and await self.confirm(error, what):
            self._changed(failures=1)
            await self.wait_resumed()
            error = await again()
        return error

    def note(self, exc: BaseException, what: str) -> bool:
        """True (and counted at debug) when ``exc`` is an outage error met while paused: the
        caller then stays quiet about it."""
        cause = outage_cause(exc)
        if cause is None or not self.paused:
            return False
        self.voice.note(self, cause, what)
        return True

    def _changed(self, outages: int = 0, failures: int = 0) -> None:
        board = self.board
        if board is None:
            return
        board.stats.outages += outages
        board.stats.outage_failures += failures
        if board.metrics is not None:
            board.metrics.set("backend_paused", float(len(paused_consumers())))
        board.notify()

    def close(self) -> None:
        """The loop ended: no longer counted among the paused consumers of its server."""
        if self.paused:
            self.voice.paused.discard(self)
            self._changed()
            log.info("consumer %s stopped while paused by the outage of %s", self.name, self.voice.server)

    def status(self) -> str | None:
        """None while consuming; else a sentence: since when the loop is paused, and why."""
        if not self.paused:
            return None
        return f"paused for {anyio.current_time() - self.since:.0f} s: Redis refuses writes ({self.reason})"
