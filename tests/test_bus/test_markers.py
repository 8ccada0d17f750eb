"""Processed markers: the batched lookup over a set and its rotated one, and the rotating add."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from bus import Keys
from bus.consume._markers import Markers
from bus.wire import round_trip


def _members(n: int) -> list[bytes]:
    return [f"g|global|{uuid.uuid4()}".encode() for _ in range(n)]


async def test_lookup_finds_members_of_a_set_and_of_its_rotated_one(backend: aioredis.Redis, test_prefix: str) -> None:
    """Members in the current set, the rotated one or both are found once each; absent ones are not."""
    markers = Markers(Keys(test_prefix), "g", 60)
    tenant = "t1"
    key = markers.events_key(tenant)
    members = _members(9)
    await backend.sadd(key, *members[0:3], members[6])
    await backend.sadd(key + ":prev", *members[3:6], members[6])
    check = await markers.lookup(backend, {tenant: members})
    assert check.events == set(members[0:7])
    assert check.handlers == set()


async def test_lookup_of_a_large_batch_spans_the_script_chunks(backend: aioredis.Redis, test_prefix: str) -> None:
    """A lookup of more members than one SMISMEMBER call takes (4,000) finds those past the first chunk."""
    markers = Markers(Keys(test_prefix), "g", 60)
    members = _members(9_001)
    present = members[3_999:4_001] + members[-1:]
    await backend.sadd(markers.handlers_key("t2") + ":prev", *present)
    check = await markers.lookup(backend, {}, {"t2": members})
    assert check.handlers == set(present)
    assert check.events == set()


async def test_lookup_of_tenants_without_sets_finds_nothing(backend: aioredis.Redis, test_prefix: str) -> None:
    """Tenants whose sets do not exist: one round trip, nothing found (and no key is created)."""
    markers = Markers(Keys(test_prefix), "g", 60)
    check = await markers.lookup(backend, {"t3": _members(5), "t4": _members(2)}, {"t3": _members(1)})
    assert check.events == set() and check.handlers == set()
    assert await backend.keys(f"{test_prefix}*") == []


async def test_a_marker_added_is_found_by_the_lookup(backend: aioredis.Redis, test_prefix: str) -> None:
    """What the add script writes, the lookup script reads (with its TTL set)."""
    markers = Markers(Keys(test_prefix), "g", 60)
    key = markers.events_key("t5")
    members = _members(3)
    await round_trip(backend, markers.add_command(key, members[:2]), 1, 5.0)
    check = await markers.lookup(backend, {"t5": members})
    assert check.events == set(members[:2])
    assert 0 < await backend.ttl(key) <= 60
