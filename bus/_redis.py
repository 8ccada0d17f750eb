"""The redis-py client factory and the one place redis errors become bus errors.

Clients are built with command retries OFF: redis-py retries a command after a connection
error by default, and a lost XADD reply then writes the entry twice. The bus retries only
where a retry is safe (reads, idempotent writes) with its own tenacity policy.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BusError,
    GroupMissingError,
    PermissionDeniedError,
)
from ._settings import BusSettings

__all__ = ["create_client", "redis_errors", "translate_error"]


def create_client(settings: BusSettings, **extra: Any) -> aioredis.Redis:
    """A redis.asyncio client for ``settings``, with command retries disabled."""
    kwargs: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
        "username": settings.username,
        "password": settings.password,
        "db": settings.db,
    }
    if settings.uses_tls:
        kwargs["ssl_cert_reqs"] = _ssl.CERT_REQUIRED if not settings.ssl_insecure_for_tests else _ssl.CERT_NONE
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname
        if settings.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = settings.ssl_ca_certs
        if settings.ssl_certfile:
            kwargs["ssl_certfile"] = settings.ssl_certfile
        if settings.ssl_keyfile:
            kwargs["ssl_keyfile"] = settings.ssl_keyfile
    kwargs.update(extra)
    if settings.redis_url and not settings.redis_url.startswith("unix://"):
        # Host, port, credentials and db were parsed from the URL into settings already.
        kwargs.update(host=settings.host, port=settings.port)
        if settings.uses_tls:
            kwargs["ssl"] = True
        return aioredis.Redis(**kwargs)
    if settings.redis_url:
        return aioredis.Redis.from_url(settings.redis_url, **kwargs)
    if settings.uses_tls:
        kwargs["ssl"] = True
    return aioredis.Redis(host=settings.host, port=settings.port, **kwargs)


def translate_error(exc: BaseException, what: str = "") -> BusError:
    """Map a redis-py exception to the bus's error tree; messages never carry credentials."""
    where = f" during {what}" if what else ""
    text = str(exc)
    if isinstance(exc, rex.NoPermissionError) or text.startswith("NOPERM"):
        return PermissionDeniedError(f"Redis denied the command{where}: {text}")
    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError) or text.startswith(("NOAUTH", "WRONGPASS")):
        code = text.split(" ")[0]
        return AuthenticationError(
            f"Redis rejected the credentials{where}: check REDIS_USERNAME/REDIS_PASSWORD or the URL ({code})"
        )
    if text.startswith("NOGROUP"):
        return GroupMissingError(f"consumer group or stream missing{where}: {text}")
    if isinstance(exc, rex.TimeoutError | TimeoutError):
        return BackendTimeoutError(f"Redis timed out{where}")
    if isinstance(exc, rex.BusyLoadingError):
        return BackendUnavailableError(f"Redis is loading its dataset{where}")
    if isinstance(exc, rex.ConnectionError | ConnectionError | OSError):
        return BackendUnavailableError(f"Redis is unreachable{where}: {type(exc).__name__}: {text}")
    return BackendError(f"Redis error{where}: {text}")


@contextmanager
def redis_errors(what: str = "") -> Iterator[None]:
    """Translate redis-py errors raised in the block into bus errors (``raise ... from exc``)."""
    try:
        yield
    except BusError:
        raise
    except (rex.RedisError, ConnectionError, TimeoutError, OSError) as exc:
        raise translate_error(exc, what) from exc
