"""The redis-py client factory and the one place redis errors become bus errors.

Clients are built with command retries OFF: redis-py retries a command after a connection
error by default, and a lost XADD reply then writes the entry twice. The bus retries only
where a retry is safe (reads, idempotent writes) with its own tenacity policy.

:func:`rotate_credentials` installs a :class:`RotatingCredentials` provider, which redis-py asks
at every (re)connect, so new connections authenticate with the new credentials while commands
in flight finish on theirs. TLS always verifies the server's certificate and host name,
unless ``ssl_insecure_for_tests`` says otherwise; a failed handshake becomes a
:class:`TLSHandshakeError` that says which side refused and what to fix.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import anyio
import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot as _key_slot
from redis.credentials import CredentialProvider

from ._errors import (
    AuthenticationError,
    BackendError,
    BackendLoadingError,
    BackendOutOfMemoryError,
    BackendPersistenceError,
    BackendProtocolError,
    BackendReadOnlyError,
    BackendRefusedError,
    BackendTimeoutError,
    BackendUnavailableError,
    BusError,
    GroupMissingError,
    PermissionDeniedError,
    TLSHandshakeError,
)
from ._redact import register_secret
from ._sentinel import copy_sentinel_pool, is_sentinel_pool, sentinel_client
from ._settings import BusSettings

__all__ = [
    "RotatingCredentials",
    "copy_pool",
    "create_client",
    "create_cluster_client",
    "is_cluster_client",
    "key_slot",
    "redis_errors",
    "rotate_credentials",
    "translate_error",
]


class RotatingCredentials(CredentialProvider):
    """Username and password that redis-py reads at every (re)connect; :meth:`update` swaps them."""

    def __init__(self, username: str | None, password: str | None) -> None:
        self._username = username or ""
        self._password = password or ""
        register_secret(password)

    @property
    def username(self) -> str | None:
        """The user new connections authenticate as (None for the default user)."""
        return self._username or None

    def update(self, username: str | None, password: str | None) -> None:
        """Use these credentials for every connection made from now on."""
        register_secret(password)
        self._username, self._password = username or "", password or ""

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        """``(username, password)``, or ``(password,)`` for the default user."""
        return (self._username, self._password) if self._username else (self._password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        """As :meth:`get_credentials` (redis.asyncio asks this one)."""
        return self.get_credentials()

    def __repr__(self) -> str:
        return f"RotatingCredentials(username={self._username!r}, password='***')"


def create_client(settings: BusSettings, **extra: Any) -> aioredis.Redis:
    """A redis.asyncio client for ``settings``, with command retries disabled.

    In cluster mode (:attr:`BusSettings.is_cluster`) a :func:`create_cluster_client`, typed as
    the ``Redis`` it stands in for: the bus's own fast paths check :func:`bus.wire.is_cluster`.
    """
    if settings.is_cluster:
        return create_cluster_client(settings, **extra)
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
        insecure = settings.ssl_insecure_for_tests
        kwargs["ssl_cert_reqs"] = _ssl.CERT_NONE if insecure else _ssl.CERT_REQUIRED
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname and not insecure
        kwargs["redis_connect_func"] = _tls_on_connect
        if settings.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = settings.ssl_ca_certs
        if settings.ssl_certfile:
            kwargs["ssl_certfile"] = settings.ssl_certfile
        if settings.ssl_keyfile:
            kwargs["ssl_keyfile"] = settings.ssl_keyfile
    kwargs.update(extra)
    if settings.sentinels:
        return sentinel_client(settings, kwargs)
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


def create_cluster_client(settings: BusSettings, **extra: Any) -> aioredis.Redis:
    """redis-py's asyncio ``RedisCluster`` over ``settings.cluster_nodes`` (it owns the slot map,
    the per-node connections, MOVED/ASK on its own commands). Command retries stay off, as for
    a single node: a lost XADD reply retried would write twice."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    kwargs: dict[str, Any] = {
        "startup_nodes": [ClusterNode(host, port) for host, port in settings.cluster_addresses],
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "username": settings.username,
        "password": settings.password,
    }
    if settings.uses_tls:
        insecure = settings.ssl_insecure_for_tests
        kwargs["ssl"] = True
        kwargs["ssl_cert_reqs"] = _ssl.CERT_NONE if insecure else _ssl.CERT_REQUIRED
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname and not insecure
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, name):
                kwargs[name] = getattr(settings, name)
    kwargs.update(extra)
    return cast("aioredis.Redis", RedisCluster(**kwargs))


def is_cluster_client(client: Any) -> bool:
    """True for redis-py's asyncio ``RedisCluster`` (cluster mode, whatever the settings say)."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def key_slot(key: str | bytes) -> int:
    """The Redis Cluster hash slot of ``key`` (its ``{tag}`` when it has one)."""
    return _key_slot(key.encode() if isinstance(key, str) else key)


def copy_pool(pool: Any, **overrides: Any) -> Any:
    """A new connection pool to the same server (the same master, in Sentinel mode) with the same
    options and ``overrides``: for a dedicated connection (the consume loop's blocking reader)."""
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    kwargs.update(overrides)
    if is_sentinel_pool(pool):
        return copy_sentinel_pool(pool, kwargs)
    return type(pool)(connection_class=pool.connection_class, **kwargs)


async def rotate_credentials(
    client: aioredis.Redis, username: str | None, password: str | None, *, verify: bool = True
) -> None:
    """Make ``client``'s new connections authenticate with these credentials, without failing a command.

    With ``verify`` (the default) one extra connection authenticates with them first, and an
    :class:`AuthenticationError` leaves everything as it was. Then the provider is swapped,
    idle connections are closed (they reconnect, with the new credentials, when next used) and
    busy ones are marked to reconnect once their command has finished. Connections of a
    consumer's blocking reader keep their session until they reconnect.
    """
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if verify:
        probe_kwargs = {k: v for k, v in kwargs.items() if k not in ("username", "password")}
        probe_kwargs["credential_provider"] = RotatingCredentials(username, password)
        probe = pool.connection_class(**probe_kwargs)
        try:
            with redis_errors("authenticating with the new credentials"):
                await probe.connect()  # type: ignore[no-untyped-call]
        finally:
            with anyio.CancelScope(shield=True):
                await probe.disconnect()
    provider = kwargs.get("credential_provider")
    if isinstance(provider, RotatingCredentials):
        provider.update(username, password)
    else:
        provider = RotatingCredentials(username, password)
        kwargs.pop("username", None)
        kwargs.pop("password", None)
        kwargs["credential_provider"] = provider
    lock = pool._get_pool_lock() if hasattr(pool, "_get_pool_lock") else anyio.Lock()
    async with lock:
        free = list(getattr(pool, "_available_connections", ()))
        busy = list(getattr(pool, "_in_use_connections", ()))
        for conn in (*free, *busy):
            conn.credential_provider = provider
            conn.username = conn.password = None
        for conn in free:
            await conn.disconnect()
        for conn in busy:
            conn.mark_for_reconnect()


class _TLSSessionResetError(rex.ConnectionError):
    """The server reset a TLS connection at the first exchange after the handshake."""

    def __init__(self, message: str, *, has_client_cert: bool) -> None:
        super().__init__(message)
        self.has_client_cert = has_client_cert


def _is_reset(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ConnectionResetError | BrokenPipeError) or "reset by peer" in str(cur):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


async def _tls_on_connect(conn: Any) -> None:
    """``on_connect`` of TLS connections. With TLS 1.3 a server that refuses our client
    certificate says so after the handshake: our first command then reads either its alert or,
    when the close overtakes it, a connection reset. The reset is reported as what it means."""
    try:
        await conn.on_connect()
    except rex.ConnectionError as exc:
        if isinstance(exc, rex.AuthenticationError) or not _is_reset(exc):
            raise
        context = getattr(conn, "ssl_context", None)
        has_cert = bool(getattr(context, "certfile", None))
        raise _TLSSessionResetError(str(exc), has_client_cert=has_cert) from exc


def _tls_failure(exc: BaseException, where: str) -> BusError | None:
    """A :class:`TLSHandshakeError` when an ``ssl.SSLError`` is behind ``exc``, saying what to fix."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and not isinstance(cur, _ssl.SSLError):
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    if not isinstance(cur, _ssl.SSLError):
        return None
    if isinstance(cur, _ssl.SSLCertVerificationError):
        message = cur.verify_message or str(cur)
        detail = f"{cur.reason}: {message}" if cur.reason else message
        if "mismatch" in message.lower():
            return TLSHandshakeError(
                f"TLS: the server's certificate is not valid for the host we connected to{where} ({detail}); "
                "connect with a host name the certificate lists (never disable ssl_check_hostname)"
            )
        return TLSHandshakeError(
            f"TLS: the server's certificate is not trusted{where} ({detail}); set REDIS_TLS_CA_FILE "
            "(ssl_ca_certs) to the CA that issued it"
        )
    reason = str(cur.reason or cur)
    if any(word in reason for word in ("CERTIFICATE_REQUIRED", "UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return TLSHandshakeError(
            f"TLS: the server refused our client certificate{where} ({reason}); set REDIS_TLS_CERT_FILE and "
            "REDIS_TLS_KEY_FILE to a certificate signed by a CA the server trusts"
        )
    if any(word in reason for word in ("WRONG_VERSION_NUMBER", "RECORD_LAYER", "UNEXPECTED_EOF")):
        return TLSHandshakeError(
            f"TLS: the server did not answer the TLS handshake{where} ({reason}); is this a plaintext port? "
            "Use the server's TLS port, or redis:// for a plaintext one"
        )
    return TLSHandshakeError(f"TLS handshake failed{where} ({reason})")


def translate_error(exc: BaseException, what: str = "") -> BusError:
    """Map a redis-py exception to the bus's error tree; messages never carry credentials."""
    where = f" during {what}" if what else ""
    tls = _tls_failure(exc, where) if isinstance(exc, rex.ConnectionError | OSError) else None
    if tls is not None:
        return tls
    if isinstance(exc, _TLSSessionResetError):
        advice = "set REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE to a certificate signed by a CA the server trusts"
        if not exc.has_client_cert:  # it can only be the missing certificate: retrying cannot help
            return TLSHandshakeError(
                f"TLS: the server refused the session right after the handshake{where} (connection reset): it "
                f"requires a client certificate and none is configured; {advice}"
            )
        return BackendUnavailableError(
            f"Redis reset the TLS connection right after the handshake{where}: if this persists, the server "
            f"refuses our client certificate; {advice}"
        )
    text = str(exc)
    if isinstance(exc, rex.InvalidResponse):  # e.g. 'Protocol error, got "H" as reply type byte' (HTTP)
        return BackendProtocolError(
            f"the server does not speak the Redis protocol{where} ({text}): check that the URL names a Redis "
            "server's host and port"
        )
    if isinstance(exc, rex.NoPermissionError) or text.startswith("NOPERM"):
        return PermissionDeniedError(f"Redis denied the command{where}: {text}")
    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError) or text.startswith(("NOAUTH", "WRONGPASS")):
        if text.startswith(("NOAUTH", "WRONGPASS")):
            code = text.split(" ")[0]
        else:  # redis-py strips the code: "invalid username-password pair ..." / "Authentication required."
            code = "NOAUTH" if "required" in text.lower() else "WRONGPASS"
        return AuthenticationError(
            f"Redis rejected the credentials{where}: check REDIS_USERNAME/REDIS_PASSWORD or the URL ({code})"
        )
    # A pipeline wraps the server's error: "Command # 1 (XPENDING ...) of pipeline caused error: NOGROUP ...".
    if text.startswith("NOGROUP") or "caused error: NOGROUP" in text:
        return GroupMissingError(f"consumer group or stream missing{where}: {text}")
    refused = _refusal(exc, text)
    if refused is not None:
        return refused(f"{_REFUSALS[refused]}{where}: {text}. Fix: {refused.fix}.", text)
    if isinstance(exc, rex.TimeoutError | TimeoutError):
        return BackendTimeoutError(f"Redis timed out{where}")
    if isinstance(exc, rex.ConnectionError | ConnectionError | OSError):
        hint = ""
        if "reset by peer" in text or "closed by server" in text.lower():
            hint = " (if this port expects TLS, connect with rediss:// or ssl=True)"
        return BackendUnavailableError(f"Redis is unreachable{where}: {type(exc).__name__}: {text}{hint}")
    return BackendError(f"Redis error{where}: {text}")


#: What each refusal means, as the start of its message.
_REFUSALS: dict[type[BackendRefusedError], str] = {
    BackendOutOfMemoryError: "Redis is out of memory (maxmemory reached, noeviction) and refused the command",
    BackendReadOnlyError: "Redis is a read-only replica and refused the write",
    BackendLoadingError: "Redis is loading its dataset",
    BackendPersistenceError: "Redis refuses writes because its last background save failed",
}
_BY_CODE = {cls.code: cls for cls in _REFUSALS}
_BY_CLASS: tuple[tuple[type[BaseException], type[BackendRefusedError]], ...] = (
    (rex.OutOfMemoryError, BackendOutOfMemoryError),
    (rex.ReadOnlyError, BackendReadOnlyError),
    (rex.BusyLoadingError, BackendLoadingError),
)


def _refusal(exc: BaseException, text: str) -> type[BackendRefusedError] | None:
    """The refusal class of a Redis-wide refusal, by redis-py's class, the reply's code, or its text.

    redis-py strips the code of the errors it knows (``OOM``, ``READONLY``, ``LOADING``) and keeps
    others whole (``MISCONF ...``); a pipeline prefixes "Command # n (...) of pipeline caused error:".
    """
    for rex_class, ours in _BY_CLASS:
        if isinstance(exc, rex_class):
            return ours
    if not isinstance(exc, rex.ResponseError):
        return None
    code = getattr(exc, "status_code", None)
    if code in _BY_CODE:
        return _BY_CODE[code]
    head = text.rpartition("caused error: ")[2]
    first = head.split(" ", 1)[0]
    if first in _BY_CODE:
        return _BY_CODE[first]
    if "used memory > 'maxmemory'" in head:
        return BackendOutOfMemoryError
    return None


@contextmanager
def redis_errors(what: str = "") -> Iterator[None]:
    """Translate redis-py errors raised in the block into bus errors (``raise ... from exc``)."""
    try:
        yield
    except BusError:
        raise
    except (rex.RedisError, ConnectionError, TimeoutError, OSError) as exc:
        raise translate_error(exc, what) from exc
