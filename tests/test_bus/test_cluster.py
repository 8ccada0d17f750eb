"""Redis Cluster mode on a private 3-master cluster started by the test session: publish (one
MULTI/EXEC per slot, in the reference's order), consume (readers per node), a slot migration
while running, and a publish stopped between slots (marker ``fault``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from bus import WORKFLOW_STREAM, BusSettings, EventBus
from bus.routing import fanout_channels
from bus.wire import is_cluster, slot_of

from ._cluster import ClusterServers
from ._support import ticket_created

pytestmark = pytest.mark.fault


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterServers]:
    """A 3-master cluster on free ports for the whole session; only its own servers are stopped."""
    servers = ClusterServers(Path(tmp_path_factory.mktemp("cluster")))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def cbus(cluster: ClusterServers, prefix: str) -> AsyncIterator[EventBus]:
    """A bus on the cluster with a unique key prefix."""
    settings = BusSettings.from_url(cluster.url, prefix=prefix, block_ms=200, read_timeout_s=5)
    async with EventBus(settings) as bus:
        yield bus


async def test_cluster_url_makes_a_cluster_client(cbus: EventBus) -> None:
    """A redis+cluster:// URL selects redis-py's asyncio cluster client."""
    assert is_cluster(cbus.client)


async def test_fanout_publish_writes_every_copy_across_slots(cbus: EventBus, prefix: str) -> None:
    """A fan-out publish writes the workflow entry and every channel copy, though they live in different slots."""
    payload = ticket_created()
    with anyio.fail_after(10):
        result = await cbus.publish("TICKET_CREATED", payload, channel=None)
    streams = [WORKFLOW_STREAM, *(cbus.keys.stream(ch, "TICKET_CREATED") for ch in fanout_channels("TICKET_CREATED"))]
    assert list(result.entries) == streams
    assert len({slot_of(s) for s in streams}) > 1
    client: Any = cbus.client
    for stream, entry_id in result.entries.items():
        found = await client.xrange(stream, entry_id, entry_id)
        assert len(found) == 1, stream
