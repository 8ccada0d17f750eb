"""Idempotent publish: one write per (tenant, key) within the window, atomic with the XADDs."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from test_bus._support import USER, entries, open_bus, parse_commands, ticket_created, workflow_entries

from bus import WORKFLOW_STREAM, PublishResult
from bus.publish import IDMP_PRODUCER
from publishers import (
    Actor,
    PublishContext,
    first_event_id,
    forget_idempotency_key,
    idempotency_marker_key,
    publish_event,
    publish_workflow_event,
)

G, N, E = "global", "internal-notifications", "emailservice::v7"


def ctx(tenant: str = "tenant-a", key: str | None = None) -> PublishContext:
    """A context of ``tenant`` acting as USER."""
    return PublishContext(tenant_id=tenant, actor=Actor.user(USER), idempotency_key=key)


async def counts(backend: aioredis.Redis, bus: Any) -> list[int]:
    """Entries per fan-out stream of TICKET_CREATED."""
    return [len(await entries(backend, bus.keys.stream(ch, "TICKET_CREATED"))) for ch in (G, N, E)]


async def test_same_key_twice_writes_once(backend: aioredis.Redis, test_prefix: str) -> None:
    """The second publish of a key writes nothing on any stream and returns the first event id."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            first = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx(), idempotency_key="k1")
            second = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx(), idempotency_key="k1")
            assert await counts(backend, bus) == [1, 1, 1]
            assert len(await workflow_entries(backend, first.event_id, second.event_id)) == 1
    assert not first.duplicate and len(first.entries) == 4
    assert second.duplicate and second.event_id == first.event_id and second.entries == {}


async def test_key_from_ctx_dedupes_too(backend: aioredis.Redis, test_prefix: str) -> None:
    """ctx.idempotency_key alone makes the publish idempotent."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            a = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx(key="ck"))
            b = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx(key="ck"))
            assert await counts(backend, bus) == [1, 1, 1]
    assert b.duplicate and b.event_id == a.event_id


async def test_concurrent_publishes_of_one_key_write_once(backend: aioredis.Redis, test_prefix: str) -> None:
    """20 tasks publishing one key at once (on separate round trips): exactly one writes, all learn its id."""
    results: list[PublishResult] = []
    async with open_bus(backend, test_prefix) as bus:

        async def caller() -> None:
            results.append(
                await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx(), idempotency_key="race")
            )

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(caller)
            assert await counts(backend, bus) == [1, 1, 1]
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.event_id for r in results}) == 1


async def test_same_key_in_one_batch_writes_once(backend: aioredis.Redis, test_prefix: str) -> None:
    """Two events with one key inside the same MULTI/EXEC (auto-batched): the second is a duplicate."""
    results: list[PublishResult] = []
    async with open_bus(backend, test_prefix) as bus:

        async def caller() -> None:
            results.append(
                await publish_event(bus, "TICKET_CREATED", ticket_created(), idempotency_key="b", batch=True)
            )

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                tg.start_soon(caller)
            assert await counts(backend, bus) == [1, 1, 1]
    assert bus.batcher.groups_written == 1
    assert sorted(r.duplicate for r in results) == [False, True]


async def _until_gone(client: aioredis.Redis, key: str) -> None:
    """Wait until ``key`` has expired."""
    while True:
        if not await client.exists(key):
            return
        await anyio.sleep(0.05)


async def test_publishes_again_after_the_window(backend: aioredis.Redis, test_prefix: str) -> None:
    """Once the window (1 s here) has passed the marker is gone and the key writes again."""
    async with open_bus(backend, test_prefix, idempotency_window_s=1) as bus:
        with anyio.fail_after(10):
            first = await publish_event(bus, "TICKET_CREATED", ticket_created(), idempotency_key="w")
            marker = idempotency_marker_key(bus, "tenant-1", "w")
            ttl = await backend.ttl(marker)
            await _until_gone(backend, marker)  # the window passes
            again = await publish_event(bus, "TICKET_CREATED", ticket_created(), idempotency_key="w")
            assert await counts(backend, bus) == [2, 2, 2]
    assert 0 < ttl <= 1
    assert not again.duplicate and again.event_id != first.event_id


async def test_tenants_do_not_share_keys(backend: aioredis.Redis, test_prefix: str) -> None:
    """The same key under two tenants is two publishes."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            a = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx("t-a"), idempotency_key="k")
            b = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx("t-b"), idempotency_key="k")
    assert not a.duplicate and not b.duplicate and a.event_id != b.event_id


async def test_marker_layout_and_helpers(backend: aioredis.Redis, test_prefix: str) -> None:
    """The marker ``{prefix}idempotency:{tenant}:{key}`` holds the event id, then each stream's; helpers read it."""
    async with open_bus(backend, test_prefix) as bus:
        marker = idempotency_marker_key(bus, "tenant-a", "order:9")
        assert marker == f"{test_prefix}idempotency:tenant-a:order:9"
        with anyio.fail_after(5):
            assert await first_event_id(bus, "tenant-a", "order:9") is None
            result = await publish_workflow_event(
                bus, "TICKET_CREATED", ticket_created(), ctx(), idempotency_key="order:9"
            )
            assert result.event_ids is not None  # TICKET_CREATED fans out: every copy has its own id
            assert await backend.get(marker) == ",".join((result.event_id, *result.event_ids.values())).encode()
            assert await first_event_id(bus, "tenant-a", "order:9") == result.event_id
            assert await forget_idempotency_key(bus, "tenant-a", "order:9")
            again = await publish_workflow_event(
                bus, "TICKET_CREATED", ticket_created(), ctx(), idempotency_key="order:9"
            )
    assert not again.duplicate


async def test_dedupe_off_keeps_the_key_but_writes_again(backend: aioredis.Redis, test_prefix: str) -> None:
    """dedupe=False: idempotencyKey is still in the payload, but no marker is checked or set."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            for _ in range(2):
                await publish_workflow_event(
                    bus, "TICKET_CREATED", ticket_created(), ctx(), idempotency_key="d", dedupe=False
                )
            assert await counts(backend, bus) == [2, 2, 2]
            assert await first_event_id(bus, "tenant-a", "d") is None


async def test_idmp_branch_passes_the_key_to_xadd(fake_client: aioredis.Redis, test_prefix: str) -> None:
    """On servers with XADD IDMP the script gives every XADD ``IDMP <producer> <tenant:key>`` before MAXLEN."""
    async with open_bus(fake_client, test_prefix) as bus:
        bus.capabilities["xadd_idmp"] = True
        prepared = bus.prepare("TICKET_CREATED", ticket_created(), idempotency_key="k", tenant="t")
        bus.capabilities["xadd_idmp"] = False
        plain = bus.prepare("TICKET_CREATED", ticket_created(), idempotency_key="k", tenant="t")
    # EVALSHA sha numkeys marker workflow stream | event_id window n_options options... per-stream fields...
    ((_, _, *args),) = parse_commands(prepared.packed(use_sha=True))
    assert args[:3] == [b"3", f"{test_prefix}idempotency:t:k".encode(), WORKFLOW_STREAM.encode()]
    assert args[7 : 7 + int(args[6])] == [b"IDMP", IDMP_PRODUCER, b"t:k", b"MAXLEN", b"~", b"1000"]
    ((_, _, *plain_args),) = parse_commands(plain.packed(use_sha=True))
    assert plain_args[7 : 7 + int(plain_args[6])] == [b"MAXLEN", b"~", b"1000"]


@pytest.mark.parametrize("use_sha", [True, False], ids=["evalsha", "eval"])
def test_script_command_forms(use_sha: bool) -> None:
    """An idempotent event packs as EVALSHA <sha> or as EVAL <script> with the same arguments."""
    from bus import EventBus

    prepared = EventBus().prepare("TICKET_CREATED", ticket_created(), idempotency_key="k")
    ((name, body, *_),) = parse_commands(prepared.packed(use_sha=use_sha))
    assert name == (b"EVALSHA" if use_sha else b"EVAL")
    assert (len(body) == 40) == use_sha
