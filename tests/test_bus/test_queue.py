"""The hand-off queue from the dispatcher to the workers: order, bounds, wake-ups, close."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from bus.consume._entry import Entry
from bus.consume._queue import EntryQueue


def _never(entries: list[Entry]) -> None:
    raise AssertionError(f"{len(entries)} entries were not queued")


def _entries(n: int, start: int = 0) -> list[Entry]:
    return [Entry("s", b"%d-0" % i, None, 1) for i in range(start, start + n)]


async def test_entries_come_out_in_the_order_they_were_put() -> None:
    """Two batches put one after the other are taken in order, one entry per get."""
    queue = EntryQueue(100)
    first, second = _entries(3), _entries(2, start=3)
    await queue.put(first, _never)
    await queue.put(second, _never)
    taken = [queue.get_nowait() for _ in range(5)]
    assert taken == first + second
    with pytest.raises(anyio.WouldBlock):
        queue.get_nowait()


async def test_put_waits_for_room_and_goes_on_as_workers_take() -> None:
    """A batch larger than the capacity is queued in parts: put returns only once the last part is in."""
    queue = EntryQueue(4)
    batch = _entries(10)
    taken: list[Entry] = []
    async with anyio.create_task_group() as tg:

        async def taker() -> None:
            while len(taken) < 10:
                taken.append(await queue.get())
                assert len(queue) <= 4

        tg.start_soon(taker)
        await queue.put(batch, _never)
    assert taken == batch


async def test_a_put_waiting_for_room_goes_on_once_take_empties_the_queue() -> None:
    """Entries taken with ``take`` (no wake-up per entry) let a waiting put go on as soon as a
    worker finds the queue empty and calls get."""
    queue = EntryQueue(3)
    batch = _entries(7)
    taken: list[Entry] = []
    async with anyio.create_task_group() as tg:

        async def worker() -> None:
            while len(taken) < 7:
                try:
                    taken.append(queue.take())
                except IndexError:
                    taken.append(await queue.get())
                assert len(queue) <= 3

        tg.start_soon(worker)
        with anyio.fail_after(5):
            await queue.put(batch, _never)
    assert taken == batch


async def test_idle_workers_are_woken_one_per_entry() -> None:
    """Three idle workers and two entries: two workers get one each, the third keeps waiting."""
    queue = EntryQueue(10)
    got: list[Entry] = []
    async with anyio.create_task_group() as tg:

        async def worker() -> None:
            got.append(await queue.get())

        for _ in range(3):
            tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        await queue.put(_entries(2), _never)
        await anyio.wait_all_tasks_blocked()
        assert len(got) == 2
        await queue.put(_entries(1, start=2), _never)
        await anyio.wait_all_tasks_blocked()
        assert len(got) == 3
    assert sorted(e.entry_id for e in got) == [b"0-0", b"1-0", b"2-0"]


async def test_close_lets_workers_take_what_is_left_then_ends_them() -> None:
    """After close, queued entries are still taken; then every get, waiting or not, ends."""
    queue = EntryQueue(10)
    idle = asyncio.create_task(queue.get())
    await anyio.wait_all_tasks_blocked()
    queue.close()
    with pytest.raises(anyio.EndOfStream):
        await idle
    left = EntryQueue(10)
    await left.put(_entries(2), _never)
    left.close()
    assert left.get_nowait().entry_id == b"0-0" and (await left.get()).entry_id == b"1-0"
    with pytest.raises(anyio.EndOfStream):
        left.get_nowait()
    with pytest.raises(anyio.EndOfStream):
        await left.get()
    refused: list[Entry] = []
    late = _entries(1)
    await left.put(late, refused.extend)
    assert refused == late  # nothing is queued once closed: the caller gets them back


async def test_a_worker_cancelled_after_it_was_woken_passes_the_wake_up_on() -> None:
    """A worker cancelled after a put woke it (before it ran) hands that wake-up to the next idle worker."""
    queue = EntryQueue(10)
    first = asyncio.create_task(queue.get())
    await anyio.wait_all_tasks_blocked()
    second = asyncio.create_task(queue.get())
    await anyio.wait_all_tasks_blocked()
    await queue.put(_entries(1), _never)  # wakes the first waiter ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    with anyio.fail_after(5):
        assert (await second).entry_id == b"0-0"


async def test_a_worker_cancelled_while_idle_is_no_longer_woken() -> None:
    """A worker cancelled while it waits leaves the idle list: the next entry wakes a live worker."""
    queue = EntryQueue(10)
    gone = asyncio.create_task(queue.get())
    await anyio.wait_all_tasks_blocked()
    live = asyncio.create_task(queue.get())
    await anyio.wait_all_tasks_blocked()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    await queue.put(_entries(1), _never)
    with anyio.fail_after(5):
        assert (await live).entry_id == b"0-0"


async def test_a_put_cancelled_while_waiting_for_room_returns_only_the_unqueued_entries() -> None:
    """Cancelled while the queue is full, put hands back exactly the entries it did not queue; the
    queued ones stay for the workers."""
    queue = EntryQueue(3)
    batch = _entries(5)
    unqueued: list[Entry] = []
    scope = anyio.CancelScope()

    async def putter() -> None:
        with scope:
            await queue.put(batch, unqueued.extend)

    async with anyio.create_task_group() as tg:
        tg.start_soon(putter)
        await anyio.wait_all_tasks_blocked()  # the queue is full: put waits for room
        assert unqueued == []
        scope.cancel()
    assert unqueued == batch[3:]
    assert [queue.get_nowait() for _ in range(3)] == batch[:3]
