"""Exactly-once side effects in Redis: apply an effect and its effect marker in one transaction.

Delivery is at-least-once: a handler whose effect happened but whose entry was not acked yet
(a SIGKILL between the two, a frozen consumer whose entries a peer reclaimed) runs again.
A handler makes its *effect* happen once by committing it together with
:attr:`bus.Delivery.effect_key` and skipping when the key is already there. In SQL that is an
``INSERT ... ON CONFLICT DO NOTHING`` of the key in the effect's own transaction; for effects in
Redis, :func:`redis_effect` does it::

    async with redis_effect(bus, delivery) as tx:
        tx.pipe.hincrby(f"balance:{account}", "paid", amount)   # queued, not run yet
        tx.pipe.xadd("audit", {"event": delivery.event_id})
    tx.applied   # False when an earlier delivery already committed this effect

How: ``WATCH`` the marker ``{prefix}effect:{effect_key}``; if it exists the effect is skipped;
otherwise the queued commands and ``SET marker PX ttl`` go in one ``MULTI``/``EXEC``. A
concurrent delivery that committed first makes our EXEC fail on the WATCH, and the re-check finds
its marker (skipped). Three round trips on one pooled connection. A connection lost around EXEC
raises (the outcome is unknown): the handler fails, the entry is retried, and the marker tells
the retry whether the effect happened. Redis has no rollback: if a queued command fails when it
runs (WRONGTYPE: someone else's value at one of your keys), the other commands did run; the
marker is then deleted again and :class:`bus.BackendError` raised, so the effect is retried (the
commands that ran will run again: fix the key). The marker expires after ``ttl_s`` (default the
bus's ``marker_ttl_s``, 3 days): redeliveries after that would apply the effect again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import redis.exceptions as rex

from ._errors import BackendError, ConfigurationError
from ._redis import redis_errors

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline

    from ._bus import EventBus
    from .consume import Delivery

__all__ = ["RedisEffect", "apply_once", "effect_marker_key", "redis_effect"]

#: Default lifetime of an effect marker when neither a bus nor ``ttl_s`` gives one (the
#: bus's default ``marker_ttl_s``).
DEFAULT_TTL_S = 3 * 24 * 3600


def effect_marker_key(delivery: Delivery, prefix: str = "alga-psa:") -> str:
    """The Redis key of a delivery's effect marker: ``{prefix}effect:{effect_key}``."""
    if not delivery.group or not delivery.handler_key:
        raise ConfigurationError(
            "delivery", "has no group or handler key: only deliveries made by the consume loop carry an effect key"
        )
    return f"{prefix}effect:{delivery.effect_key}"


class RedisEffect:
    """One guarded effect: queue its commands on :attr:`pipe` inside ``async with``.

    :attr:`already_applied` is known when the block starts (queue nothing, or anything: it is
    discarded); :attr:`applied` is True once this call committed the effect.
    """

    __slots__ = ("already_applied", "applied", "key", "pipe")

    def __init__(self, pipe: Pipeline, key: str, already_applied: bool) -> None:
        self.pipe = pipe
        self.key = key
        self.already_applied = already_applied
        self.applied = False


@asynccontextmanager
async def redis_effect(
    target: EventBus | aioredis.Redis,
    delivery: Delivery,
    *,
    ttl_s: int | None = None,
    prefix: str | None = None,
) -> AsyncIterator[RedisEffect]:
    """Apply the commands queued in the block exactly once per :attr:`~bus.Delivery.effect_key`.

    ``target`` is the bus (its client, key prefix and ``marker_ttl_s``) or the redis client of
    the Redis holding the effect (the marker must live where the effect does; then give
    ``prefix``/``ttl_s``, defaults ``alga-psa:`` and 3 days). An exception in the block discards
    the queued commands and propagates.
    """
    client, prefix, ttl_s = _resolve(target, prefix, ttl_s)
    key = effect_marker_key(delivery, prefix)
    with redis_errors(f"effect of {delivery.effect_key}"):
        async with client.pipeline(transaction=True) as pipe:
            effect = RedisEffect(pipe, key, already_applied=await _watch(pipe, key))
            if effect.already_applied:
                await pipe.reset()  # type: ignore[no-untyped-call]
            else:
                pipe.multi()  # type: ignore[no-untyped-call]
            yield effect
            if effect.already_applied:
                return
            pipe.set(key, delivery.entry_id, px=ttl_s * 1000)
            try:
                results = await pipe.execute(raise_on_error=False)
            except rex.WatchError:
                # Another delivery wrote (or removed) the marker between our WATCH and EXEC.
                if await client.exists(key):
                    effect.already_applied = True
                    return
                raise BackendError(
                    f"effect of {delivery.effect_key}: the marker changed while the effect was queued; retry"
                ) from None
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                # Not applied as a whole: drop the marker so the retry applies it. EXPIRE 0 deletes
                # the key and needs no DEL grant (tenant ACL users have EXPIRE, not DEL).
                await client.expire(key, 0)
                raise BackendError(
                    f"effect of {delivery.effect_key}: {len(failed)} of {len(results) - 1} commands failed when "
                    f"they ran (the others ran; the marker was removed so that the effect is retried): {failed[0]}"
                )
            effect.applied = True


async def apply_once(
    target: EventBus | aioredis.Redis,
    delivery: Delivery,
    effect: Callable[[Pipeline], Any],
    *,
    ttl_s: int | None = None,
    prefix: str | None = None,
) -> bool:
    """``effect(pipe)`` queues the commands; they run once per effect key. True if applied now,
    False if an earlier delivery had (``effect`` is then not called)."""
    async with redis_effect(target, delivery, ttl_s=ttl_s, prefix=prefix) as tx:
        if not tx.already_applied:
            effect(tx.pipe)
    return tx.applied


async def _watch(pipe: Pipeline, key: str) -> bool:
    """WATCH ``key`` and tell whether it exists (immediate mode: two round trips)."""
    await pipe.watch(key)
    return bool(await pipe.exists(key))


def _resolve(
    target: EventBus | aioredis.Redis, prefix: str | None, ttl_s: int | None
) -> tuple[aioredis.Redis, str, int]:
    if isinstance(target, aioredis.Redis):
        return target, prefix if prefix is not None else "alga-psa:", ttl_s or DEFAULT_TTL_S
    settings = target.settings
    return target.client, prefix if prefix is not None else settings.prefix, ttl_s or settings.marker_ttl_s
