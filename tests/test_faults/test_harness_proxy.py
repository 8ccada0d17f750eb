"""The fault proxy does what each mode says, seen from plain redis-py clients and raw sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
import redis
import redis.asyncio as aioredis
from faultlib import FaultProxy, FaultRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

pytestmark = pytest.mark.fault


def _client(proxy: FaultProxy, timeout_s: float = 1.0) -> redis.Redis:
    """A client through the proxy with redis-py's own retries off, so every fault shows."""
    return redis.Redis(
        port=proxy.port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[redis.Redis]:
    """One sync client through the proxy."""
    with _client(proxy) as c:
        yield c


def _raw(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    sock.settimeout(0.3)
    return sock


def test_pass_forwards_both_ways(proxy: FaultProxy, client: redis.Redis, fault_redis: FaultRedis) -> None:
    """pass: commands through the proxy reach the server and replies come back."""
    client.set("k", "v")
    assert client.get("k") == b"v"
    with fault_redis.client() as direct:
        assert direct.get("k") == b"v"
    stats = proxy.stats
    assert stats.accepted == 1 and stats.active == 1 and stats.bytes_up > 0 and stats.bytes_down > 0


def test_delay_adds_latency_in_each_direction_and_keeps_order(proxy: FaultProxy, client: redis.Redis) -> None:
    """delay(ms, jitter): a round trip takes about 2 x ms; with jitter, replies still come in order.

    The round-trip times are the behaviour; the upper bounds are generous for a loaded machine (the
    last one only has to tell no delay from 2 x 300 ms).
    """
    client.ping()
    proxy.delay(300)
    started = time.monotonic()
    client.ping()
    assert 0.59 <= time.monotonic() - started < 3.0
    proxy.delay(20, jitter_ms=20)
    pipe = client.pipeline(transaction=False)
    for i in range(50):
        pipe.echo(str(i))
    assert pipe.execute() == [str(i).encode() for i in range(50)]
    proxy.pass_through()
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started < 0.5


def test_reset_aborts_every_open_connection(proxy: FaultProxy, client: redis.Redis, fault_redis: FaultRedis) -> None:
    """reset: open connections get an RST (an in-flight command fails at once); new ones work.

    "At once" is measured against BLPOP's own 30 s timeout, with a bound generous for a loaded machine.
    """
    sock = _raw(proxy)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    client.ping()
    with ThreadPoolExecutor(1) as pool, fault_redis.client() as direct:
        blocked = pool.submit(client.blpop, ["nothing"], 30)  # in flight while the reset hits
        proxy.wait_active(2)
        deadline = time.monotonic() + 30
        while not any(c["cmd"] == "blpop" for c in direct.client_list()):  # the BLPOP reached the server
            assert time.monotonic() < deadline, "BLPOP never reached the server"
            time.sleep(0.01)
        started = time.monotonic()
        assert proxy.reset() == 2
        with pytest.raises(redis.ConnectionError):
            blocked.result(timeout=30)
        assert time.monotonic() - started < 10
    with pytest.raises(ConnectionResetError):
        sock.recv(64)
    sock.close()
    assert client.ping() is True  # a fresh connection
    assert proxy.stats.resets == 2


def test_blackhole_forwards_nothing_keeps_sockets_and_flows_after_heal(
    proxy: FaultProxy, client: redis.Redis, fault_redis: FaultRedis
) -> None:
    """blackhole: no reply and no EOF (the socket stays open); held bytes flow after heal()."""
    sock = _raw(proxy)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    proxy.blackhole()
    sock.sendall(b"INCR held\r\n")
    with pytest.raises(TimeoutError):  # no reply, and no EOF either
        sock.recv(64)
    with pytest.raises(redis.TimeoutError):
        client.ping()
    with fault_redis.client() as direct:
        assert direct.get("held") is None  # the command did not reach the server
    assert proxy.stats.active >= 2
    proxy.heal()
    sock.settimeout(2)
    assert sock.recv(64) == b":1\r\n"  # delivered late, like TCP after a short partition
    sock.close()


def test_blackhole_holds_new_connections(proxy: FaultProxy) -> None:
    """blackhole: a new connection is accepted but nothing passes until heal()."""
    proxy.blackhole()
    with _client(proxy, timeout_s=0.3) as c:
        with pytest.raises(redis.TimeoutError):
            c.ping()
        proxy.heal()
        assert c.ping() is True


def test_drop_next_reply_runs_the_command_but_loses_the_reply(proxy: FaultProxy, fault_redis: FaultRedis) -> None:
    """drop_next_reply: the server runs the command, the client never gets its reply (once)."""
    with _client(proxy, timeout_s=0.5) as c:
        c.ping()
        proxy.drop_next_reply()
        with pytest.raises(redis.TimeoutError):
            c.incr("counter")
        assert proxy.pending_drops == 0
        with fault_redis.client() as direct:
            assert direct.get("counter") == b"1"
        assert c.incr("counter") == 2  # redis-py reconnected after the timeout; nothing more dropped
    assert proxy.stats.replies_dropped == 1


def test_refuse_closes_new_connections_only(proxy: FaultProxy, client: redis.Redis) -> None:
    """refuse: new connections are closed at once; open ones keep working; refuse(False) undoes it."""
    client.ping()
    proxy.refuse()
    with _client(proxy) as fresh, pytest.raises(redis.ConnectionError):
        fresh.ping()
    assert client.ping() is True
    proxy.refuse(False)
    with _client(proxy) as fresh:
        assert fresh.ping() is True
    assert proxy.stats.refused == 1


def test_upstream_down_closes_the_client(fault_redis: FaultRedis, proxy: FaultProxy) -> None:
    """With the server killed, a client through the proxy gets a connection error, not a hang."""
    fault_redis.kill()
    with _client(proxy) as c, pytest.raises(redis.ConnectionError):
        c.ping()
    fault_redis.start()
    with _client(proxy) as c:
        assert c.ping() is True
    assert proxy.stats.upstream_failures == 1


async def test_proxy_is_driven_from_async_tests(proxy: FaultProxy) -> None:
    """The proxy's controls work from an async test with a redis.asyncio client."""
    client = aioredis.Redis(port=proxy.port, socket_timeout=0.5, retry=AsyncRetry(NoBackoff(), 0))
    try:
        with anyio.fail_after(5):
            assert await client.ping() is True
            proxy.reset()
            with pytest.raises(redis.ConnectionError):
                await client.ping()
            proxy.blackhole()
            with pytest.raises(redis.TimeoutError):
                await client.ping()
            proxy.heal()
            assert await client.ping() is True
    finally:
        await client.aclose()


def test_close_is_idempotent_and_frees_the_port(fault_redis: FaultRedis) -> None:
    """close() aborts connections, stops the thread, and can be called twice."""
    p = FaultProxy(fault_redis.port).start()
    with _client(p) as c:
        c.ping()
        p.close()
        p.close()
        with pytest.raises(redis.ConnectionError):
            c.ping()
    assert p._thread is not None and not p._thread.is_alive()


def test_events_show_who_closed_a_connection(proxy: FaultProxy) -> None:
    """events(): accept, reset and refuse are logged, and a client giving up during a blackhole
    shows as client_closed (how fault tests see that a client noticed), after its 0.3 s timeout
    (the upper bound is generous for a loaded machine)."""
    t0 = time.monotonic()
    with _client(proxy, timeout_s=0.3) as c:
        c.ping()
        proxy.reset()
        c.ping()
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            c.ping()
        noticed = proxy.wait_event("client_closed", started, timeout_s=10)
        assert 0.25 <= noticed.at - started < 3.0
        proxy.heal()
    proxy.refuse()
    with _client(proxy) as fresh, pytest.raises(redis.ConnectionError):
        fresh.ping()
    kinds = [e.kind for e in proxy.events(since=t0)]
    assert kinds[:4] == ["accept", "reset", "accept", "client_closed"] and kinds[-1] == "refuse"
