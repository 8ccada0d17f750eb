"""``tail``: a stream's last entries, then (``follow``) new ones, without a consumer group.

Reads with XREVRANGE and XREAD only: nothing is acked, claimed or taken from a group. While
following, a lost connection (Redis restarting, a network blip) is retried with exponential
backoff, jitter and a cap per wait (tenacity), resuming after the last entry yielded, so nothing
is skipped or repeated; credentials refused are never retried.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, stop_never
from tenacity import wait_exponential_jitter as _wait

from .._errors import BackendTimeoutError, BackendUnavailableError
from .._redis import redis_errors
from ._deadletters import fields_json
from ._errors import StreamNotFoundError
from ._streams import b, s

if TYPE_CHECKING:
    from .._bus import EventBus

__all__ = ["Reconnect", "StreamEntry", "tail"]

_XREAD_COUNT = 100


class StreamEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One stream entry as stored: its stream, id and field/value pairs (bytes, in order)."""

    stream: str
    id: str
    fields: dict[bytes, bytes]

    def to_json(self, *, raw: bool = False) -> dict[str, Any]:
        """``{"stream", "id", "fields"}``; JSON fields (``event``...) parsed unless ``raw``."""
        return {"stream": self.stream, "id": self.id, "fields": fields_json(self.fields, raw=raw)}


class Reconnect(msgspec.Struct, frozen=True, kw_only=True):
    """How :func:`tail` waits for Redis to come back while following."""

    #: First wait, doubled on each failure up to ``max_wait_s``, plus up to ``jitter_s`` at random.
    initial_s: Annotated[float, Meta(ge=0)] = 0.1
    max_wait_s: Annotated[float, Meta(ge=0)] = 5.0
    jitter_s: Annotated[float, Meta(ge=0)] = 0.5
    #: Give up (re-raise) after this long without a successful read; None: never.
    give_up_after_s: Annotated[float, Meta(gt=0)] | None = 300.0


def _entry(stream: str, entry_id: Any, fields: dict[Any, Any]) -> StreamEntry:
    return StreamEntry(stream=stream, id=s(entry_id), fields={b(k): b(v) for k, v in fields.items()})


async def tail(
    bus: EventBus,
    stream: str,
    *,
    count: int = 10,
    follow: bool = False,
    reconnect: Reconnect | None = None,
    on_missing: Callable[[str], None] | None = None,
    on_reconnect: Callable[[BaseException, float], None] | None = None,
) -> AsyncGenerator[StreamEntry, None]:
    """Yield the last ``count`` entries of ``stream`` (oldest first), then with ``follow`` every
    new entry until the caller stops iterating (or cancels).

    A missing stream raises :class:`StreamNotFoundError` unless ``follow`` (then ``on_missing``
    is called and the tail waits for it). While following, unreachable/timeout errors are
    retried per ``reconnect`` (default :class:`Reconnect`), calling ``on_reconnect(error,
    wait_s)`` before each wait; ``reconnect=None`` with ``follow`` uses the defaults.
    """
    client = bus.client
    with redis_errors(f"XREVRANGE {stream}"):
        exists = bool(await client.exists(stream))
        recent: Any = await client.xrevrange(stream, count=max(count, 1)) if exists else []
    if not exists:
        if not follow:
            raise StreamNotFoundError(stream)
        if on_missing is not None:
            on_missing(stream)
    last = s(recent[0][0]) if recent else "0-0"
    for entry_id, fields in reversed(recent[:count]):
        yield _entry(stream, entry_id, fields)
    if not follow:
        return
    policy = reconnect or Reconnect()
    block_ms = max(1, min(2000, int(bus.settings.socket_timeout_s * 500)))

    def before_sleep(state: RetryCallState) -> None:
        if on_reconnect is not None and state.outcome is not None and state.next_action is not None:
            error = state.outcome.exception()
            if error is not None:
                on_reconnect(error, state.next_action.sleep)

    async def read(after: str) -> Any:
        with redis_errors(f"XREAD {stream}"):
            return await client.xread({stream: after}, count=_XREAD_COUNT, block=block_ms)

    while True:
        # A fresh policy per read: the give-up clock starts at the first failure after a success.
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((BackendUnavailableError, BackendTimeoutError)),
            wait=_wait(multiplier=policy.initial_s, max=policy.max_wait_s, jitter=policy.jitter_s),
            stop=stop_never if policy.give_up_after_s is None else stop_after_delay(policy.give_up_after_s),
            before_sleep=before_sleep,
            reraise=True,
        )
        reply: Any = await retrying(read, last)
        items = reply.items() if isinstance(reply, dict) else (reply or [])
        for _, entries in items:
            for entry_id, fields in entries:
                last = s(entry_id)
                yield _entry(stream, entry_id, fields)
