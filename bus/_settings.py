"""Typed settings, from arguments, the environment (reference variable names) or a URL.

The reference's variables keep their names and defaults (REDIS_HOST, REDIS_PORT, ...); our own
additions are prefixed ``BUS_``. Invalid values fail at start with a message naming the variable.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import msgspec
from msgspec import Meta

from ._errors import ConfigurationError
from ._sentinel import SENTINEL_SCHEMES, sentinel_addresses, sentinel_url_values

__all__ = ["BusSettings", "LoopTiming", "default_consumer_name"]

_CHECKING: ContextVar[bool] = ContextVar("bus_settings_checking", default=False)

PosInt = Annotated[int, Meta(gt=0)]
NonNegInt = Annotated[int, Meta(ge=0)]
PosFloat = Annotated[float, Meta(gt=0)]


def default_consumer_name() -> str:
    """``{host}-{pid}-{random}``: unique per process and host, unlike the reference's ``consumer-{pid}``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class LoopTiming(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a consume loop waits: one value that every service's settings carry as they are.

    ``block_ms`` is the XREADGROUP BLOCK; ``read_timeout_s`` bounds the whole read (it must exceed
    the BLOCK: a read that outlives it is a dead connection, not an idle stream); entries idle
    longer than ``claim_idle_ms`` under any consumer are reclaimed, checked every
    ``reclaim_interval_s``. The defaults are the reference's (REDIS_STREAM_BLOCKING_TIMEOUT,
    REDIS_STREAM_CLAIM_TIMEOUT); :attr:`BusSettings.loop_timing` has the ones a process was configured with.
    """

    block_ms: PosInt = 5000
    read_timeout_s: PosFloat = 15.0
    claim_idle_ms: PosInt = 30000
    reclaim_interval_s: PosFloat = 5.0

    def __post_init__(self) -> None:
        # ``LoopTiming(...)`` does not apply the field constraints by itself (only decoding does).
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(name, f"must be a number > 0, got {value!r}")
        if self.read_timeout_s * 1000 <= self.block_ms:
            raise ConfigurationError("read_timeout_s", f"must exceed block_ms ({self.block_ms} ms)")


class BusSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the bus needs to connect, publish and consume.

    Build with ``BusSettings(...)``, :meth:`from_env` or :meth:`from_url`; all three validate.
    """

    # Connection (reference: REDIS_HOST, REDIS_PORT, REDIS_PASSWORD; ours: REDIS_URL and TLS).
    redis_url: str | None = None
    host: str = "localhost"
    port: Annotated[int, Meta(ge=1, le=65535)] = 6379
    username: str | None = None
    password: str | None = None
    db: NonNegInt = 0
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    #: Only for tests: allow rediss:// without certificate verification.
    ssl_insecure_for_tests: bool = False
    socket_timeout_s: PosFloat = 10.0
    connect_timeout_s: PosFloat = 5.0
    #: Redis Cluster: ``host:port`` seed nodes (REDIS_CLUSTER_NODES, or a ``redis+cluster://`` URL).
    cluster_nodes: tuple[str, ...] | None = None
    #: Hash tag put into every key (``{tag}``): one publish's keys share one slot (cluster only;
    #: the reference cannot read tagged keys).
    key_hashtag: str | None = None
    #: Sentinel mode (bus/_sentinel.py): ``host:port,host:port`` of the sentinels and the master's name.
    sentinels: str | None = None
    sentinel_master: str | None = None

    # Keys (reference: REDIS_PREFIX, REDIS_EVENT_STREAM_PREFIX, REDIS_EVENT_CONSUMER_GROUP).
    prefix: str = "alga-psa:"
    stream_prefix: str = "event-stream:"
    consumer_group: Annotated[str, Meta(min_length=1)] = "event-processors"
    consumer_name: str | None = None

    # Streams (reference: REDIS_STREAM_MAX_LENGTH, _BLOCKING_TIMEOUT, _CLAIM_TIMEOUT, _BATCH_SIZE, _MAX_DELIVERIES).
    max_len: PosInt = 1000
    block_ms: PosInt = 5000
    claim_idle_ms: PosInt = 30000
    #: XREADGROUP COUNT per stream; None (the default): derived from ``read_budget`` (see there).
    #: The reference reads COUNT 10; set REDIS_STREAM_BATCH_SIZE=10 to do exactly that.
    batch_size: PosInt | None = None
    max_deliveries: PosInt = 10

    # Ours (BUS_*).
    read_timeout_s: PosFloat = 15.0
    #: Entries one read may return over all of a subscription's streams when ``batch_size`` is
    #: unset: COUNT = max(10, read_budget // streams). One stream reads 1,000 at a time (a
    #: quarter of the throughput is lost at COUNT 10); many streams share the budget, so a
    #: backlog on all of them cannot land in one read (the converter reads every type's stream).
    read_budget: PosInt = 1000
    #: Bytes one read should return at most: the read count starts at 10 and adapts, doubling
    #: while replies stay small and shrinking to what this holds when entries are large (a
    #: writer's multi-MB entries cannot make one read return a gigabyte).
    read_bytes: PosInt = 4 * 1024 * 1024
    concurrency: PosInt = 16
    handler_timeout_s: PosFloat = 30.0
    handler_retries: NonNegInt = 2
    retry_backoff_s: Annotated[float, Meta(ge=0)] = 0.05
    retry_backoff_max_s: Annotated[float, Meta(ge=0)] = 1.0
    reclaim_interval_s: PosFloat = 5.0
    shutdown_grace_s: Annotated[float, Meta(ge=0)] = 10.0
    marker_ttl_s: PosInt = 3 * 24 * 3600
    idempotency_window_s: PosInt = 24 * 3600
    max_payload_bytes: PosInt = 1024 * 1024
    trim_policy: Literal["approx", "safe", "none"] = "approx"
    #: Consumers dead-letter an ``event`` that is not plain JSON: duplicate keys, numbers msgspec
    #: cannot represent (bus/consume/_jsoncheck.py). False keeps only the size and
    #: decode checks (duplicate keys then resolve to the last value, as JSON.parse does).
    strict_json: bool = True
    #: Longest wait between write probes while Redis refuses writes (the consumer is paused).
    outage_probe_max_s: Annotated[float, Meta(ge=0)] = 2.0
    #: At most one summary line per this many seconds while an outage lasts.
    outage_log_interval_s: PosFloat = 60.0
    #: Dead letters per dead-letter stream before a warning (a threshold: nothing is trimmed).
    dead_letter_max_len: PosInt = 10_000
    #: A publish returns once ``WAIT n`` confirms this many replicas (0: no WAIT), within
    #: ``publish_replicas_timeout_ms``; else PublishOutcomeUnknownError.
    publish_min_replicas: NonNegInt = 0
    publish_replicas_timeout_ms: PosInt = 1000

    ENV: ClassVar[dict[str, str]] = {
        "REDIS_URL": "redis_url",
        "REDIS_HOST": "host",
        "REDIS_PORT": "port",
        "REDIS_USERNAME": "username",
        "REDIS_PASSWORD": "password",
        "REDIS_DB": "db",
        "REDIS_TLS_CA_FILE": "ssl_ca_certs",
        "REDIS_TLS_CERT_FILE": "ssl_certfile",
        "REDIS_TLS_KEY_FILE": "ssl_keyfile",
        "REDIS_PREFIX": "prefix",
        "REDIS_EVENT_STREAM_PREFIX": "stream_prefix",
        "REDIS_EVENT_CONSUMER_GROUP": "consumer_group",
        "REDIS_STREAM_MAX_LENGTH": "max_len",
        "REDIS_STREAM_BLOCKING_TIMEOUT": "block_ms",
        "REDIS_STREAM_CLAIM_TIMEOUT": "claim_idle_ms",
        "REDIS_STREAM_BATCH_SIZE": "batch_size",
        "REDIS_STREAM_MAX_DELIVERIES": "max_deliveries",
        "BUS_CONSUMER_NAME": "consumer_name",
        "BUS_READ_TIMEOUT_S": "read_timeout_s",
        "BUS_READ_BUDGET": "read_budget",
        "BUS_READ_BYTES": "read_bytes",
        "BUS_CONCURRENCY": "concurrency",
        "BUS_HANDLER_TIMEOUT_S": "handler_timeout_s",
        "BUS_HANDLER_RETRIES": "handler_retries",
        "BUS_RECLAIM_INTERVAL_S": "reclaim_interval_s",
        "BUS_SHUTDOWN_GRACE_S": "shutdown_grace_s",
        "BUS_IDEMPOTENCY_WINDOW_S": "idempotency_window_s",
        "BUS_MAX_PAYLOAD_BYTES": "max_payload_bytes",
        "BUS_TRIM_POLICY": "trim_policy",
        "BUS_SOCKET_TIMEOUT_S": "socket_timeout_s",
        "BUS_CONNECT_TIMEOUT_S": "connect_timeout_s",
        "BUS_RETRY_BACKOFF_S": "retry_backoff_s",
        "BUS_RETRY_BACKOFF_MAX_S": "retry_backoff_max_s",
        "BUS_MARKER_TTL_S": "marker_ttl_s",
        "BUS_STRICT_JSON": "strict_json",
        "BUS_OUTAGE_PROBE_MAX_S": "outage_probe_max_s",
        "BUS_OUTAGE_LOG_INTERVAL_S": "outage_log_interval_s",
        "BUS_DEAD_LETTER_MAXLEN": "dead_letter_max_len",
        "REDIS_CLUSTER_NODES": "cluster_nodes",
        "BUS_KEY_HASHTAG": "key_hashtag",
        "REDIS_SENTINELS": "sentinels",
        "REDIS_SENTINEL_MASTER": "sentinel_master",
        "BUS_PUBLISH_MIN_REPLICAS": "publish_min_replicas",
        "BUS_PUBLISH_REPLICAS_TIMEOUT_MS": "publish_replicas_timeout_ms",
    }

    #: One line per variable for the docs' table (``tests/test_docs`` checks it is complete and that
    #: docs/environment.md shows exactly this). Grouped: connection, keys, publish, consume.
    DOCS: ClassVar[dict[str, tuple[str, str]]] = {
        "REDIS_URL": (
            "connection",
            "`redis://[user:pass@]host:port/db` or `rediss://...`; wins over REDIS_HOST and co.",
        ),
        "REDIS_HOST": ("connection", "Redis host (reference variable)"),
        "REDIS_PORT": ("connection", "Redis port (reference variable)"),
        "REDIS_USERNAME": ("connection", "ACL user name"),
        "REDIS_PASSWORD": ("connection", "password (reference variable); never logged"),
        "REDIS_DB": ("connection", "database number (the reference always uses 0)"),
        "REDIS_TLS_CA_FILE": ("connection", "CA bundle that signs the server's certificate (`rediss://`)"),
        "REDIS_TLS_CERT_FILE": ("connection", "client certificate, when the server asks for one"),
        "REDIS_TLS_KEY_FILE": ("connection", "the client certificate's key"),
        "REDIS_CLUSTER_NODES": (
            "connection",
            "Redis Cluster seed nodes `host:port,host:port` (or a `redis+cluster://h:p,h:p` URL): cluster mode",
        ),
        "BUS_KEY_HASHTAG": (
            "keys",
            "cluster only: `{tag}` in every key, so one publish is one slot and one MULTI/EXEC (all traffic "
            "on one node; the reference cannot read tagged keys)",
        ),
        "REDIS_SENTINELS": (
            "connection",
            "Sentinel mode: `host:port,host:port` of the sentinels (or a `redis+sentinel://h:p,h:p/master` URL)",
        ),
        "REDIS_SENTINEL_MASTER": ("connection", "Sentinel mode: the monitored master's name"),
        "BUS_SOCKET_TIMEOUT_S": ("connection", "timeout of one command's reply (not of blocking reads)"),
        "BUS_CONNECT_TIMEOUT_S": ("connection", "timeout of opening a connection (and its handshake)"),
        "BUS_RETRY_BACKOFF_S": ("connection", "first wait of the capped, jittered reconnect and retry backoff"),
        "BUS_RETRY_BACKOFF_MAX_S": ("connection", "longest wait of that backoff"),
        "REDIS_PREFIX": ("keys", "key prefix of streams and our own keys (reference variable)"),
        "REDIS_EVENT_STREAM_PREFIX": ("keys", "stream key prefix after REDIS_PREFIX (reference variable)"),
        "REDIS_STREAM_MAX_LENGTH": ("publish", "`MAXLEN ~` of every XADD (reference variable)"),
        "BUS_TRIM_POLICY": ("publish", "`approx` (as the reference), `safe` (never trims unread entries) or `none`"),
        "BUS_MAX_PAYLOAD_BYTES": ("publish", "largest encoded event; a larger one is refused before writing"),
        "BUS_IDEMPOTENCY_WINDOW_S": ("publish", "how long an idempotency key is remembered"),
        "BUS_PUBLISH_MIN_REPLICAS": (
            "publish",
            "a publish returns once `WAIT n` confirms n replicas (else PublishOutcomeUnknownError); 0: no WAIT",
        ),
        "BUS_PUBLISH_REPLICAS_TIMEOUT_MS": ("publish", "the WAIT's timeout; below BUS_SOCKET_TIMEOUT_S"),
        "REDIS_EVENT_CONSUMER_GROUP": ("consume", "consumer group of `EventBus.subscribe` (reference variable)"),
        "BUS_CONSUMER_NAME": (
            "consume",
            "consumer name (default `{host}-{pid}-{random}`); set it to take over "
            "a restarted process's pending entries",
        ),
        "REDIS_STREAM_BLOCKING_TIMEOUT": ("consume", "XREADGROUP BLOCK in ms (reference variable)"),
        "REDIS_STREAM_CLAIM_TIMEOUT": ("consume", "idle ms before a pending entry is claimed (reference variable)"),
        "REDIS_STREAM_BATCH_SIZE": (
            "consume",
            "XREADGROUP COUNT per stream (reference variable; the reference uses 10); unset: from BUS_READ_BUDGET",
        ),
        "BUS_READ_BYTES": (
            "consume",
            "bytes one read should return at most: the count starts at 10, doubles while replies stay small, "
            "shrinks for large entries",
        ),
        "BUS_READ_BUDGET": (
            "consume",
            "entries one read may return over all streams when REDIS_STREAM_BATCH_SIZE is unset: "
            "COUNT = max(10, budget / streams)",
        ),
        "REDIS_STREAM_MAX_DELIVERIES": ("consume", "deliveries before an entry is dead-lettered (reference variable)"),
        "BUS_READ_TIMEOUT_S": ("consume", "hard timeout of one blocking read; must exceed the BLOCK"),
        "BUS_CONCURRENCY": ("consume", "handlers running at once"),
        "BUS_HANDLER_TIMEOUT_S": ("consume", "time limit of one handler call"),
        "BUS_HANDLER_RETRIES": ("consume", "in-process retries of a failed handler before the entry stays pending"),
        "BUS_RECLAIM_INTERVAL_S": ("consume", "how often idle pending entries are looked for"),
        "BUS_SHUTDOWN_GRACE_S": ("consume", "how long in-flight handlers may finish on shutdown"),
        "BUS_MARKER_TTL_S": ("consume", "dedupe window of the processed markers (they live one to two of it)"),
        "BUS_STRICT_JSON": ("consume", "dead-letter events with duplicate keys or unrepresentable numbers"),
        "BUS_OUTAGE_PROBE_MAX_S": (
            "consume",
            "longest wait between write probes while Redis refuses writes (consumers pause, then resume by themselves)",
        ),
        "BUS_OUTAGE_LOG_INTERVAL_S": ("consume", "at most one summary log line per this many seconds of an outage"),
        "BUS_DEAD_LETTER_MAXLEN": (
            "consume",
            "dead letters per dead-letter stream before a warning and `bus status` flag it (never trimmed)",
        ),
    }

    def __post_init__(self) -> None:
        if not _CHECKING.get():
            # ``BusSettings(...)`` does not check field types and constraints by itself (only
            # decoding does): check them here, so all three constructors validate.
            token = _CHECKING.set(True)
            try:
                type(self).build(_strict=True, **msgspec.structs.asdict(self))
            finally:
                _CHECKING.reset(token)
        if self.redis_url is not None:
            # ``BusSettings(redis_url=...)`` fills what the URL says into fields left at their
            # defaults, so all constructors connect where the URL points; explicit values win.
            defaults = {f.name: f.default for f in msgspec.structs.fields(self)}
            for name, value in self._url_values(self.redis_url).items():
                if getattr(self, name) == defaults[name]:
                    msgspec.structs.force_setattr(self, name, value)
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigurationError("REDIS_TLS_KEY_FILE", "a client key needs REDIS_TLS_CERT_FILE too")
        if not self.uses_tls:
            for field, variable in (("ssl_ca_certs", "REDIS_TLS_CA_FILE"), ("ssl_certfile", "REDIS_TLS_CERT_FILE")):
                if getattr(self, field):
                    raise ConfigurationError(
                        variable, "is set but the connection is plaintext: use a rediss:// URL or ssl=True"
                    )
        if self.uses_tls and not self.ssl_check_hostname and not self.ssl_insecure_for_tests:
            raise ConfigurationError(
                "ssl_check_hostname", "certificate verification may only be disabled with ssl_insecure_for_tests=True"
            )
        if self.read_timeout_s * 1000 <= self.block_ms:
            raise ConfigurationError(
                "BUS_READ_TIMEOUT_S", f"must exceed REDIS_STREAM_BLOCKING_TIMEOUT ({self.block_ms} ms)"
            )
        self._check_sentinel()
        if self.publish_min_replicas and self.publish_replicas_timeout_ms >= self.socket_timeout_s * 1000:
            raise ConfigurationError(
                "BUS_PUBLISH_REPLICAS_TIMEOUT_MS", f"must be below BUS_SOCKET_TIMEOUT_S ({self.socket_timeout_s:g} s)"
            )
        if self.retry_backoff_max_s < self.retry_backoff_s:
            raise ConfigurationError("retry_backoff_max_s", "must be >= retry_backoff_s")
        _check_cluster(self)

    @property
    def loop_timing(self) -> LoopTiming:
        """The consume loops' timing as configured here (REDIS_STREAM_BLOCKING_TIMEOUT, BUS_READ_TIMEOUT_S,
        REDIS_STREAM_CLAIM_TIMEOUT, BUS_RECLAIM_INTERVAL_S): every service's loop reads with it."""
        return LoopTiming(
            block_ms=self.block_ms,
            read_timeout_s=self.read_timeout_s,
            claim_idle_ms=self.claim_idle_ms,
            reclaim_interval_s=self.reclaim_interval_s,
        )

    @property
    def is_cluster(self) -> bool:
        """True in Redis Cluster mode (REDIS_CLUSTER_NODES or a ``redis+cluster://`` URL)."""
        return bool(self.cluster_nodes)

    @property
    def cluster_addresses(self) -> list[tuple[str, int]]:
        """The cluster seed nodes as ``(host, port)``."""
        return [_address(node) for node in self.cluster_nodes or ()]

    def _check_sentinel(self) -> None:
        """Sentinel mode needs both the sentinels and the master's name, with valid addresses."""
        if self.sentinels is None and self.sentinel_master is None:
            return
        if not self.sentinels or not self.sentinel_master:
            missing = "REDIS_SENTINEL_MASTER" if self.sentinels else "REDIS_SENTINELS"
            raise ConfigurationError(missing, "Sentinel mode needs REDIS_SENTINELS and REDIS_SENTINEL_MASTER")
        sentinel_addresses(self.sentinels)
        if self.cluster_nodes:
            raise ConfigurationError("REDIS_SENTINELS", "cannot be combined with Redis Cluster (REDIS_CLUSTER_NODES)")

    @property
    def uses_tls(self) -> bool:
        """True for rediss:// URLs or ``ssl=True``."""
        scheme = urlsplit(self.redis_url).scheme if self.redis_url is not None else ""
        return self.ssl or scheme in ("rediss", "rediss+cluster")

    @property
    def resolved_consumer_name(self) -> str:
        """The configured consumer name, or a fresh host-pid-random one."""
        return self.consumer_name or default_consumer_name()

    @classmethod
    def build(cls, _strict: bool = False, **values: Any) -> BusSettings:
        """Validate keyword values (strings from env/flags are converted) into settings."""
        try:
            return msgspec.convert(values, cls, strict=_strict)
        except msgspec.ValidationError as exc:
            if isinstance(exc.__cause__, ConfigurationError):
                # A cross-field rule in __post_init__: it already names its variable.
                raise exc.__cause__ from None
            text = str(exc)
            field = text.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in text else "settings"
            variable = next((k for k, v in cls.ENV.items() if v == field), field)
            raise ConfigurationError(variable, text.split(" - at ")[0]) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> BusSettings:
        """Read the reference's variables (and ours) from ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, name in cls.ENV.items():
            raw = env.get(var)
            if raw is not None and raw != "":
                values[name] = raw
        if isinstance(values.get("cluster_nodes"), str):
            values["cluster_nodes"] = _split_nodes(values["cluster_nodes"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "redis_url" in values:
            return cls.from_url(values.pop("redis_url"), **values)
        return cls.build(**values)

    @staticmethod
    def _url_values(url: str) -> dict[str, Any]:
        """The settings a ``redis://`` / ``rediss://`` / ``unix://`` URL carries."""
        parts = urlsplit(url)
        if parts.scheme in ("redis+cluster", "rediss+cluster"):
            return _cluster_url_values(url)
        if parts.scheme in SENTINEL_SCHEMES:
            return sentinel_url_values(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                "REDIS_URL", f"scheme {parts.scheme!r} is not redis://, rediss://, unix:// or redis+sentinel://"
            )
        values: dict[str, Any] = {}
        try:
            if parts.hostname:
                values["host"] = parts.hostname
            if parts.port:
                values["port"] = parts.port
        except ValueError as exc:
            raise ConfigurationError("REDIS_URL", f"invalid port: {exc}") from None
        if parts.username:
            values["username"] = unquote(parts.username)
        if parts.password:
            values["password"] = unquote(parts.password)
        path = parts.path.strip("/")
        if path and parts.scheme != "unix":
            if not path.isdigit():
                raise ConfigurationError("REDIS_URL", f"database {path!r} is not a number")
            values["db"] = int(path)
        for item in filter(None, parts.query.split("&")):
            key, _, value = item.partition("=")
            if key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
                values[key] = unquote(value)
            elif key == "ssl_check_hostname":
                values[key] = value.lower() not in ("0", "false", "no")
        if parts.scheme == "rediss":
            values["ssl"] = True
        return values

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> BusSettings:
        """Parse ``redis://[user:pass@]host:port/db`` or ``rediss://...?ssl_ca_certs=...``."""
        values: dict[str, Any] = {"redis_url": url, **cls._url_values(url)}
        values.update(overrides)
        return cls.build(**values)

    def __repr__(self) -> str:
        """The redacted settings: the password and the URL's password never show in a repr."""
        fields = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"{type(self).__name__}({fields})"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked: safe for logs and ``bus status``."""
        out = msgspec.structs.asdict(self)
        if out.get("password"):
            out["password"] = "***"
        if self.redis_url:
            parts = urlsplit(self.redis_url)
            if parts.password:
                netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
                out["redis_url"] = parts._replace(netloc=netloc).geturl()
        return out


# -- Redis Cluster (kept apart: the Sentinel settings live in their own functions) -------------


def _split_nodes(text: str) -> tuple[str, ...]:
    """``"h1:p1, h2:p2"`` as ``("h1:p1", "h2:p2")``."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _address(node: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as ``(host, port)``; ConfigurationError when malformed."""
    host, sep, port = node.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError("REDIS_CLUSTER_NODES", f"{node!r} is not host:port")
    return host.strip("[]"), int(port)


def _cluster_url_values(url: str) -> dict[str, Any]:
    """``redis+cluster://[user:pass@]h1:p1,h2:p2`` (or ``rediss+cluster://``): the seed nodes and credentials."""
    scheme, _, rest = url.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    creds, at, hosts = netloc.rpartition("@")
    values: dict[str, Any] = {"cluster_nodes": _split_nodes(hosts)}
    if not values["cluster_nodes"]:
        raise ConfigurationError("REDIS_URL", "a redis+cluster:// URL needs at least one host:port")
    if at:
        user, colon, password = creds.partition(":")
        if user:
            values["username"] = unquote(user)
        if colon and password:
            values["password"] = unquote(password)
    if scheme == "rediss+cluster":
        values["ssl"] = True
    return values


def _check_cluster(settings: BusSettings) -> None:
    """The cluster's cross-field rules: valid seed nodes, db 0, a usable hash tag."""
    for node in settings.cluster_nodes or ():
        _address(node)
    if settings.is_cluster and settings.db != 0:
        raise ConfigurationError("REDIS_DB", "Redis Cluster has only database 0")
    tag = settings.key_hashtag
    if tag is not None:
        if not settings.is_cluster:
            raise ConfigurationError("BUS_KEY_HASHTAG", "is for Redis Cluster only (set REDIS_CLUSTER_NODES)")
        if not tag or any(c in tag for c in "{}*?[] \t\r\n"):
            raise ConfigurationError("BUS_KEY_HASHTAG", f"{tag!r}: use a non-empty tag without braces, globs or spaces")
