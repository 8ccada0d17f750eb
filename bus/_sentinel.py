"""Sentinel mode: the master of a Redis Sentinel deployment, found and followed by redis-py.

``redis+sentinel://[user:pass@]host:port,host:port/master_name[/db]``, or ``REDIS_SENTINELS``
(``host:port,host:port``) with ``REDIS_SENTINEL_MASTER``. The client is redis-py's asyncio
:class:`~redis.asyncio.sentinel.Sentinel` ``master_for(...)``: its pool's connections ask the
sentinels for the master's address at every (re)connect, so after a failover a dropped
connection reconnects to the promoted replica. The bus's own retries (publish connects, the
consume loop's backoff) drive the reconnects; the credentials and db apply to the data nodes,
the sentinels are asked without them.

A connection still open to a master that was demoted answers writes with ``READONLY`` (and
unblocks a blocking read with ``UNBLOCKED``); redis-py's ``SentinelManagedConnection`` then
disconnects and raises ``ConnectionError``. The wire layer's fast reader does the same for
these connections (``bus.wire._hiredis``), so a READONLY reply makes the next attempt find the
new master instead of failing on the old one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._settings import BusSettings

__all__ = ["SENTINEL_SCHEMES", "copy_sentinel_pool", "is_sentinel_pool", "sentinel_addresses", "sentinel_client"]

SENTINEL_SCHEMES = ("redis+sentinel",)


def sentinel_addresses(value: str, variable: str = "REDIS_SENTINELS") -> list[tuple[str, int]]:
    """``host:port,host:port`` as ``[(host, port), ...]`` (port 26379 when omitted)."""
    out: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, "26379"
        host = host.strip("[]")  # [::1]:26379
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(variable, f"{item!r} is not host:port")
        out.append((host, int(port)))
    if not out:
        raise ConfigurationError(variable, "names no sentinel (host:port,host:port)")
    return out


def sentinel_url_values(url: str) -> dict[str, Any]:
    """The settings a ``redis+sentinel://[user:pass@]h:p,h:p/master[/db]`` URL carries."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    values: dict[str, Any] = {"sentinels": ",".join(f"{h}:{p}" for h, p in sentinel_addresses(hosts, "REDIS_URL"))}
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            values["username"] = unquote(user)
        if password:
            values["password"] = unquote(password)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigurationError("REDIS_URL", "a redis+sentinel:// URL names the master: .../master_name[/db]")
    values["sentinel_master"] = unquote(path[0])
    if len(path) > 1:
        if len(path) > 2 or not path[1].isdigit():
            raise ConfigurationError("REDIS_URL", f"database {'/'.join(path[1:])!r} is not a number")
        values["db"] = int(path[1])
    return values


def sentinel_client(settings: BusSettings, kwargs: dict[str, Any]) -> aioredis.Redis:
    """A client whose connections go to the current master of ``settings.sentinel_master``."""
    assert settings.sentinels and settings.sentinel_master
    sentinel_kwargs = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
    }
    if settings.uses_tls:
        kwargs = {**kwargs, "ssl": True}  # TLS to the data nodes (the pool picks its SSL connection class)
    sentinel = Sentinel(sentinel_addresses(settings.sentinels), sentinel_kwargs=sentinel_kwargs, **kwargs)
    client: aioredis.Redis = sentinel.master_for(settings.sentinel_master, redis_class=aioredis.Redis)
    return client


def is_sentinel_pool(pool: Any) -> bool:
    """True for the pool of a sentinel-managed client."""
    return isinstance(pool, SentinelConnectionPool)


def copy_sentinel_pool(pool: SentinelConnectionPool, kwargs: dict[str, Any]) -> SentinelConnectionPool:
    """A new pool following the same master through the same sentinels, with ``kwargs`` as connection options."""
    return SentinelConnectionPool(  # type: ignore[no-untyped-call]
        pool.service_name,
        pool.sentinel_manager,
        is_master=pool.is_master,
        check_connection=pool.check_connection,
        connection_class=pool.connection_class,
        **kwargs,
    )
