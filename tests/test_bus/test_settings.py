"""BusSettings from arguments, env and URLs; the client it builds; EventBus lifecycle."""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import fakeredis
import pytest
import redis.asyncio as aioredis

from bus import BusClosedError, BusSettings, ConfigurationError, EventBus, LoopTiming, create_client


def test_defaults_match_the_reference() -> None:
    """Unset variables give the reference's defaults (keys, group, stream limits), except the read count."""
    s = BusSettings.from_env({})
    assert (s.host, s.port, s.db, s.username, s.password) == ("localhost", 6379, 0, None, None)
    assert (s.prefix, s.stream_prefix, s.consumer_group) == ("alga-psa:", "event-stream:", "event-processors")
    assert (s.max_len, s.block_ms, s.claim_idle_ms, s.max_deliveries) == (1000, 5000, 30000, 10)
    assert (s.batch_size, s.read_budget) == (None, 1000)  # COUNT derived per subscription (tests/test_bus/...)
    assert s.trim_policy == "approx" and not s.uses_tls


@pytest.mark.parametrize(
    ("variable", "raw", "field", "value"),
    [
        pytest.param("REDIS_HOST", "redis.internal", "host", "redis.internal", id="host"),
        pytest.param("REDIS_PORT", "6380", "port", 6380, id="port"),
        pytest.param("REDIS_USERNAME", "bus", "username", "bus", id="username"),
        pytest.param("REDIS_PASSWORD", "pw", "password", "pw", id="password"),
        pytest.param("REDIS_DB", "4", "db", 4, id="db"),
        pytest.param("REDIS_PREFIX", "x:", "prefix", "x:", id="prefix"),
        pytest.param("REDIS_EVENT_STREAM_PREFIX", "s:", "stream_prefix", "s:", id="stream-prefix"),
        pytest.param("REDIS_EVENT_CONSUMER_GROUP", "g", "consumer_group", "g", id="group"),
        pytest.param("REDIS_STREAM_MAX_LENGTH", "50", "max_len", 50, id="max-len"),
        pytest.param("REDIS_STREAM_BLOCKING_TIMEOUT", "100", "block_ms", 100, id="block"),
        pytest.param("REDIS_STREAM_CLAIM_TIMEOUT", "700", "claim_idle_ms", 700, id="claim"),
        pytest.param("REDIS_STREAM_BATCH_SIZE", "3", "batch_size", 3, id="batch"),
        pytest.param("REDIS_STREAM_MAX_DELIVERIES", "2", "max_deliveries", 2, id="deliveries"),
        pytest.param("BUS_IDEMPOTENCY_WINDOW_S", "60", "idempotency_window_s", 60, id="idempotency-window"),
        pytest.param("BUS_MAX_PAYLOAD_BYTES", "2048", "max_payload_bytes", 2048, id="max-payload"),
        pytest.param("BUS_TRIM_POLICY", "none", "trim_policy", "none", id="trim-policy"),
    ],
)
def test_env_variable_names(variable: str, raw: str, field: str, value: Any) -> None:
    """Each reference (REDIS_*) and own (BUS_*) variable sets its setting, converted from text."""
    assert getattr(BusSettings.from_env({variable: raw}), field) == value


def test_empty_variables_are_ignored() -> None:
    """An empty variable means "unset", as in the reference."""
    assert BusSettings.from_env({"REDIS_PORT": "", "REDIS_HOST": ""}).port == 6379


def test_overrides_win_over_env() -> None:
    """Explicit overrides (CLI flags) beat the environment."""
    assert BusSettings.from_env({"REDIS_PORT": "7000"}, port=7001).port == 7001


def test_url_with_acl_user_password_and_db() -> None:
    """redis://user:pass@host:port/db fills username, (percent-decoded) password, host, port, db."""
    s = BusSettings.from_url("redis://bus-user:p%40ss@cache.local:6390/5")
    assert (s.username, s.password, s.host, s.port, s.db, s.uses_tls) == (
        "bus-user",
        "p@ss",
        "cache.local",
        6390,
        5,
        False,
    )
    kwargs = create_client(s).connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"], kwargs["host"], kwargs["port"]) == (
        "bus-user",
        "p@ss",
        5,
        "cache.local",
        6390,
    )


def test_rediss_url_with_ca_and_client_certificate() -> None:
    """rediss:// with ssl_ca_certs/ssl_certfile/ssl_keyfile builds a verifying TLS client."""
    url = "rediss://redis.example:6380/1?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/etc/c.pem&ssl_keyfile=/etc/k.pem"
    s = BusSettings.from_env({"REDIS_URL": url})
    assert s.uses_tls and (s.ssl_ca_certs, s.ssl_certfile, s.ssl_keyfile) == ("/etc/ca.pem", "/etc/c.pem", "/etc/k.pem")
    pool = create_client(s).connection_pool
    assert pool.connection_class is aioredis.SSLConnection
    kwargs = pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED and kwargs["ssl_check_hostname"] is True
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (
        "/etc/ca.pem",
        "/etc/c.pem",
        "/etc/k.pem",
    )


def test_tls_files_from_env_variables() -> None:
    """REDIS_TLS_* variables set the CA and client certificate with REDIS_URL=rediss://."""
    s = BusSettings.from_env(
        {"REDIS_URL": "rediss://h:6379", "REDIS_TLS_CA_FILE": "/ca.pem", "REDIS_TLS_CERT_FILE": "/c.pem"}
    )
    assert s.uses_tls and s.ssl_ca_certs == "/ca.pem" and s.ssl_certfile == "/c.pem"


def test_unix_socket_url() -> None:
    """unix:// URLs are accepted (the client connects through the socket path)."""
    s = BusSettings.from_url("unix:///run/redis.sock")
    assert s.redis_url == "unix:///run/redis.sock"
    assert create_client(s).connection_pool.connection_kwargs["path"] == "/run/redis.sock"


def test_client_disables_redis_py_command_retries() -> None:
    """The client never retries a command by itself (a lost XADD reply would write twice)."""
    retry = create_client(BusSettings()).connection_pool.connection_kwargs["retry"]
    assert retry._retries == 0


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"REDIS_PORT": "abc"}, "REDIS_PORT", id="port-not-int"),
        pytest.param({"REDIS_PORT": "70000"}, "REDIS_PORT", id="port-range"),
        pytest.param({"REDIS_STREAM_MAX_LENGTH": "0"}, "REDIS_STREAM_MAX_LENGTH", id="max-len-zero"),
        pytest.param({"REDIS_DB": "-1"}, "REDIS_DB", id="db-negative"),
        pytest.param({"BUS_TRIM_POLICY": "sometimes"}, "BUS_TRIM_POLICY", id="trim-enum"),
        pytest.param({"BUS_MAX_PAYLOAD_BYTES": "0"}, "BUS_MAX_PAYLOAD_BYTES", id="payload-cap"),
        pytest.param({"REDIS_URL": "http://h"}, "REDIS_URL", id="url-scheme"),
        pytest.param({"REDIS_URL": "redis://h/zero"}, "REDIS_URL", id="url-db"),
        pytest.param({"REDIS_URL": "redis://h:99999"}, "REDIS_URL", id="url-port"),
        pytest.param({"REDIS_TLS_KEY_FILE": "/k.pem"}, "REDIS_TLS_KEY_FILE", id="key-without-cert"),
        pytest.param({"BUS_READ_TIMEOUT_S": "1"}, "BUS_READ_TIMEOUT_S", id="read-timeout-below-block"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    """An invalid value raises ConfigurationError whose variable and message name the variable."""
    with pytest.raises(ConfigurationError) as info:
        BusSettings.from_env(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: ")


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [
        pytest.param({"max_len": 0}, "REDIS_STREAM_MAX_LENGTH", id="constraint"),
        pytest.param({"port": "6380"}, "REDIS_PORT", id="type"),
        pytest.param({"trim_policy": "sometimes"}, "BUS_TRIM_POLICY", id="enum"),
        pytest.param({"ssl_keyfile": "/k.pem"}, "REDIS_TLS_KEY_FILE", id="cross-field"),
    ],
)
def test_direct_construction_validates_too(kwargs: dict[str, Any], variable: str) -> None:
    """``BusSettings(...)`` checks types and constraints like from_env/from_url, naming the variable."""
    with pytest.raises(ConfigurationError) as info:
        BusSettings(**kwargs)
    assert info.value.variable == variable
    assert BusSettings(port=6380, socket_timeout_s=5).socket_timeout_s == 5


def test_loop_timing_comes_from_the_environment() -> None:
    """``loop_timing`` carries the configured BLOCK, read timeout, claim idle and reclaim interval as one value."""
    s = BusSettings.from_env(
        {
            "REDIS_STREAM_BLOCKING_TIMEOUT": "100",
            "BUS_READ_TIMEOUT_S": "3",
            "REDIS_STREAM_CLAIM_TIMEOUT": "700",
            "BUS_RECLAIM_INTERVAL_S": "0.5",
        }
    )
    assert s.loop_timing == LoopTiming(block_ms=100, read_timeout_s=3.0, claim_idle_ms=700, reclaim_interval_s=0.5)
    assert BusSettings().loop_timing == LoopTiming()  # the reference's defaults on both sides


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"block_ms": 2000, "read_timeout_s": 2.0}, "read_timeout_s", id="read-timeout-within-block"),
        pytest.param({"claim_idle_ms": 0}, "claim_idle_ms", id="zero-claim-idle"),
        pytest.param({"reclaim_interval_s": -1.0}, "reclaim_interval_s", id="negative-interval"),
        pytest.param({"block_ms": True}, "block_ms", id="bool-is-no-number"),
    ],
)
def test_loop_timing_refuses_inconsistent_values(kwargs: dict[str, Any], field: str) -> None:
    """A LoopTiming needs positive numbers and a read timeout beyond its BLOCK; the error names the field."""
    with pytest.raises(ConfigurationError, match=field):
        LoopTiming(**kwargs)


def test_unknown_setting_is_refused() -> None:
    """A typo in a keyword fails instead of being ignored."""
    with pytest.raises(ConfigurationError, match="bogus"):
        BusSettings.build(bogus=1)


def test_redacted_masks_secrets() -> None:
    """redacted() hides the password in the field and in the URL."""
    out = BusSettings.from_url("redis://u:hunter2@h:6379/0").redacted()
    assert out["password"] == "***" and "hunter2" not in out["redis_url"]


async def test_bus_is_an_async_context_manager(fake_client: aioredis.Redis) -> None:
    """``async with EventBus(...)`` connects, and closes on exit; a passed-in client stays open."""
    with anyio.fail_after(5):
        async with EventBus(BusSettings(), client=fake_client) as bus:
            assert not bus.is_closed
            assert bus.capabilities["xadd_idmp"] is False
        assert bus.is_closed
        assert await fake_client.ping()


async def test_use_after_close_raises(fake_server: fakeredis.FakeServer) -> None:
    """Every publish entry point and the client refuse a closed bus with BusClosedError."""
    bus = EventBus(BusSettings(), client=fakeredis.FakeAsyncRedis(server=fake_server))
    payload = {"tenantId": "t", "occurredAt": "2026-01-23T10:11:12.345Z"}
    with anyio.fail_after(5):
        await bus.connect()
        await bus.aclose()
        await bus.aclose()  # idempotent
        with pytest.raises(BusClosedError):
            await bus.publish("TICKET_CREATED", payload)
        with pytest.raises(BusClosedError):
            await bus.publish_many([("TICKET_CREATED", payload)])
        with pytest.raises(BusClosedError):
            bus.prepare("TICKET_CREATED", payload)
        with pytest.raises(BusClosedError):
            await bus.write([])
        with pytest.raises(BusClosedError):
            await bus.write_outcomes([], batch=True)
        with pytest.raises(BusClosedError):
            _ = bus.client
        with pytest.raises(BusClosedError):
            await bus.connect()


def test_direct_construction_with_redis_url_connects_where_the_url_points() -> None:
    """BusSettings(redis_url=...) takes host, port, credentials, db and TLS from the URL; explicit values win."""
    s = BusSettings(redis_url="rediss://svc:s3cret@cache.internal:7000/2?ssl_ca_certs=/etc/ca.pem", db=5)
    assert (s.host, s.port, s.username, s.password, s.db) == ("cache.internal", 7000, "svc", "s3cret", 5)
    assert s.ssl is True and s.ssl_ca_certs == "/etc/ca.pem"


def test_socket_and_connect_timeouts_come_from_the_environment() -> None:
    """Daemons can set the socket and connect timeouts through BUS_SOCKET_TIMEOUT_S / BUS_CONNECT_TIMEOUT_S."""
    s = BusSettings.from_env({"BUS_SOCKET_TIMEOUT_S": "2.5", "BUS_CONNECT_TIMEOUT_S": "1"})
    assert (s.socket_timeout_s, s.connect_timeout_s) == (2.5, 1.0)


@pytest.mark.parametrize(
    ("url", "nodes", "username", "password", "ssl"),
    [
        pytest.param("redis+cluster://h1:7000,h2:7001", ("h1:7000", "h2:7001"), None, None, False, id="plain"),
        pytest.param("redis+cluster://u:p%40w@h1:7000", ("h1:7000",), "u", "p@w", False, id="credentials"),
        pytest.param("rediss+cluster://h1:7000,h2:7001/", ("h1:7000", "h2:7001"), None, None, True, id="tls"),
    ],
)
def test_cluster_url_selects_cluster_mode(
    url: str, nodes: tuple[str, ...], username: str | None, password: str | None, ssl: bool
) -> None:
    """A redis+cluster:// URL gives the seed nodes, credentials and TLS of cluster mode."""
    s = BusSettings.from_url(url)
    assert (s.cluster_nodes, s.username, s.password, s.uses_tls, s.is_cluster) == (nodes, username, password, ssl, True)


def test_cluster_nodes_from_env() -> None:
    """REDIS_CLUSTER_NODES (comma separated, spaces allowed) selects cluster mode; unset: a single node."""
    s = BusSettings.from_env({"REDIS_CLUSTER_NODES": "10.0.0.1:7000, 10.0.0.2:7000"})
    assert s.cluster_addresses == [("10.0.0.1", 7000), ("10.0.0.2", 7000)]
    assert not BusSettings.from_env({}).is_cluster


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        pytest.param({"cluster_nodes": ("h1",)}, "REDIS_CLUSTER_NODES", id="no-port"),
        pytest.param({"cluster_nodes": ("h1:99999",)}, "REDIS_CLUSTER_NODES", id="bad-port"),
        pytest.param({"cluster_nodes": ("h1:7000",), "db": 2}, "REDIS_DB", id="db"),
    ],
)
def test_invalid_cluster_settings_name_their_variable(values: dict[str, Any], variable: str) -> None:
    """Malformed seed nodes and a database other than 0 on a cluster fail at start, naming the variable."""
    with pytest.raises(ConfigurationError) as info:
        BusSettings(**values)
    assert variable in str(info.value)


def test_cluster_settings_build_a_cluster_client() -> None:
    """create_client builds redis-py's asyncio RedisCluster with command retries off in cluster mode."""
    from redis.asyncio.cluster import RedisCluster

    client: Any = create_client(BusSettings(cluster_nodes=("127.0.0.1:7000",)))
    assert isinstance(client, RedisCluster)
    assert client.retry.get_retries() == 0
