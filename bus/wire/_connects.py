"""Counting connection attempts: every socket connect a pool's connections try (first connects,
reconnects, and redis-py's own connect retries), through a subclass of the pool's connection class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["count_connect_attempts"]


def count_connect_attempts(pool: Any, on_attempt: Callable[[], None]) -> None:
    """Call ``on_attempt()`` before each socket connect of ``pool``'s connections from now on.

    Applies to connections the pool creates later (and to a pool built from its connection class,
    which then counts through its own call to this function). Calling it again on the same pool
    replaces the callback instead of counting twice.
    """
    base = getattr(pool.connection_class, "_bus_counted_base", pool.connection_class)

    class Counted(base):  # type: ignore[misc, valid-type]
        _bus_counted_base = base

        async def _connect(self) -> None:
            on_attempt()
            await super()._connect()

    Counted.__name__ = Counted.__qualname__ = base.__name__
    pool.connection_class = Counted
