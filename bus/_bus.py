"""``EventBus``: the async context manager that owns the Redis client, publishing and consuming.

Publishing lives in ``_publish.py`` (Publisher), consuming in ``_consume.py`` (Consumer); this
class owns the lifecycle and hands both the same settings, keys and client.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import redis.asyncio as aioredis

from schemas import REGISTRY, Registry

from ._errors import BusClosedError
from ._keys import Keys
from ._redis import create_client, redis_errors
from ._settings import BusSettings

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["EventBus"]


class EventBus:
    """One connection to the bus: publish, subscribe and run the consume loop.

    ``async with EventBus(settings) as bus: ...``; pass ``client=`` to use an existing redis
    client (for example a fakeredis one). A closed bus raises :class:`BusClosedError`.
    """

    def __init__(
        self,
        settings: BusSettings | None = None,
        *,
        client: aioredis.Redis | None = None,
        registry: Registry = REGISTRY,
    ) -> None:
        self.settings = settings or BusSettings()
        self.keys = Keys(self.settings.prefix, self.settings.stream_prefix)
        self.registry = registry
        self.consumer_name = self.settings.resolved_consumer_name
        self._owns_client = client is None
        self._client = client if client is not None else create_client(self.settings)
        self._open = False
        self._closed = False
        #: Server facts found at connect (e.g. ``{"xadd_idmp": False, "version": "7.0.15"}``).
        self.capabilities: dict[str, Any] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> EventBus:
        """A bus configured from REDIS_* / BUS_* variables."""
        return cls(BusSettings.from_env(environ, **overrides))

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> EventBus:
        """A bus configured from a ``redis://`` or ``rediss://`` URL."""
        return cls(BusSettings.from_url(url, **overrides))

    @property
    def client(self) -> aioredis.Redis:
        """The redis client; raises once the bus is closed."""
        self._check_open()
        return self._client

    @property
    def is_closed(self) -> bool:
        """True after :meth:`aclose`."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosedError("the EventBus is closed; create a new one")

    async def connect(self) -> None:
        """Check the connection and credentials, and record server capabilities."""
        self._check_open()
        with redis_errors("connect"):
            await self._client.ping()
            info = await self._client.info("server")
        version = str(info.get("redis_version", "0"))
        self.capabilities["version"] = version
        major = int(version.split(".")[0] or 0)
        # XADD IDMP (idempotent XADD) first shipped in Redis 8.6.
        self.capabilities["xadd_idmp"] = major > 8 or (major == 8 and int(version.split(".")[1]) >= 6)
        self._open = True

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the bus (idempotent). A client passed in by the caller is left open."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.aclose()
