"""ACL users per tenant and per service: the generated rules confine a user to its key prefix
and the bus's commands (checked against a private redis-server, marker ``fault``)."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import anyio
import pytest

from bus import BusSettings, EventBus, Keys, PermissionDeniedError, Reject, redis_errors
from bus._acl import password_hash
from bus.security import add_password_args, remove_password_args, service_acl, tenant_acl, tenant_prefix
from bus.testing import Recorder, fast_settings, ticket_created_payload, wait_for_stats

from .conftest import AclServer, command

TS = "2026-01-23T10:11:12.345Z"


def ticket(tenant: str) -> dict[str, Any]:
    """A domain-shape TICKET_CREATED payload of ``tenant`` (any non-empty tenant id)."""
    return {"tenantId": tenant, "occurredAt": TS, "ticketId": str(uuid.uuid4()), "actorType": "SYSTEM"}


def test_service_acl_matches_the_documented_email_service_line() -> None:
    """svc-email (consume + notify) gets its channel's streams, the markers, notification channels, consume commands."""
    user = service_acl("email", channels=["emailservice::v7"], roles=["consume", "notify"])
    assert user.command_line() == (
        "ACL SETUSER svc-email reset on >*** resetkeys ~alga-psa:event-stream:emailservice::v7:* "
        "~alga-psa:processed:* ~alga-psa:processed-handlers:* ~alga-psa:effect:* resetchannels "
        "&alga-psa:internal-notifications:* -@all +ping +multi +exec +discard +xgroup|create +xreadgroup +xack "
        "+xclaim +xautoclaim +xpending +xrange +xadd +xinfo|stream +xinfo|groups +xinfo|consumers +sadd +smismember "
        "+expire +eval +rename +watch +unwatch +exists +set +publish"
    )


def test_tenant_acl_is_confined_to_the_tenant_prefix() -> None:
    """tenant-acme: its prefix (markers included), append-only workflow, no SCAN, never the reference's marker sets."""
    user = tenant_acl("acme", roles=["publish", "consume", "inspect", "notify"])
    assert user.keys == ("~alga-psa:tenant:acme:*", "%W~workflow:events:global")
    assert user.channels == ("&alga-psa:tenant:acme:internal-notifications:acme:*",)
    assert "scan" not in user.commands and "publish" in user.commands
    assert not any(c in user.commands for c in ("config", "flushall", "acl", "keys", "del", "info"))


def test_exact_streams_and_escaped_channels() -> None:
    """event_types narrows to exact streams (plus dead letters); glob characters of a channel are escaped."""
    user = service_acl("crm", channels=["odd*chan"], roles=["consume"], event_types=["TICKET_CREATED"])
    assert user.keys[:2] == (
        "~alga-psa:event-stream:odd\\*chan:TICKET_CREATED",
        "~alga-psa:event-stream:odd\\*chan:TICKET_CREATED:dead-letter",
    )


def test_passwords_appear_only_as_sha256() -> None:
    """setuser_args, the printed line and the aclfile line carry the SHA-256, never the password."""
    password = secrets.token_urlsafe(24)
    user = tenant_acl("acme")
    texts = [" ".join(user.setuser_args(password)), user.command_line(password), user.acl_file_line(password)]
    texts += [" ".join(add_password_args("u", password)), " ".join(remove_password_args("u", password))]
    assert sum(t.count(password) for t in texts) == 0
    assert sum(t.count(password_hash(password)) for t in texts) == 5


async def _create(server: AclServer, user: Any, password: str) -> None:
    await server.run(*user.setuser_args(password))


def _tenant_settings(server: AclServer, tenant: str, password: str, *, prefix_of: str | None = None) -> BusSettings:
    return fast_settings(
        server.url(f"tenant-{tenant}", password),
        prefix=tenant_prefix(prefix_of or tenant),
        max_deliveries=2,
        handler_retries=0,
    )


@pytest.mark.fault
async def test_tenant_a_is_denied_tenant_b_keys_and_admin_commands(acl_redis: AclServer) -> None:
    """As tenant A, 10 commands on tenant B's keys and 5 admin commands are NOPERM; A's own path works."""
    pw_a, pw_b = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    roles: list[Any] = ["publish", "consume", "inspect", "notify"]
    await _create(acl_redis, tenant_acl("A", roles=roles), pw_a)
    await _create(acl_redis, tenant_acl("B", roles=roles), pw_b)
    keys_b = Keys(tenant_prefix("B"))
    stream_b = keys_b.stream("global", "TICKET_CREATED")
    async with EventBus(_tenant_settings(acl_redis, "B", pw_b)) as bus_b:  # B's keys exist
        await bus_b.publish("TICKET_CREATED", ticket("B"))
        await bus_b.client.xgroup_create(stream_b, "event-processors", id="0")

    async with EventBus(_tenant_settings(acl_redis, "A", pw_a)) as bus_a:
        await acl_redis.run("ACL", "LOG", "RESET")  # connect's INFO is refused too
        client = bus_a.client
        on_b_keys: list[tuple[str, Any]] = [
            ("XADD", lambda: client.xadd(stream_b, {"event": "{}"})),
            ("XRANGE", lambda: client.xrange(stream_b)),
            ("XREADGROUP", lambda: client.xreadgroup("event-processors", "a", {stream_b: ">"}, count=1)),
            ("XACK", lambda: client.xack(stream_b, "event-processors", "1-0")),
            ("XGROUP CREATE", lambda: client.xgroup_create(stream_b, "mine", id="0")),
            ("XPENDING", lambda: client.xpending(stream_b, "event-processors")),
            ("SADD", lambda: client.sadd(keys_b.marker_events("B"), "x")),
            ("SMISMEMBER", lambda: client.smismember(keys_b.marker_handlers("B"), ["x"])),
            ("GET", lambda: client.get(f"{keys_b.prefix}idempotency:B:k")),
            ("PUBLISH", lambda: client.publish(keys_b.notification_channel("B", "u1"), "hi")),
        ]
        admin: list[tuple[str, Any]] = [
            ("CONFIG", lambda: command(client, "CONFIG", "SET", "maxmemory", "1")),
            ("FLUSHALL", lambda: command(client, "FLUSHALL")),
            ("ACL", lambda: command(client, "ACL", "SETUSER", "tenant-A", "+@all", "~*")),
            ("SHUTDOWN", lambda: command(client, "SHUTDOWN", "NOSAVE")),
            ("DEBUG", lambda: command(client, "DEBUG", "SLEEP", "0")),
        ]
        denied: dict[str, str] = {}
        for name, call in [*on_b_keys, *admin]:
            with pytest.raises(PermissionDeniedError) as info, redis_errors(name):
                await call()
            denied[name] = str(info.value)
        assert len(denied) == 15
        assert all("Redis denied the command" in text for text in denied.values())

        log = await acl_redis.acl_log("tenant-A")
        by_reason: dict[str, int] = {}
        for entry in log:
            by_reason[entry["reason"]] = by_reason.get(entry["reason"], 0) + int(entry["count"])
        assert by_reason == {"key": 9, "channel": 1, "command": 5}

        # A's own path is fully allowed: publish, consume, dead letter under its prefix.
        recorder = Recorder(fail={3: Reject("bad ticket")})
        bus_a.subscribe("TICKET_CREATED", recorder)
        async with anyio.create_task_group() as tg:
            await tg.start(bus_a.run)
            for _ in range(20):
                await bus_a.publish("TICKET_CREATED", ticket("A"))
            with anyio.fail_after(10):
                stats = await wait_for_stats(bus_a, lambda s: s.handled + s.dead_lettered == 20)
            tg.cancel_scope.cancel()
        assert (stats.handled, stats.dead_lettered) == (19, 1)
    assert await acl_redis.admin.xlen(stream_b) == 1  # B's stream untouched
    assert sum(int(e["count"]) for e in await acl_redis.acl_log("tenant-A") if e["reason"] != "command") == 10


@pytest.mark.fault
async def test_subscriber_misconfigured_onto_tenant_b_stream_exits_with_permission_denied(acl_redis: AclServer) -> None:
    """A subscriber on tenant B's prefix exits with PermissionDeniedError after 1 refused command.

    Exiting at once (no retry loop) is the behaviour; the time bound is generous for a loaded machine.
    """
    pw_a = secrets.token_urlsafe(16)
    await _create(acl_redis, tenant_acl("A"), pw_a)
    async with EventBus(_tenant_settings(acl_redis, "A", pw_a, prefix_of="B")) as bus:
        bus.subscribe("TICKET_CREATED", Recorder())
        await acl_redis.run("ACL", "LOG", "RESET")
        started = time.monotonic()
        with anyio.fail_after(30), pytest.raises(PermissionDeniedError) as info:
            await bus.run()
        elapsed = time.monotonic() - started
    assert "alga-psa:tenant:B:event-stream:global:TICKET_CREATED" in str(info.value)
    assert "XGROUP CREATE" in str(info.value) and "no permissions" in str(info.value)
    assert elapsed < 10.0
    assert bus.stats.reconnects == 0
    log = await acl_redis.acl_log("tenant-A")
    assert [(e["reason"], int(e["count"])) for e in log] == [("key", 1)]


@pytest.mark.fault
async def test_service_user_publishes_and_consumes_with_only_its_generated_rules(acl_redis: AclServer) -> None:
    """svc-tickets runs 50 publishes (10 idempotent repeats) and status with only its rules."""
    password = secrets.token_urlsafe(16)
    user = service_acl("tickets", channels=["global"], roles=["publish", "consume", "inspect"], workflow="full")
    await _create(acl_redis, user, password)
    settings = fast_settings(acl_redis.url(user.username, password))
    async with EventBus(settings) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            tenant = str(uuid.uuid4())
            for i in range(50):  # 10 repeats of an idempotency key write nothing
                await bus.publish(
                    "TICKET_CREATED", ticket_created_payload(tenantId=tenant), idempotency_key=f"k{i % 40}"
                )
            with anyio.fail_after(10):
                await wait_for_stats(bus, lambda s: s.handled == 40)
            status = await bus.status()
            tg.cancel_scope.cancel()
    assert len(recorder.deliveries) == 40
    assert status.streams[0].length == 40
    assert [e["object"] for e in await acl_redis.acl_log(user.username)] == ["info"]
