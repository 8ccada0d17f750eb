"""Sentinel mode: settings from a ``redis+sentinel://`` URL or the variables, and a failover on real
servers started here (a master, a replica, three sentinels on free ports, all stopped at the end).

The failover test publishes 10,000 events from 20 concurrent publishers while a consumer handles
them, SIGKILLs the master after the first 3,000 were acknowledged (and, once the replica is
promoted, starts that node again, empty, as the new master's replica), and counts: every publish that
returned must be consumed when ``BUS_PUBLISH_MIN_REPLICAS=1``; without it the loss is counted and
reported (asynchronous replication can lose the last acknowledged writes). Publishers and the
consumer must resume within 10 s of the promotion.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import redis

from bus import BusError, BusSettings, ConfigurationError, Delivery, EventBus, PublishOutcomeUnknownError, create_client
from bus._sentinel import sentinel_addresses
from bus.wire import exchange, pack
from bus.wire._hiredis import fast_reader
from tests.conftest import free_port
from tests.test_bus._support import ticket_created

MASTER = "mymaster"


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "redis+sentinel://h1:26379,h2:26380/mymaster",
            {"sentinels": "h1:26379,h2:26380", "sentinel_master": "mymaster", "db": 0, "password": None},
            id="two-sentinels",
        ),
        pytest.param(
            "redis+sentinel://:s%40cret@h1:26379/main/3",
            {"sentinels": "h1:26379", "sentinel_master": "main", "db": 3, "password": "s@cret"},
            id="password-and-db",
        ),
        pytest.param(
            "redis+sentinel://h1/main", {"sentinels": "h1:26379", "sentinel_master": "main"}, id="default-port"
        ),
    ],
)
def test_sentinel_url_fills_the_sentinel_settings(url: str, expected: dict[str, Any]) -> None:
    """A redis+sentinel:// URL names the sentinels, the master, and the data nodes' password and db."""
    settings = BusSettings.from_url(url)
    assert {k: getattr(settings, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"REDIS_SENTINELS": "h1:26379"}, "REDIS_SENTINEL_MASTER", id="no-master"),
        pytest.param({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS", id="no-sentinels"),
        pytest.param({"REDIS_SENTINELS": "h1:port", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS", id="bad-port"),
        pytest.param({"REDIS_URL": "redis+sentinel://h1:26379"}, "REDIS_URL", id="url-without-master"),
        pytest.param(
            {"BUS_PUBLISH_MIN_REPLICAS": "1", "BUS_PUBLISH_REPLICAS_TIMEOUT_MS": "20000"},
            "BUS_PUBLISH_REPLICAS_TIMEOUT_MS",
            id="wait-longer-than-the-socket-timeout",
        ),
    ],
)
def test_incomplete_sentinel_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    """Sentinel settings missing a half, with a bad address, or a WAIT past the socket timeout fail at start."""
    with pytest.raises(ConfigurationError, match=variable):
        BusSettings.from_env(env)


def test_sentinel_variables_are_read_from_the_environment() -> None:
    """REDIS_SENTINELS and REDIS_SENTINEL_MASTER give the same settings as the URL."""
    settings = BusSettings.from_env({"REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2", "REDIS_SENTINEL_MASTER": "m"})
    assert sentinel_addresses(settings.sentinels or "") == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]


# --- a real deployment ---------------------------------------------------------------------------


class Sentinel:
    """``redis-server sentinel.conf --sentinel`` on a free port, monitoring ``MASTER``."""

    def __init__(self, directory: Path, master_port: int) -> None:
        self.port = free_port()
        directory.mkdir()
        conf = directory / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {directory}",
                    f"logfile {directory / 'sentinel.log'}",
                    f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2",
                    f"sentinel down-after-milliseconds {MASTER} 1000",
                    f"sentinel failover-timeout {MASTER} 5000",
                    f"sentinel parallel-syncs {MASTER} 1",
                    "",
                ]
            )
        )
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        self.proc = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=1.0, decode_responses=True)

    def ready(self, n_sentinels: int) -> bool:
        """It answers, sees an online replica and the other sentinels."""
        try:
            replicas = self.client.sentinel_slaves(MASTER)
            peers = self.client.sentinel_sentinels(MASTER)
        except (redis.ConnectionError, redis.ResponseError, OSError):
            return False
        online = [r for r in replicas if "s_down" not in r.get("flags", "") and r.get("master-link-status") == "ok"]
        return bool(online) and len(peers) == n_sentinels - 1

    def kill(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Deployment:
    """A master, its replica and three sentinels, each on a free port."""

    def __init__(self, redis_process: Callable[..., Any], tmp_path: Path) -> None:
        self.master = redis_process(appendonly=False)
        self.replica = redis_process(appendonly=False, extra=("--replicaof", "127.0.0.1", str(self.master.port)))
        self.sentinels: list[Sentinel] = []
        for i in range(3):
            self.sentinels.append(Sentinel(tmp_path / f"sentinel-{i}", self.master.port))
        deadline = time.monotonic() + 60
        while not all(s.ready(3) for s in self.sentinels):
            assert time.monotonic() < deadline, "the sentinels did not see the replica and each other within 60 s"
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{MASTER}"

    def promoted(self) -> bool:
        """The replica was made the master (the sentinels announce it a moment later)."""
        return self._role(self.replica.port) == b"master"

    def replica_online(self) -> bool:
        """The promoted master has a replica in sync again (``WAIT 1`` can be satisfied)."""
        client = redis.Redis(port=self.replica.port, socket_timeout=1.0)
        try:
            info = client.info("replication")
        except (redis.ConnectionError, OSError):
            return False
        finally:
            client.close()
        return any(isinstance(v, dict) and v.get("state") == "online" for k, v in info.items() if k.startswith("slave"))

    def demoted(self) -> bool:
        """The old master was made a replica (after a failover it survived)."""
        return self._role(self.master.port) == b"slave"

    @staticmethod
    def _role(port: int) -> bytes | None:
        client = redis.Redis(port=port, socket_timeout=1.0)
        try:
            return bytes(client.role()[0])
        except (redis.ConnectionError, OSError):
            return None
        finally:
            client.close()

    def replace_master(self) -> None:
        """Start the killed master's node again, empty, as a replica of the promoted one."""
        self.master.extra = ("--replicaof", "127.0.0.1", str(self.replica.port))
        self.master.start()

    def stop(self) -> None:
        for s in self.sentinels:
            s.kill()


@pytest.fixture
def deployment(redis_process: Callable[..., Any], tmp_path: Path) -> Iterator[Deployment]:
    """The sentinel deployment of one test (the redis-servers are killed by ``redis_process``)."""
    d = Deployment(redis_process, tmp_path)
    try:
        yield d
    finally:
        d.stop()


class Run:
    """What one failover run saw."""

    def __init__(self) -> None:
        self.acked: dict[str, float] = {}  # event id -> when its publish returned
        self.unknown = 0  # publishes that raised (retried with the same event id)
        self.consumed: dict[str, float] = {}  # event id -> first handled
        self.attempt_at: dict[str, float] = {}  # event id -> start of its successful attempt
        self.first_attempt_at: dict[str, float] = {}  # event id -> start of its first attempt
        self.killed_at = 0.0
        self.promoted_at = 0.0
        #: When publishing could go on: the promotion, or (WAIT 1) the replacement replica in sync.
        self.writable_at = 0.0

    def lost(self) -> set[str]:
        return set(self.acked) - set(self.consumed)

    def summary(self) -> str:
        publish, consume = _resumed(self)
        return (
            f"promoted {self.promoted_at - self.killed_at:.2f}s after the kill, writable "
            f"{self.writable_at - self.promoted_at:.2f}s after it; publishing resumed {publish:.2f}s after it "
            f"was writable, consuming {consume:.2f}s after the promotion; {self.unknown} failed attempts"
        )


async def failover_run(deployment: Deployment, prefix: str, min_replicas: int, n: int = 10_000) -> Run:
    """Publish ``n`` events (20 publishers) to a consumer; SIGKILL the master after 3,000 acks."""
    run = Run()
    common: dict[str, Any] = {
        "prefix": prefix,
        "max_len": 100_000,  # no trimming: a consumer behind by 1,000 entries must not lose them to MAXLEN ~
        "socket_timeout_s": 2.0,
        "connect_timeout_s": 1.0,
        "retry_backoff_s": 0.05,
        "retry_backoff_max_s": 0.5,
        "block_ms": 1000,
        "read_timeout_s": 3.0,
    }
    publisher = EventBus(
        BusSettings.from_url(
            deployment.url, publish_min_replicas=min_replicas, publish_replicas_timeout_ms=1000, **common
        )
    )
    consumer = EventBus(BusSettings.from_url(deployment.url, **common))
    payload = ticket_created()

    async def handler(delivery: Delivery) -> None:
        run.consumed.setdefault(delivery.event_id, time.monotonic())

    consumer.subscribe("TICKET_CREATED", handler, subscriber_id="failover")

    async def publish_some(events: list[str]) -> None:
        for event_id in events:
            run.first_attempt_at[event_id] = time.monotonic()
            while True:
                started = time.monotonic()
                try:
                    await publisher.publish("TICKET_CREATED", payload, event_id=event_id)
                except BusError:  # PublishOutcomeUnknownError, unavailable...: the same event again
                    run.unknown += 1
                    await anyio.sleep(0.05)
                    continue
                run.acked[event_id] = time.monotonic()
                run.attempt_at[event_id] = started
                break

    async def kill_master() -> None:
        while len(run.acked) < 3000:  # noqa: ASYNC110 - a count, no event to wait on
            await anyio.sleep(0.01)
        deployment.master.kill()
        run.killed_at = time.monotonic()
        while not await anyio.to_thread.run_sync(deployment.promoted):  # noqa: ASYNC110 - polls the replica
            await anyio.sleep(0.05)
        run.promoted_at = time.monotonic()
        # A replacement replica of the new master, at the old master's address (as an operator or
        # orchestrator replaces the failed node): WAIT 1 needs one replica to confirm again.
        await anyio.to_thread.run_sync(deployment.replace_master)
        if min_replicas:
            while not await anyio.to_thread.run_sync(deployment.replica_online):  # noqa: ASYNC110 - polls
                await anyio.sleep(0.05)
        run.writable_at = time.monotonic() if min_replicas else run.promoted_at

    ids = [str(uuid.uuid4()) for _ in range(n)]
    with anyio.fail_after(180):
        async with publisher, consumer, anyio.create_task_group() as tg:
            await tg.start(consumer.run)
            tg.start_soon(kill_master)
            async with anyio.create_task_group() as publishers:
                for i in range(20):
                    publishers.start_soon(publish_some, ids[i::20])
            with anyio.move_on_after(60):  # the acknowledged ones arrive, or the loss is what is missing
                while not (run.promoted_at and set(run.acked) <= set(run.consumed)):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            consumer.stop()
    return run


def _resumed(run: Run) -> tuple[float, float]:
    """Seconds from when the new master could take the publishes (the promotion; with WAIT 1, its
    replacement replica in sync: a machine's load, not the bus, decides how long that sync takes)
    until the first publish attempted after the kill was acknowledged, and from the promotion until
    the first event first sent after the kill was consumed (both on the new master)."""
    after_kill = [e for e, t in run.attempt_at.items() if t > run.killed_at]
    first_ack = min(run.acked[e] for e in after_kill)
    sent_after_kill = [e for e, t in run.first_attempt_at.items() if t > run.killed_at]
    first_consumed = min(run.consumed[e] for e in sent_after_kill if e in run.consumed)
    return first_ack - run.writable_at, first_consumed - run.promoted_at


@pytest.mark.integration
@pytest.mark.fault
@pytest.mark.slow
async def test_failover_with_min_replicas_loses_no_acknowledged_publish(
    deployment: Deployment, test_prefix: str
) -> None:
    """BUS_PUBLISH_MIN_REPLICAS=1, master SIGKILLed during 10,000 events: every publish that returned is
    consumed; publishers resume within 10 s of the new master having a replica in sync again, the
    consumer within 10 s of the promotion."""
    run = await failover_run(deployment, test_prefix, min_replicas=1)
    assert run.promoted_at > run.killed_at > 0
    assert len(run.acked) == 10_000
    assert run.lost() == set()
    publish_resumed, consume_resumed = _resumed(run)
    print(f"min_replicas=1: {run.summary()}")
    assert publish_resumed < 10
    assert consume_resumed < 10


@pytest.mark.integration
@pytest.mark.fault
@pytest.mark.slow
async def test_failover_without_min_replicas_counts_the_loss(deployment: Deployment, test_prefix: str) -> None:
    """Without BUS_PUBLISH_MIN_REPLICAS the same run resumes within 10 s of the promotion; acknowledged
    publishes the replica had not received are lost: the test counts and reports them (README "Scaling out")."""
    run = await failover_run(deployment, test_prefix, min_replicas=0)
    assert run.promoted_at > run.killed_at > 0
    assert len(run.acked) == 10_000
    publish_resumed, consume_resumed = _resumed(run)
    lost = run.lost()
    print(f"min_replicas=0: lost {len(lost)} of 10000 acknowledged; {run.summary()}")
    assert publish_resumed < 10
    assert consume_resumed < 10
    assert all(run.acked[e] < run.promoted_at for e in lost)  # only writes acked before the failover can be lost


@pytest.mark.integration
@pytest.mark.fault
async def test_unconfirmed_replication_raises_outcome_unknown(
    redis_process: Callable[..., Any], test_prefix: str
) -> None:
    """A master without replicas and BUS_PUBLISH_MIN_REPLICAS=1: the publish is written but WAIT cannot confirm
    it, so it raises PublishOutcomeUnknownError naming the event; with 0 the same publish returns."""
    server = redis_process(appendonly=False)
    settings = BusSettings.from_url(
        server.url, prefix=test_prefix, publish_min_replicas=1, publish_replicas_timeout_ms=50
    )
    async with EventBus(settings) as bus:
        with pytest.raises(PublishOutcomeUnknownError, match="WAIT 1 confirmed 0 replica") as caught:
            await bus.publish("TICKET_CREATED", ticket_created(), event_id="5f0c6d3e-9b1a-4c2e-8f7d-000000000001")
        assert caught.value.event_ids == ("5f0c6d3e-9b1a-4c2e-8f7d-000000000001",)
        assert await bus.client.xlen(f"{test_prefix}event-stream:global:TICKET_CREATED") == 1
        events = [bus.prepare("TICKET_CREATED", ticket_created()) for _ in range(3)]
        with pytest.raises(PublishOutcomeUnknownError) as many:
            await bus.write(events)
        assert len(many.value.event_ids) == 3
    async with EventBus(BusSettings.from_url(server.url, prefix=test_prefix)) as bus:
        await bus.publish("TICKET_CREATED", ticket_created())


@pytest.mark.integration
@pytest.mark.fault
@pytest.mark.slow
async def test_publisher_and_consumer_follow_a_coordinated_failover(deployment: Deployment, test_prefix: str) -> None:
    """SENTINEL FAILOVER: between the promotion and the old master's demotion, a publish with
    BUS_PUBLISH_MIN_REPLICAS=1 never returns (the old master has no replica left) while one without it is
    acknowledged by the old master and then lost (counted); after the demotion publisher and consumer
    reach the promoted master within 10 s."""
    settings = BusSettings.from_url(deployment.url, prefix=test_prefix, block_ms=500, read_timeout_s=2.0)
    guarded_settings = msgspec.structs.replace(settings, publish_min_replicas=1, publish_replicas_timeout_ms=200)
    handled: list[str] = []
    consumer = EventBus(settings)
    consumer.subscribe("TICKET_CREATED", lambda d: _record(handled, d), subscriber_id="coordinated")
    async with (
        EventBus(settings) as publisher,
        EventBus(guarded_settings) as guarded,
        consumer,
        anyio.create_task_group() as tg,
    ):
        await tg.start(consumer.run)
        first = await publisher.publish("TICKET_CREATED", ticket_created())
        await guarded.publish("TICKET_CREATED", ticket_created())  # confirmed by the replica
        with anyio.fail_after(10):
            while first.event_id not in handled:  # noqa: ASYNC110 - a handler's list
                await anyio.sleep(0.02)
        deployment.sentinels[0].client.sentinel_failover(MASTER)
        with anyio.fail_after(30):
            while not await anyio.to_thread.run_sync(deployment.promoted):  # noqa: ASYNC110 - polls the replica
                await anyio.sleep(0.05)
        window: list[str] = []  # acknowledged between the promotion and the demotion (split brain)
        refused = 0
        for _ in range(5):
            if await anyio.to_thread.run_sync(deployment.demoted):
                break
            with contextlib.suppress(BusError):
                window.append((await publisher.publish("TICKET_CREATED", ticket_created())).event_id)
            with pytest.raises(BusError):  # PublishOutcomeUnknownError: WAIT 1 found no replica
                await guarded.publish("TICKET_CREATED", ticket_created())
            refused += 1
        with anyio.fail_after(30):
            while not await anyio.to_thread.run_sync(deployment.demoted):  # noqa: ASYNC110 - polls the old master
                await anyio.sleep(0.05)
        demoted_at = time.monotonic()
        with anyio.fail_after(10):
            while True:
                try:
                    second = await publisher.publish("TICKET_CREATED", ticket_created())
                    break
                except BusError:  # a connection to the demoted master, once per pooled connection
                    await anyio.sleep(0.05)
            while second.event_id not in handled:  # noqa: ASYNC110 - a handler's list
                await anyio.sleep(0.02)
        assert time.monotonic() - demoted_at < 10
        assert publisher.client.connection_pool.master_address == ("127.0.0.1", deployment.replica.port)
        consumer.stop()
        stream = f"{test_prefix}event-stream:global:TICKET_CREATED"
        kept = {f[b"event"] for _, f in await publisher.client.xrange(stream)}
        lost = [e for e in window if not any(e.encode() in k for k in kept)]
        print(f"split brain: {len(window)} acknowledged by the old master, {len(lost)} lost; {refused} guarded refused")

    # The sentinels kill the demoted master's clients; a connection that survives (opened in between,
    # or a REPLICAOF by hand) answers writes with READONLY: the wire layer drops it, as redis-py does.
    client = create_client(settings)
    conn = client.connection_pool.make_connection()
    try:
        await conn.connect_to(("127.0.0.1", deployment.master.port))
        assert fast_reader(conn) is conn._parser  # sentinel-managed connections keep the fast path
        with pytest.raises(redis.ConnectionError, match="previous master is now a slave"):
            await exchange(conn, pack("SET", f"{test_prefix}probe", "1"), 1, 5.0)
        assert not conn.is_connected
    finally:
        await conn.disconnect()
        await client.aclose()


async def _record(handled: list[str], delivery: Delivery) -> None:
    handled.append(delivery.event_id)
