"""The redis-py internals bus.wire relies on: present and shaped as it expects, or a loud failure."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from bus import BusSettings, create_client
from bus.wire import _hiredis as hiredis_path
from bus.wire import check_internals


def _fail(problems: list[str]) -> str:
    return (
        f"redis-py {redis.__version__} changed what bus/wire/_hiredis.py relies on: "
        + "; ".join(problems)
        + ". Adapt bus/wire/_hiredis.py (or pin redis-py below this version in pyproject.toml)."
    )


def test_module_level_internals_are_present() -> None:
    """_AsyncHiredisParser, NOT_ENOUGH_DATA and the connection methods wire uses exist."""
    problems = check_internals()
    assert not problems, _fail(problems)


@pytest.mark.integration
@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
async def test_connection_internals_have_the_expected_shape(protocol: int) -> None:
    """A connected connection has the hiredis parser (with _reader.gets) and an asyncio StreamWriter."""
    client = aioredis.Redis(host="127.0.0.1", port=6379, protocol=protocol)
    try:
        conn = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            problems = check_internals(conn)
        finally:
            await client.connection_pool.release(conn)
    finally:
        await client.aclose()
    assert not problems, _fail(problems)


@pytest.mark.integration
async def test_the_bus_client_factory_gets_the_fast_paths() -> None:
    """The bus's own client (its protocol and options) is read and written through the internals."""
    client = create_client(BusSettings(host="127.0.0.1"))
    try:
        conn = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            problems = check_internals(conn)
        finally:
            await client.connection_pool.release(conn)
    finally:
        await client.aclose()
    assert not problems, _fail(problems)


def test_a_missing_internal_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check names what vanished (here: the hiredis parser class), so the failure says what changed."""
    monkeypatch.setattr(hiredis_path, "_AsyncHiredisParser", None)
    problems = check_internals()
    assert any("_AsyncHiredisParser" in p for p in problems)


@pytest.mark.integration
async def test_a_changed_writer_is_reported() -> None:
    """A connection whose _writer is not an asyncio StreamWriter is reported by name."""
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        conn: Any = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        writer = conn._writer
        try:
            conn._writer = object()
            problems = check_internals(conn)
        finally:
            conn._writer = writer
            await client.connection_pool.release(conn)
    finally:
        await client.aclose()
    assert any("_writer" in p for p in problems)
