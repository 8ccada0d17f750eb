"""What a handler receives (:class:`Delivery`), the handler type and one subscription.

A delivery is built once per stream entry and shared by the entry's handlers, in order. The
payload is validated before any handler runs: ``payload.value`` is the typed Struct (unknown
keys dropped) and ``payload_json`` the raw bytes exactly as they were on the wire (unknown keys
kept); :meth:`Delivery.payload_dict` decodes those bytes on demand.

:attr:`Delivery.effect_key` is the idempotency key of one handler's side effect: the same for
every delivery of the event to that handler in that group, on any consumer, so a handler that
commits its effect together with this key (``INSERT ... ON CONFLICT DO NOTHING`` in the same
transaction, or :func:`bus.redis_effect` for Redis) applies it exactly once even when the entry is
delivered twice (a crash before the ack, a frozen consumer whose entries a peer reclaimed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec

from schemas import TypedPayload

from .._errors import ConfigurationError

if TYPE_CHECKING:
    from schemas import Registry

    from .._keys import Keys

__all__ = ["Delivery", "Handler", "Subscription", "handler_key_of", "make_subscription"]


class Delivery(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One stream entry handed to a handler: the typed payload plus where it came from.

    ``delivery_count`` is 1 on the first delivery and grows with each redelivery or reclaim;
    ``forced`` is True for the reference's recovery re-publishes (``force`` = ``"1"``), which skip
    the processed-marker check. ``group`` is the consumer group and ``handler_key`` the key of the
    handler being called (its ``subscriber_id``); together they make :attr:`effect_key`.
    """

    event_id: str
    event_type: str
    timestamp: str
    tenant_id: str
    channel: str
    stream: str
    entry_id: str
    delivery_count: int
    forced: bool
    payload: TypedPayload[Any]
    payload_json: bytes
    group: str = ""
    handler_key: str = ""

    @property
    def effect_key(self) -> str:
        """The idempotency key of this handler's side effect: ``{group}|{channel}|{eventId}:{handlerKey}``.

        Identical on every delivery of the event to this handler in this consumer group (first
        delivery, redelivery after a crash, a peer's reclaim, a re-publish with the same event
        id); different per handler, channel and group. Commit it in the same transaction as the
        effect and skip when it is already there: the effect then happens once although the
        delivery is at-least-once. It is also the member of the bus's own handler marker.
        """
        return f"{self.group}|{self.channel}|{self.event_id}:{self.handler_key}"

    @property
    def value(self) -> Any:
        """The typed payload Struct (shortcut for ``payload.value``)."""
        return self.payload.value

    @property
    def variant(self) -> str:
        """Which payload shape matched: ``"catalog"``, ``"bus"``, ``"legacy"`` or ``"domain"``."""
        return self.payload.variant

    def payload_dict(self) -> dict[str, Any]:
        """The raw payload as a dict, unknown keys included (decoded on each call)."""
        value = msgspec.json.decode(self.payload_json)
        assert isinstance(value, dict)  # the envelope decoder only accepts an object payload
        return value


#: A handler: ``async def handle(delivery: Delivery) -> None``. Raising (or timing out) fails the
#: delivery; raise :class:`bus.RetryLater` to leave it pending, :class:`bus.Reject` to dead-letter it.
Handler: TypeAlias = Callable[[Delivery], Awaitable[None]]


def handler_key_of(handler: Handler) -> str:
    """A stable default key for a handler's success markers: ``module.qualname``."""
    module = getattr(handler, "__module__", None) or "handler"
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{name}"


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """One handler of one event type on one channel; ``handler_key`` names its success markers."""

    event_type: str
    channel: str
    stream: str
    handler_key: str
    handler: Handler


def make_subscription(
    registry: Registry,
    keys: Keys,
    existing: Sequence[Subscription],
    event_type: str,
    handler: Handler,
    channel: str,
    subscriber_id: str | None,
) -> Subscription:
    """Validate one subscription: a known event type and a handler key unique on its stream."""
    spec = registry.get(event_type)  # unknown types raise with suggestions
    if not channel:
        raise ConfigurationError("channel", "must be a non-empty channel name")
    key = subscriber_id or handler_key_of(handler)
    stream = keys.stream(channel, spec.event_type)
    if any(s.stream == stream and s.handler_key == key for s in existing):
        raise ConfigurationError(
            "subscriber_id", f"{key!r} already handles {spec.event_type} on {channel}; pass a distinct subscriber_id"
        )
    return Subscription(event_type=spec.event_type, channel=channel, stream=stream, handler_key=key, handler=handler)
