"""Shared fixtures: a fresh fakeredis server per test, the real Redis with a per-test prefix,
and private redis-server processes for tests that stop or reconfigure Redis."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio as aioredis

REAL_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKFLOW_STREAM = "workflow:events:global"  # the reference never prefixes it


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    """A fresh fakeredis server: nothing is shared between tests."""
    return fakeredis.FakeServer()


@pytest.fixture
async def fake_client(fake_server: fakeredis.FakeServer) -> AsyncIterator[aioredis.Redis]:
    """An async client on the test's own fakeredis server."""
    client = fakeredis.FakeAsyncRedis(server=fake_server)
    yield client
    await client.aclose()


@pytest.fixture
def test_prefix() -> str:
    """A key prefix unique to the test, so tests on the shared Redis never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:10]}:"


@asynccontextmanager
async def _real_redis(test_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REAL_REDIS_URL)
    try:
        await client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - CI starts Redis
        pytest.fail(f"integration tests need Redis at {REAL_REDIS_URL}: {exc}")
    last: Any = await client.xrevrange(WORKFLOW_STREAM, count=1)
    started: bytes = last[0][0] if last else b"0-0"
    try:
        yield client
    finally:
        await _drop_workflow_entries(client, test_prefix, started)
        async for key in client.scan_iter(match=f"{test_prefix}*", count=1000):
            await client.delete(key)
        await client.aclose()


async def _drop_workflow_entries(client: aioredis.Redis, test_prefix: str, since: bytes) -> None:
    """Delete the test's entries from the shared, never-prefixed workflow stream.

    They are the workflow entries added since the test started whose event_id appears in an
    envelope of one of the test's own (prefixed) streams.
    """
    ids: set[bytes] = set()
    async for key in client.scan_iter(match=f"{test_prefix}*", count=1000, _type="stream"):
        rows: Any = await client.xrange(key)
        for _, fields in rows:
            raw = fields.get(b"event")
            if raw:
                with contextlib.suppress(ValueError):
                    ids.add(str(json.loads(raw).get("id", "")).encode())
    if not ids:
        return
    added: Any = await client.xrange(WORKFLOW_STREAM, min=f"({since.decode()}")
    stale = [eid for eid, fields in added if fields.get(b"event_id") in ids]
    if stale:
        await client.xdel(WORKFLOW_STREAM, *stale)


@pytest.fixture
async def real_client(test_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the real Redis; keys under the test prefix are deleted afterwards."""
    async with _real_redis(test_prefix) as client:
        yield client


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
async def backend(request: pytest.FixtureRequest, test_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """The same test on fakeredis and on the real Redis (keys under ``test_prefix``)."""
    if request.param == "fake":
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        yield client
        await client.aclose()
    else:
        # Not request.getfixturevalue("real_client"): an async fixture cannot be set up from
        # inside another async fixture's running loop.
        async with _real_redis(test_prefix) as client:
            yield client


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A private redis-server on a free port with its own directory; never the shared 6379."""

    def __init__(self, directory: Path, *, appendonly: bool = True, extra: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:  # pragma: no cover - .ci/run installs it
            pytest.fail("redis-server is not installed")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.dir / "redis.log"),
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30  # a wait on the server answering: generous for a loaded machine
        while time.monotonic() < deadline:
            try:
                r = redis.Redis(port=self.port, socket_timeout=0.5)
                r.ping()
                r.close()
                return
            except redis.AuthenticationError:
                return
            except redis.ResponseError as exc:
                if "NOAUTH" in str(exc):
                    return
                time.sleep(0.05)
            except (redis.ConnectionError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[Any]:
    """Factory of private redis-servers, all killed at the end of the test."""
    started: list[RedisProcess] = []

    def make(**kwargs: Any) -> RedisProcess:
        d = tmp_path / f"redis-{len(started)}"
        d.mkdir()
        proc = RedisProcess(d, **kwargs)
        proc.start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()
