"""TLS with verification: 1,000 events end to end through a private TLS redis-server with a CA
made in the test (trustme) and a client certificate; plaintext, a missing client certificate, a
wrong CA and a wrong host name are refused with clear errors; verification can only be turned off
by the explicit test setting."""

from __future__ import annotations

import ssl
import time
from typing import Any

import anyio
import pytest

from bus import (
    BackendUnavailableError,
    BusError,
    BusSettings,
    ConfigurationError,
    EventBus,
    TLSHandshakeError,
    create_client,
)
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_for_stats

from .conftest import Certs, TlsServer

N_EVENTS = 1000


def tls_settings(port: int, certs: Certs, *, host: str = "localhost", **overrides: Any) -> BusSettings:
    """rediss://host:port with our CA and client certificate (fast test timings)."""
    values: dict[str, Any] = {
        "ssl_ca_certs": certs.ca,
        "ssl_certfile": certs.client_cert,
        "ssl_keyfile": certs.client_key,
        "connect_timeout_s": 2.0,
        "socket_timeout_s": 5.0,
    }
    values.update(overrides)
    return fast_settings(f"rediss://{host}:{port}/0", **{k: v for k, v in values.items() if v is not None})


@pytest.mark.fault
async def test_one_thousand_events_end_to_end_over_verified_tls(tls_redis: Any, certs: Certs) -> None:
    """1,000 events published and consumed through TLS (server verified, client certificate required)."""
    server: TlsServer = tls_redis(auth_clients="yes")
    settings = tls_settings(server.tls_port, certs)
    assert settings.uses_tls and settings.ssl_check_hostname and not settings.ssl_insecure_for_tests
    kwargs = create_client(settings).connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED and kwargs["ssl_check_hostname"] is True
    async with EventBus(settings) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            published: list[str] = []
            for _ in range(N_EVENTS // 100):
                results = await bus.publish_many([("TICKET_CREATED", ticket_created_payload()) for _i in range(100)])
                published += [r.event_id for r in results]
            with anyio.fail_after(30):
                stats = await wait_for_stats(bus, lambda s: s.handled == N_EVENTS)
            tg.cancel_scope.cancel()
    assert len(published) == N_EVENTS == len(set(published))
    assert sorted(recorder.event_ids) == sorted(published)
    assert (stats.handled, stats.failed, stats.dead_lettered, stats.reconnects) == (N_EVENTS, 0, 0, 0)


REFUSALS = [
    pytest.param(
        {"scheme": "redis", "ssl_ca_certs": None, "ssl_certfile": None, "ssl_keyfile": None},
        {},
        BackendUnavailableError,
        ["if this port expects TLS, connect with rediss://"],
        id="plaintext-to-tls-port",
    ),
    pytest.param(
        {"ssl_certfile": None, "ssl_keyfile": None},
        {},
        TLSHandshakeError,
        ["TLS: the server refused", "client certificate", "REDIS_TLS_CERT_FILE"],
        id="missing-client-certificate",
    ),
    pytest.param(
        {"ssl_ca_certs": "wrong_ca"},
        {},
        TLSHandshakeError,
        ["server's certificate is not trusted", "CERTIFICATE_VERIFY_FAILED: self-signed", "REDIS_TLS_CA_FILE"],
        id="wrong-ca",
    ),
    pytest.param(
        {},
        {"other_host": True},
        TLSHandshakeError,
        ["not valid for the host", "Hostname mismatch", "'localhost'"],
        id="wrong-hostname",
    ),
    pytest.param(
        {"host": "127.0.0.1"},
        {"other_host": True},
        TLSHandshakeError,
        ["not valid for the host", "IP address mismatch", "'127.0.0.1'"],
        id="wrong-ip-address",
    ),
]


@pytest.mark.fault
@pytest.mark.parametrize(("overrides", "server_options", "error", "phrases"), REFUSALS)
async def test_bad_tls_setups_are_refused_with_clear_errors(
    tls_redis: Any,
    certs: Certs,
    overrides: dict[str, Any],
    server_options: dict[str, Any],
    error: type[BusError],
    phrases: list[str],
) -> None:
    """Connect and publish both fail fast with the error class and phrases naming the cause and fix.

    "Fast" is the behaviour: the bound stays under the two socket timeouts (5 s each) that waiting
    would take, far above the normal time, so a loaded machine does not reach it.
    """
    server: TlsServer = tls_redis(**server_options)
    values = dict(overrides)
    if values.get("ssl_ca_certs") == "wrong_ca":
        values["ssl_ca_certs"] = certs.wrong_ca
    scheme = values.pop("scheme", "rediss")
    host = values.pop("host", "localhost")
    if scheme == "redis":
        settings = fast_settings(f"redis://{host}:{server.tls_port}/0", connect_timeout_s=2.0, socket_timeout_s=2.0)
    else:
        settings = tls_settings(server.tls_port, certs, host=host, **values)
    bus = EventBus(settings)
    try:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(error) as connecting:
            await bus.connect()
        with anyio.fail_after(10), pytest.raises(error) as publishing:
            await bus.publish("TICKET_CREATED", ticket_created_payload())
        elapsed = time.monotonic() - started
    finally:
        await bus.aclose()
    for info in (connecting, publishing):
        for phrase in phrases:
            assert phrase in str(info.value)
    assert elapsed < 8.0


@pytest.mark.fault
async def test_unverified_tls_only_with_the_explicit_test_setting(tls_redis: Any, certs: Certs) -> None:
    """With a CA that did not sign the server, only ssl_insecure_for_tests=True connects (no client cert needed)."""
    server: TlsServer = tls_redis(auth_clients="no")
    strict = EventBus(tls_settings(server.tls_port, certs, ssl_ca_certs=certs.wrong_ca))
    with pytest.raises(TLSHandshakeError, match="not trusted"):
        await strict.connect()
    await strict.aclose()
    insecure = tls_settings(server.tls_port, certs, ssl_ca_certs=certs.wrong_ca, ssl_insecure_for_tests=True)
    async with EventBus(insecure) as bus:
        result = await bus.publish("TICKET_CREATED", ticket_created_payload())
    assert result.event_id


def test_verification_cannot_be_disabled_without_the_test_setting() -> None:
    """ssl_check_hostname=False (argument or URL) is refused unless ssl_insecure_for_tests=True."""
    with pytest.raises(ConfigurationError, match="ssl_insecure_for_tests"):
        BusSettings(ssl=True, ssl_check_hostname=False)
    with pytest.raises(ConfigurationError, match="ssl_insecure_for_tests"):
        BusSettings.from_url("rediss://h:6380/0?ssl_check_hostname=false")
    assert BusSettings(ssl=True, ssl_check_hostname=False, ssl_insecure_for_tests=True).ssl_insecure_for_tests


def test_neither_environment_nor_url_can_turn_verification_off() -> None:
    """No variable maps to ssl_insecure_for_tests, and URL options like ssl_cert_reqs=none are ignored."""
    env = {"REDIS_URL": "rediss://h:6380/0", "BUS_SSL_INSECURE_FOR_TESTS": "1", "SSL_INSECURE_FOR_TESTS": "1"}
    settings = BusSettings.from_env(env)
    assert "ssl_insecure_for_tests" not in BusSettings.ENV.values()
    url = BusSettings.from_url("rediss://h:6380/0?ssl_cert_reqs=none&ssl_insecure_for_tests=true")
    for s in (settings, url):
        kwargs = create_client(s).connection_pool.connection_kwargs
        assert not s.ssl_insecure_for_tests
        assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == (ssl.CERT_REQUIRED, True)


def test_the_test_setting_turns_off_both_certificate_and_host_checks() -> None:
    """ssl_insecure_for_tests=True builds CERT_NONE without a host check (a consistent SSL context)."""
    settings = BusSettings(ssl=True, ssl_insecure_for_tests=True)
    kwargs = create_client(settings).connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == (ssl.CERT_NONE, False)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        pytest.param({"ssl_ca_certs": "/ca.pem"}, "REDIS_TLS_CA_FILE", id="ca"),
        pytest.param({"ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"}, "REDIS_TLS_CERT_FILE", id="client-cert"),
    ],
)
def test_tls_files_on_a_plaintext_connection_are_refused(values: dict[str, str], variable: str) -> None:
    """A CA or client certificate with redis:// fails at start instead of silently connecting in plaintext."""
    with pytest.raises(ConfigurationError) as info:
        BusSettings.from_url("redis://h:6379/0", **values)
    assert info.value.variable == variable and "rediss://" in str(info.value)


def test_tls_is_detected_from_the_url_scheme_in_any_case() -> None:
    """An upper-case REDISS:// URL is TLS too."""
    assert BusSettings(redis_url="REDISS://h:6380/0").uses_tls
