"""Fixtures of the interop tests: the double's own connection, valid payloads, and cleanup of the
reference's keys (unprefixed marker sets, groups and entries on the shared workflow stream)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from test_schemas._examples import ROWS_BY_TYPE, example, shapes

from schemas import REGISTRY, EventValidationError
from tests.conftest import REAL_REDIS_URL

from .reference_double import WORKFLOW_STREAM, reference_url


def valid_payload(event_type: str, tenant: str) -> dict[str, Any]:
    """A payload of ``event_type`` that the catalog accepts, for ``tenant`` (a uuid suits every shape).

    The first shape of the catalog facts that validates (required fields, then all fields).
    """
    for shape in shapes(ROWS_BY_TYPE[event_type]):
        for full in (False, True):
            payload = example(shape.fields, full=full)
            payload["tenantId"] = tenant
            try:
                REGISTRY.validate(event_type, payload)
            except EventValidationError:
                continue
            return payload
    raise AssertionError(f"no valid example payload for {event_type}")


@pytest.fixture
async def reference_client(real_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """The double's connection: ``redis://HOST:PORT`` with no database number (db 0), like the reference's.

    Our side must then be on db 0 as well, or the two would not meet.
    """
    assert real_client.connection_pool.connection_kwargs.get("db", 0) == 0, "interop needs db 0"
    parts = urlsplit(REAL_REDIS_URL)
    client = aioredis.Redis.from_url(reference_url(parts.hostname or "127.0.0.1", parts.port or 6379))
    yield client
    await client.aclose()


class ReferenceKeys:
    """Hands out random tenants and workflow groups; removes what the test left under the reference's names."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.tenants: list[str] = []
        self.groups: list[str] = []

    def tenant(self) -> str:
        """A fresh tenant id (a uuid: legacy shapes need one); its marker sets are deleted afterwards."""
        tenant = str(uuid.uuid4())
        self.tenants.append(tenant)
        return tenant

    async def workflow_group(self) -> str:
        """A group of the test's own on the shared workflow stream, created at ``$``.

        Not ``workflow-runtime-v2``: a reference on this Redis (or another test) may own that
        group, and a group created at ``0`` would replay the stream's history. At ``$`` the group
        sees only entries added while the test runs; it is destroyed afterwards.
        """
        group = f"interop-{uuid.uuid4().hex[:12]}"
        await self.client.xgroup_create(WORKFLOW_STREAM, group, id="$", mkstream=True)
        self.groups.append(group)
        return group

    async def cleanup(self, since: bytes) -> None:
        """Delete the tenants' marker sets, the test's workflow groups and its workflow entries."""
        for tenant in self.tenants:
            await self.client.delete(f"processed_events:{tenant}", f"processed_event_handlers:{tenant}")
        for group in self.groups:
            await self.client.xgroup_destroy(WORKFLOW_STREAM, group)
        if self.tenants:
            wanted = {t.encode() for t in self.tenants}
            rows: Any = await self.client.xrange(WORKFLOW_STREAM, min=f"({since.decode()}")
            ours = [entry_id for entry_id, fields in rows if fields.get(b"tenant") in wanted]
            if ours:
                await self.client.xdel(WORKFLOW_STREAM, *ours)


@pytest.fixture
async def reference_keys(real_client: aioredis.Redis) -> AsyncIterator[ReferenceKeys]:
    """Tenants and workflow groups of the test, cleaned up afterwards (the keys are not prefixed)."""
    last: Any = await real_client.xrevrange(WORKFLOW_STREAM, count=1)
    since: bytes = last[0][0] if last else b"0-0"
    keys = ReferenceKeys(real_client)
    try:
        yield keys
    finally:
        await keys.cleanup(since)
