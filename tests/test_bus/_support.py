"""Helpers of the publish tests: a bus on the test's backend, entry readers, a send spy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import WORKFLOW_STREAM, BusSettings, EventBus

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
UUID = "5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f"
USER = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
TS = "2026-01-23T10:11:12.345Z"


def golden_bytes(name: str) -> bytes:
    """A golden file's content without the trailing newline."""
    return (GOLDEN / name).read_bytes().rstrip(b"\n")


def golden_fields(name: str) -> list[tuple[bytes, bytes]]:
    """A golden workflow entry as ordered (field, value) byte pairs."""
    return [(k.encode(), v.encode()) for k, v in json.loads((GOLDEN / name).read_text()).items()]


def ticket_created(tenant: str = "tenant-1", **overrides: Any) -> dict[str, Any]:
    """A valid TICKET_CREATED payload (domain shape); keyword arguments replace keys."""
    payload: dict[str, Any] = {
        "tenantId": tenant,
        "occurredAt": TS,
        "ticketId": UUID,
        "actorType": "USER",
        "actorUserId": USER,
    }
    payload.update(overrides)
    return payload


@asynccontextmanager
async def open_bus(client: aioredis.Redis, prefix: str, **settings: Any) -> AsyncIterator[EventBus]:
    """An EventBus on ``client`` with keys under ``prefix`` (zero retry backoff for tests)."""
    values: dict[str, Any] = {"prefix": prefix, "retry_backoff_s": 0.0, "retry_backoff_max_s": 0.0}
    values.update(settings)
    bus = EventBus(BusSettings(**values), client=client)
    with anyio.fail_after(10):
        await bus.connect()
    try:
        yield bus
    finally:
        with anyio.fail_after(10):
            await bus.aclose()


async def xrange(client: aioredis.Redis, stream: str, start: str = "-", end: str = "+") -> list[tuple[bytes, Any]]:
    """XRANGE with plain types: ``[(entry_id, {field: value})]``."""
    rows: Any = await client.xrange(stream, start, end)
    return [(eid, fields) for eid, fields in rows]


async def entries(client: aioredis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    """All entries of a stream, fields only."""
    return [fields for _, fields in await xrange(client, stream)]


async def workflow_entries(client: aioredis.Redis, *event_ids: str) -> list[list[tuple[bytes, bytes]]]:
    """The workflow stream entries of these event ids, as ordered field pairs (the stream is shared)."""
    wanted = {e.encode() for e in event_ids}
    return [list(f.items()) for _, f in await xrange(client, WORKFLOW_STREAM) if f.get(b"event_id") in wanted]


async def prefixed_keys(client: aioredis.Redis, prefix: str) -> list[bytes]:
    """Every key under the test prefix."""
    return sorted([k async for k in client.scan_iter(match=f"{prefix}*", count=1000)])


def parse_commands(data: bytes) -> list[list[bytes]]:
    """Split packed RESP bytes back into commands (arrays of bulk strings)."""
    out: list[list[bytes]] = []
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 1] == b"*", data[pos : pos + 20]
        end = data.index(b"\r\n", pos)
        count = int(data[pos + 1 : end])
        pos = end + 2
        args: list[bytes] = []
        for _ in range(count):
            end = data.index(b"\r\n", pos)
            size = int(data[pos + 1 : end])
            args.append(data[end + 2 : end + 2 + size])
            pos = end + 2 + size + 2
        out.append(args)
    return out


class SendSpy:
    """Records every ``send_packed_command`` of the client's pool connections (one per round trip)."""

    def __init__(self, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sends: list[bytes] = []
        pool = client.connection_pool
        original = pool.get_connection

        async def get_connection(*args: Any, **kwargs: Any) -> Any:
            conn = await original(*args, **kwargs)  # type: ignore[no-untyped-call]
            if not getattr(conn, "_spied", False):
                send = conn.send_packed_command

                async def spied(command: Any, check_health: bool = True) -> None:
                    self.sends.append(command if isinstance(command, bytes) else b"".join(command))
                    await send(command, check_health)

                conn.send_packed_command = spied
                conn._spied = True
            return conn

        monkeypatch.setattr(pool, "get_connection", get_connection)

    @property
    def commands(self) -> list[list[list[bytes]]]:
        """The commands of each send."""
        return [parse_commands(s) for s in self.sends]

    def names(self, index: int = -1) -> list[bytes]:
        """Command names of one send."""
        return [c[0] for c in self.commands[index]]
