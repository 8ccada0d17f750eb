"""bus/consume/_speedups.c: its ``start`` behaves exactly as the Python version in bus/consume/_workers.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bus.consume import _native, _workers
from bus.consume._workers import DONE, _Resume

STARTS: list[Any] = [pytest.param(_workers._start, id="python")]
if _native.start is not None:
    STARTS.append(pytest.param(_native.start, id="c"))


def test_the_c_module_is_built_in_this_environment() -> None:
    """The package under test was built with its C helper (CI builds it: the comparison below runs)."""
    assert _native.start is not None


@pytest.mark.parametrize("start", STARTS)
def test_a_coroutine_that_finishes_at_once_is_done(start: Callable[..., Any]) -> None:
    """A coroutine that returns without suspending gives ``done``; it ran exactly once."""
    calls: list[int] = []

    async def handler(value: int) -> int:
        calls.append(value)
        return value

    assert start(handler, 7, DONE, _Resume) is DONE
    assert calls == [7]


@pytest.mark.parametrize("start", STARTS)
async def test_a_coroutine_that_suspends_is_resumed_by_awaiting_what_start_returned(start: Callable[..., Any]) -> None:
    """A suspended coroutine comes back as ``resume(coro, yielded)``; awaiting it runs the rest."""
    steps: list[str] = []

    async def handler(value: int) -> None:
        steps.append("before")
        await asyncio.sleep(0)
        steps.append(f"after {value}")

    resumed = start(handler, 3, DONE, _Resume)
    assert isinstance(resumed, _Resume) and steps == ["before"]
    await resumed
    assert steps == ["before", "after 3"]


@pytest.mark.parametrize("start", STARTS)
def test_what_is_no_coroutine_comes_back_as_it_is(start: Callable[..., Any]) -> None:
    """A plain function's result (a future, or anything else) is returned untouched, never ``done``."""
    marker = object()
    assert start(lambda value: marker, 1, DONE, _Resume) is marker
    assert start(lambda value: None, 1, DONE, _Resume) is None


@pytest.mark.parametrize("start", STARTS)
def test_errors_before_the_first_await_are_raised(start: Callable[..., Any]) -> None:
    """A coroutine's error before its first await, a plain function's error and its StopIteration
    are raised; a coroutine's StopIteration becomes RuntimeError, as Python makes it."""

    async def fails(value: int) -> None:
        raise ValueError(f"bad {value}")

    async def stops(value: int) -> None:
        raise StopIteration

    def plain_stop(value: int) -> None:
        raise StopIteration

    with pytest.raises(ValueError, match="bad 2"):
        start(fails, 2, DONE, _Resume)
    with pytest.raises(RuntimeError, match="StopIteration"):
        start(stops, 2, DONE, _Resume)
    with pytest.raises(StopIteration):
        start(plain_stop, 2, DONE, _Resume)
    with pytest.raises(TypeError):
        start(lambda: None, 2, DONE, _Resume)  # fn's own call error


def test_start_checks_its_argument_count() -> None:
    """The C function refuses a call with the wrong number of arguments instead of reading past them."""
    if _native.start is None:
        pytest.fail("bus.consume._speedups is not built")
    with pytest.raises(TypeError, match="4 arguments"):
        _native.start(print, 1, DONE)  # type: ignore[call-arg]
