"""Replaying and purging dead letters.

A replay writes a dead letter's original fields, byte for byte and in order, to its source
stream as a new entry and deletes the dead letter, in ONE Lua script per entry
(:data:`REPLAY_SCRIPT`): it writes only if the dead letter still exists (two operators replaying
at once replay it once) and deletes it only after the XADD succeeded (a refused XADD, e.g.
WRONGTYPE, deletes nothing; MULTI/EXEC would still run the XDEL). Replays never trim the source
stream. A purge XDELs exactly the entries given, in one MULTI/EXEC.

On Redis Cluster a per-type stream ``X`` and its dead letters ``X:dead-letter`` hash to
different slots (the reference's names carry no hash tag), and a script must keep its keys in
one slot. There a replay is three commands instead (:func:`_replay_in_steps`): XRANGE (is the
dead letter still there?), XADD to the source, then XDEL. Two operators replaying the same dead
letter at the same moment may then both write it, and a crash between the XADD and the XDEL
leaves the dead letter to be replayed again: either way the entry is in the source stream twice
with the same event id, which the consumers' processed markers absorb. With BUS_KEY_HASHTAG
both keys carry the tag and the script runs as on a single node. A purge on a cluster is one
XDEL per stream without MULTI/EXEC (the streams are in different slots).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .._errors import AuthenticationError, BackendTimeoutError, BackendUnavailableError, BusError
from .._redis import is_cluster_client as is_cluster
from .._redis import key_slot as slot_of
from .._redis import redis_errors, translate_error
from ._deadletters import DeadLetterView
from ._streams import s

if TYPE_CHECKING:
    from .._bus import EventBus

__all__ = ["REPLAY_SCRIPT", "ReplayOutcome", "purge_dead_letters", "replay_dead_letters"]

#: KEYS[1] = dead-letter stream, KEYS[2] = source stream; ARGV[1] = dead-letter entry id,
#: ARGV[2..] = the original field/value pairs. Returns the new entry id, or nil when the dead
#: letter is gone (already replayed or purged). The XDEL runs only after the XADD succeeded.
REPLAY_SCRIPT = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
local t = redis.call('TYPE', KEYS[2])
t = t['ok'] or t
if t ~= 'stream' and t ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. t .. ', not a stream; nothing was replayed')
end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""
_CHUNK = 100


class ReplayOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one dead letter: ``replayed`` (``entry_id`` is the new entry in the
    source stream), ``skipped`` (gone meanwhile) or ``failed`` (``detail`` says why; kept)."""

    dead_letter: DeadLetterView
    status: Literal["replayed", "skipped", "failed"]
    entry_id: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the dead letter was replayed."""
        return self.status == "replayed"


async def replay_dead_letters(bus: EventBus, dead_letters: Sequence[DeadLetterView]) -> list[ReplayOutcome]:
    """Replay each dead letter to its source stream (see the module docstring), in order.

    A dead letter that cannot be replayed or that Redis refuses is a ``failed`` outcome, not an
    exception; NOAUTH/NOPERM raise (:class:`~bus.AuthenticationError`), as do unreachable/timeout.
    """
    outcomes: dict[int, ReplayOutcome] = {}
    todo: list[tuple[int, DeadLetterView]] = []
    for i, v in enumerate(dead_letters):
        if v.original is None or not v.source_stream:
            outcomes[i] = ReplayOutcome(
                dead_letter=v, status="failed", detail=v.problem or "the dead letter names no source stream"
            )
        else:
            todo.append((i, v))
    if is_cluster(bus.client):
        split = [(i, v) for i, v in todo if slot_of(v.dead_letter_stream) != slot_of(v.source_stream)]
        for i, v in split:
            outcomes[i] = await _replay_in_steps(bus, v)
        todo = [(i, v) for i, v in todo if i not in outcomes]
    for start in range(0, len(todo), _CHUNK):
        chunk = todo[start : start + _CHUNK]
        pipe = bus.client.pipeline(transaction=False)
        for _, v in chunk:
            assert v.original is not None
            args = [v.id.encode()] + [part for pair in v.original for part in pair]
            pipe.eval(REPLAY_SCRIPT, 2, v.dead_letter_stream, v.source_stream, *args)
        with redis_errors("replay (EVAL)"):
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        for (i, v), reply in zip(chunk, replies, strict=True):
            if isinstance(reply, Exception):
                failure = translate_error(reply, "replay")
                if isinstance(failure, AuthenticationError):
                    raise failure from reply
                outcomes[i] = ReplayOutcome(dead_letter=v, status="failed", detail=str(reply))
            elif reply is None:
                detail = "no longer in the dead-letter stream (replayed or purged meanwhile)"
                outcomes[i] = ReplayOutcome(dead_letter=v, status="skipped", detail=detail)
            else:
                outcomes[i] = ReplayOutcome(dead_letter=v, status="replayed", entry_id=s(reply))
    return [outcomes[i] for i in range(len(dead_letters))]


async def purge_dead_letters(bus: EventBus, dead_letters: Sequence[DeadLetterView]) -> int:
    """Delete these dead letters (XDEL per stream, one MULTI/EXEC); returns how many were deleted."""
    by_stream: dict[str, list[str]] = {}
    for v in dead_letters:
        by_stream.setdefault(v.dead_letter_stream, []).append(v.id)
    if not by_stream:
        return 0
    pipe = bus.client.pipeline(transaction=not is_cluster(bus.client) or len(by_stream) == 1)
    for name, ids in by_stream.items():
        pipe.xdel(name, *ids)
    with redis_errors("XDEL (dead letters)"):
        return sum(int(n) for n in await pipe.execute())


async def _replay_in_steps(bus: EventBus, v: DeadLetterView) -> ReplayOutcome:
    """A replay whose two streams are in different cluster slots: XRANGE, XADD, XDEL (see the module docstring)."""
    assert v.original is not None
    client: Any = bus.client
    try:
        with redis_errors("replay (XRANGE)"):
            if not await client.xrange(v.dead_letter_stream, v.id, v.id):
                detail = "no longer in the dead-letter stream (replayed or purged meanwhile)"
                return ReplayOutcome(dead_letter=v, status="skipped", detail=detail)
        with redis_errors("replay (XADD)"):
            kind = await client.type(v.source_stream)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind not in ("stream", "none"):
                detail = f"WRONGTYPE {v.source_stream} holds a {kind}, not a stream; nothing was replayed"
                return ReplayOutcome(dead_letter=v, status="failed", detail=detail)
            entry_id = await client.execute_command(
                "XADD", v.source_stream, "*", *(part for pair in v.original for part in pair)
            )
        with redis_errors("replay (XDEL)"):
            await client.xdel(v.dead_letter_stream, v.id)
    except AuthenticationError:
        raise
    except BusError as exc:
        if isinstance(exc, BackendUnavailableError | BackendTimeoutError):
            raise
        return ReplayOutcome(dead_letter=v, status="failed", detail=str(exc))
    return ReplayOutcome(dead_letter=v, status="replayed", entry_id=s(entry_id))
