"""Credential rotation without failed publishes: the ACL user accepts a second password, the bus
rotates to it (new connections authenticate with it, in-flight commands finish), the old one is
removed; publishers and a consumer keep running throughout (private redis-server, ``fault``)."""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import pytest

from bus import AuthenticationError, EventBus
from bus.security import add_password_args, remove_password_args, service_acl
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_for_stats

from .conftest import AclServer

STREAM = "alga-psa:event-stream:global:TICKET_CREATED"


async def connections_received(server: AclServer) -> int:
    """The server's ``total_connections_received`` counter."""
    info: Any = await server.admin.info("stats")
    return int(info["total_connections_received"])


async def auth_failures(server: AclServer) -> int:
    """ACL LOG entries of failed authentications (any user)."""
    return sum(int(e["count"]) for e in await server.acl_log() if e["reason"] == "auth")


class Publishers:
    """Publisher tasks that publish one event after another until stopped, counting outcomes."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.ok = 0
        self.event_ids: list[str] = []
        self.failures: list[BaseException] = []
        self.stopped = anyio.Event()
        self._progress = anyio.Event()

    async def run(self) -> None:
        """Publish until :meth:`stop`."""
        while not self.stopped.is_set():
            try:
                result = await self.bus.publish("TICKET_CREATED", ticket_created_payload())
            except Exception as exc:
                self.failures.append(exc)
            else:
                self.ok += 1
                self.event_ids.append(result.event_id)
            progress, self._progress = self._progress, anyio.Event()
            progress.set()

    async def wait_for(self, count: int) -> None:
        """Wait until ``count`` publishes succeeded in total."""
        while self.ok < count:
            await self._progress.wait()

    def stop(self) -> None:
        """Let every task finish its current publish and return."""
        self.stopped.set()


@pytest.mark.fault
async def test_rotation_under_continuous_publishing_loses_no_publish(acl_redis: AclServer) -> None:
    """Publishers run through add-new/rotate/remove-old: 0 failed publishes, new logins on the new password."""
    pub = service_acl("orders", roles=["publish"])
    con = service_acl("audit", roles=["consume"])
    old_pub, new_pub, old_con, new_con = (secrets.token_urlsafe(18) for _ in range(4))
    await acl_redis.run(*pub.setuser_args(old_pub))
    await acl_redis.run(*con.setuser_args(old_con))
    pub_settings = fast_settings(acl_redis.url(pub.username, old_pub), max_len=1_000_000, connect_timeout_s=2.0)
    con_settings = fast_settings(acl_redis.url(con.username, old_con), max_len=1_000_000)
    recorder = Recorder()
    async with EventBus(pub_settings) as bus, EventBus(con_settings) as consumer:
        consumer.subscribe("TICKET_CREATED", recorder)
        publishers = Publishers(bus)
        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                await tg.start(consumer.run)
                for _ in range(4):
                    tg.start_soon(publishers.run)
                await publishers.wait_for(300)

                # 1. the users accept a second password; 2. the buses switch to it.
                await acl_redis.run(*add_password_args(pub.username, new_pub))
                await acl_redis.run(*add_password_args(con.username, new_con))
                await bus.rotate_credentials(pub.username, new_pub)
                await consumer.rotate_credentials(con.username, new_con)
                await publishers.wait_for(publishers.ok + 300)

                # 3. the old passwords are removed; every connection made from now on must use the new one.
                await acl_redis.run(*remove_password_args(pub.username, old_pub))
                await acl_redis.run(*remove_password_args(con.username, old_con))
                opened_before = await connections_received(acl_redis)
                for _ in range(12):  # more concurrency: the publisher's pool opens new connections
                    tg.start_soon(publishers.run)
                # The consumer's connections (its blocking reader too) are cut: it must reconnect.
                await acl_redis.run("CLIENT", "KILL", "USER", con.username)
                await publishers.wait_for(publishers.ok + 1000)
                publishers.stop()
                await wait_for_stats(consumer, lambda s: s.handled >= len(publishers.event_ids))
                tg.cancel_scope.cancel()
        opened_after = await connections_received(acl_redis)
        assert bus.settings.password == new_pub and old_pub not in (bus.settings.redis_url or "")
    assert publishers.failures == []
    assert publishers.ok >= 1600
    assert await acl_redis.admin.xlen(STREAM) == publishers.ok == len(set(publishers.event_ids))
    assert set(recorder.event_ids) == set(publishers.event_ids)
    assert opened_after - opened_before >= 10  # >= 9 new publisher connections + the consumer's reconnects
    assert consumer.stats.reconnects >= 1
    assert await auth_failures(acl_redis) == 0
    with pytest.raises(AuthenticationError):  # the old password is really gone
        async with EventBus(fast_settings(acl_redis.url(pub.username, old_pub))):
            pass


@pytest.mark.fault
async def test_rotation_to_a_wrong_password_is_refused_and_publishing_continues(acl_redis: AclServer) -> None:
    """Rotating to a refused password raises AuthenticationError; publishing goes on with 0 failures."""
    user = service_acl("orders", roles=["publish"])
    password, wrong = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    await acl_redis.run(*user.setuser_args(password))
    async with EventBus(fast_settings(acl_redis.url(user.username, password), max_len=100_000)) as bus:
        publishers = Publishers(bus)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(publishers.run)
                await publishers.wait_for(200)
                with pytest.raises(AuthenticationError) as info:
                    await bus.rotate_credentials(user.username, wrong)
                await bus.client.connection_pool.disconnect(inuse_connections=False)  # force fresh logins
                await publishers.wait_for(publishers.ok + 300)
                publishers.stop()
        assert bus.settings.password == password
    assert publishers.failures == []
    assert wrong not in str(info.value) and wrong not in repr(info.value)
    assert "WRONGPASS" in str(info.value)
    assert await acl_redis.admin.xlen(STREAM) == publishers.ok
