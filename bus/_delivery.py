"""What a handler receives (:class:`Delivery`), the handler type and one subscription.

A delivery is built once per stream entry and shared by the entry's handlers, in order. The
payload is validated before any handler runs: ``payload.value`` is the typed Struct (unknown
keys dropped) and ``payload_json`` the raw bytes exactly as they were on the wire (unknown keys
kept); :meth:`Delivery.payload_dict` decodes those bytes on demand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import msgspec

from schemas import TypedPayload

__all__ = ["Delivery", "Handler", "Subscription", "handler_key_of"]


class Delivery(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One stream entry handed to a handler: the typed payload plus where it came from.

    ``delivery_count`` is 1 on the first delivery and grows with each redelivery or reclaim;
    ``forced`` is True for the reference's recovery re-publishes (``force`` = ``"1"``), which skip
    the processed-marker check.
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
