"""Publish under faults: a lost reply never becomes a silent duplicate; only unsent work is retried."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rex

import bus.publish._writer as publish_module
import bus.wire._roundtrip as roundtrip_module
from bus import BackendUnavailableError, BusSettings, PublishOutcomeUnknownError, create_client

from ._support import SendSpy, entries, open_bus, ticket_created

EVENT_ID = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


class Proxy:
    """A TCP proxy in front of Redis that can drop the server's replies or refuse connections."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.drop_replies = False
        self.refuse = 0
        self.accepted = 0
        self.dropped = 0

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started()
        await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        async with client:
            if self.refuse:
                self.refuse -= 1
                return  # close before a single byte is relayed
            server = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
            async with server, anyio.create_task_group() as tg:

                async def up() -> None:
                    async for chunk in client:
                        await server.send(chunk)
                    tg.cancel_scope.cancel()

                async def down() -> None:
                    async for chunk in server:
                        if self.drop_replies:
                            self.dropped += 1
                            break  # the server ran the command; the client never hears back
                        await client.send(chunk)
                    tg.cancel_scope.cancel()

                tg.start_soon(up)
                tg.start_soon(down)


@asynccontextmanager
async def proxied_client(upstream_port: int = 6379) -> AsyncIterator[tuple[Proxy, aioredis.Redis]]:
    """A proxy to the real Redis and a bus-style client (command retries off) connected through it."""
    proxy = Proxy(upstream_port)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(5):
            await tg.start(proxy.serve)
        client = create_client(BusSettings(host="127.0.0.1", port=proxy.port, socket_timeout_s=5))
        try:
            yield proxy, client
        finally:
            with anyio.fail_after(5):
                await client.aclose()
            tg.cancel_scope.cancel()


async def test_lost_reply_raises_outcome_unknown_and_writes_once(real_client: aioredis.Redis, test_prefix: str) -> None:
    """A reply dropped after Redis ran the XADD raises PublishOutcomeUnknownError with the id; nothing retries it."""
    async with proxied_client() as (proxy, client), open_bus(client, test_prefix) as bus:
        stream = bus.keys.stream("internal-notifications", "TICKET_CREATED")
        proxy.drop_replies = True
        with anyio.fail_after(10):
            with pytest.raises(PublishOutcomeUnknownError) as info:
                await bus.publish(
                    "TICKET_CREATED", ticket_created(), channel="internal-notifications", event_id=EVENT_ID
                )
            assert proxy.dropped >= 1
            stored = await entries(real_client, stream)
        assert info.value.event_ids == (EVENT_ID,)
        assert "same event_id" in str(info.value)
        assert len(stored) == 1  # written exactly once: the client did not retry on its own
        # The documented recovery: publish again with the same event id (consumers dedupe on it).
        proxy.drop_replies = False
        with anyio.fail_after(10):
            await bus.publish("TICKET_CREATED", ticket_created(), channel="internal-notifications", event_id=EVENT_ID)
            ids = {e[b"event"][7:43] for e in await entries(real_client, stream)}
        assert ids == {EVENT_ID.encode()}


async def test_lost_reply_of_a_transaction_then_idempotent_retry(real_client: aioredis.Redis, test_prefix: str) -> None:
    """With an idempotency key, retrying after a lost MULTI/EXEC reply writes nothing more and returns the first id."""
    async with proxied_client() as (proxy, client), open_bus(client, test_prefix) as bus:
        stream = bus.keys.stream("global", "TICKET_CREATED")
        proxy.drop_replies = True
        with anyio.fail_after(10), pytest.raises(PublishOutcomeUnknownError) as info:
            await bus.publish("TICKET_CREATED", ticket_created(), idempotency_key="order-7", event_id=EVENT_ID)
        proxy.drop_replies = False
        with anyio.fail_after(10):
            again = await bus.publish("TICKET_CREATED", ticket_created(), idempotency_key="order-7")
            stored = await entries(real_client, stream)
    assert info.value.event_ids == (EVENT_ID,)
    assert again.duplicate and again.event_id == EVENT_ID and again.entries == {}
    assert len(stored) == 1


async def test_connect_failure_is_retried(real_client: aioredis.Redis, test_prefix: str) -> None:
    """A connection refused before anything was sent is retried (tenacity): the event is written once."""
    async with proxied_client() as (proxy, client), open_bus(client, test_prefix) as bus:
        proxy.refuse = 1
        before = proxy.accepted
        with anyio.fail_after(10):
            await client.connection_pool.disconnect()  # the next publish must connect anew
            result = await bus.publish("TICKET_CREATED", ticket_created(), channel="internal-notifications")
            stored = await entries(real_client, bus.keys.stream("internal-notifications", "TICKET_CREATED"))
    assert proxy.accepted - before == 2
    assert [e[b"event"][7:43].decode() for e in stored] == [result.event_id]


async def test_lost_reply_on_fakeredis(
    fake_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dying while reading (after the send) raises OutcomeUnknown with every event id, once."""

    async def dropped(*args: Any, **kwargs: Any) -> list[Any]:
        raise rex.ConnectionError("Connection reset by peer")

    async with open_bus(fake_client, test_prefix) as bus:
        monkeypatch.setattr(roundtrip_module, "read_replies", dropped)  # the one-shot round trip
        spy = SendSpy(fake_client, monkeypatch)
        prepared = [bus.prepare("TICKET_CREATED", ticket_created()) for _ in range(3)]
        with anyio.fail_after(5), pytest.raises(PublishOutcomeUnknownError) as info:
            await bus.write(prepared)
        sent = list(spy.sends)
        monkeypatch.undo()
        with anyio.fail_after(5):
            stored = await entries(fake_client, bus.keys.stream("global", "TICKET_CREATED"))
    assert info.value.event_ids == tuple(p.event_id for p in prepared)
    assert isinstance(info.value.__cause__, rex.ConnectionError)
    assert len(sent) == 1 and len(stored) == 3


async def test_connect_retries_then_gives_up_without_sending(
    fake_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connect failures are retried a bounded number of times, then BackendUnavailableError; nothing was sent."""
    async with open_bus(fake_client, test_prefix) as bus:
        attempts = 0

        async def refuse(*args: Any, **kwargs: Any) -> Any:
            nonlocal attempts
            attempts += 1
            raise rex.ConnectionError("Connection refused")

        monkeypatch.setattr(fake_client.connection_pool, "get_connection", refuse)
        with anyio.fail_after(5), pytest.raises(BackendUnavailableError, match="connect for publish"):
            await bus.publish("TICKET_CREATED", ticket_created())
        monkeypatch.undo()
        assert attempts == 3
        assert await fake_client.keys(f"{test_prefix}*") == []


async def test_one_connect_failure_then_success(
    fake_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single connect failure is retried and the event is written exactly once."""
    async with open_bus(fake_client, test_prefix) as bus:
        pool = fake_client.connection_pool
        original = pool.get_connection
        failures = [rex.ConnectionError("Connection refused")]

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if failures:
                raise failures.pop()
            return await original(*args, **kwargs)  # type: ignore[no-untyped-call]

        monkeypatch.setattr(pool, "get_connection", flaky)
        with anyio.fail_after(5):
            await bus.publish("TICKET_CREATED", ticket_created())
            assert len(await entries(fake_client, bus.keys.stream("global", "TICKET_CREATED"))) == 1


async def test_noscript_falls_back_to_eval_without_rewriting_others(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After SCRIPT FLUSH, NOSCRIPT is answered with EVAL of that script only; plain entries are not rewritten."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            await bus.publish("TICKET_CREATED", ticket_created(), idempotency_key="a")  # loads the script
            await backend.script_flush()
            spy = SendSpy(backend, monkeypatch)
            plain = bus.prepare("TICKET_CREATED", ticket_created(), channel="internal-notifications")
            keyed = bus.prepare("TICKET_CREATED", ticket_created(), idempotency_key="b")
            results = await bus.write([plain, keyed])
            stored = await entries(backend, bus.keys.stream("internal-notifications", "TICKET_CREATED"))
    assert [c[0] for c in spy.commands[0]] == [b"MULTI", b"XADD", b"EVALSHA", b"EXEC"]
    assert spy.names(1) == [b"EVAL"]  # only the script is sent again
    assert len(stored) == 1 and not results[1].duplicate and len(results[1].entries) == 2


def test_module_reads_replies_through_a_patchable_name() -> None:
    """The publisher reads replies through ``bus.publish._writer.read_replies`` (the seam the fault tests patch)."""
    assert callable(publish_module.read_replies)  # type: ignore[attr-defined]


async def test_concurrent_connect_failures_retry_independently(
    fake_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten publishes whose first connect fails at the same time each retry on their own and write once."""
    async with open_bus(fake_client, test_prefix) as bus:
        pool = fake_client.connection_pool
        original = pool.get_connection
        calls = 0

        async def first_ten_refused(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls <= 10:
                await anyio.lowlevel.checkpoint()  # let all ten fail together
                raise rex.ConnectionError("Connection refused")
            return await original(*args, **kwargs)  # type: ignore[no-untyped-call]

        monkeypatch.setattr(pool, "get_connection", first_ten_refused)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(bus.publish, "TICKET_CREATED", ticket_created())
            monkeypatch.undo()
            stored = await entries(fake_client, bus.keys.stream("global", "TICKET_CREATED"))
    assert len(stored) == 10
