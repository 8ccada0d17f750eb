"""Auto-batching: concurrent publishers share round trips; each gets its own outcome, at its own time."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rex

import bus.wire._roundtrip as roundtrip_module
from bus import PartialWriteError, PayloadValidationError, PublishOutcomeUnknownError, PublishResult
from bus._batch import AutoBatcher

from ._support import SendSpy, entries, open_bus, ticket_created, xrange

NOTIFY = "internal-notifications"


async def test_64_concurrent_callers_share_few_round_trips(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 concurrent batched publishes take few round trips, and each await returns after its own entry exists."""
    seen_at_return: list[bool] = []
    results: list[PublishResult] = []
    async with open_bus(backend, test_prefix) as bus:
        spy = SendSpy(backend, monkeypatch)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        before = bus.publisher.round_trips

        async def caller(i: int) -> None:
            result = await bus.publish("TICKET_CREATED", ticket_created(n=i), batch=True)
            entry = result.entries[stream]
            # Checked through a separate client connection, right when this caller's await returned.
            seen_at_return.append(bool(await xrange(backend, stream, entry, entry)))
            results.append(result)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(64):
                    tg.start_soon(caller, i)
        trips = bus.publisher.round_trips - before
        xadd_sends = [s for s in spy.sends if b"XADD" in s]
        with anyio.fail_after(5):
            stored = await entries(backend, stream)
    assert trips <= 4 and len(xadd_sends) == trips
    assert len(results) == 64 and all(seen_at_return)
    assert len(stored) == 64 and len({r.event_id for r in results}) == 64


async def test_an_idle_bus_writes_a_lone_batched_publish_at_once(backend: aioredis.Redis, test_prefix: str) -> None:
    """A batched publish with nobody else around is one group and one round trip."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await bus.publish("TICKET_CREATED", ticket_created(), batch=True)
    assert bus.batcher.groups_written == 1 and len(result.entries) == 2


async def test_invalid_caller_does_not_fail_the_others(backend: aioredis.Redis, test_prefix: str) -> None:
    """An invalid event fails only its caller (before joining a group); the other 63 are written."""
    outcomes: dict[int, Any] = {}
    async with open_bus(backend, test_prefix) as bus:

        async def caller(i: int) -> None:
            payload = ticket_created(ticketId="bad") if i == 17 else ticket_created(n=i)
            try:
                outcomes[i] = await bus.publish("TICKET_CREATED", payload, batch=True)
            except PayloadValidationError as exc:
                outcomes[i] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(64):
                    tg.start_soon(caller, i)
            stored = await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))
    assert isinstance(outcomes.pop(17), PayloadValidationError)
    assert all(isinstance(o, PublishResult) for o in outcomes.values())
    assert len(stored) == 63


async def test_refused_write_fails_only_its_caller(backend: aioredis.Redis, test_prefix: str) -> None:
    """A caller whose XADD Redis refuses inside the shared EXEC gets the error; the others in the group succeed."""
    outcomes: dict[int, Any] = {}
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            await backend.set(bus.keys.stream("emailservice::v7", "TICKET_CREATED"), "not a stream")

        async def caller(i: int) -> None:
            channel = "emailservice::v7" if i == 5 else NOTIFY
            try:
                outcomes[i] = await bus.publish("TICKET_CREATED", ticket_created(), channel=channel, batch=True)
            except Exception as exc:
                outcomes[i] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(16):
                    tg.start_soon(caller, i)
            stored = await entries(backend, bus.keys.stream(NOTIFY, "TICKET_CREATED"))
    error = outcomes.pop(5)
    assert not isinstance(error, PartialWriteError) and "WRONGTYPE" in str(error)
    assert all(isinstance(o, PublishResult) for o in outcomes.values()) and len(stored) == 15
    assert bus.batcher.groups_written <= 2


async def test_lost_reply_gives_each_caller_its_own_ids(
    fake_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a group's reply is lost every caller gets PublishOutcomeUnknownError naming only its own events."""

    async def dropped(*args: Any, **kwargs: Any) -> list[Any]:
        raise rex.ConnectionError("Connection reset by peer")

    errors: dict[str, PublishOutcomeUnknownError] = {}
    async with open_bus(fake_client, test_prefix) as bus:
        monkeypatch.setattr(roundtrip_module, "read_replies", dropped)  # the one-shot round trip

        async def caller() -> None:
            prepared = bus.prepare("TICKET_CREATED", ticket_created())
            try:
                await bus.write([prepared], batch=True)
            except PublishOutcomeUnknownError as exc:
                errors[prepared.event_id] = exc

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(caller)
    assert len(errors) == 8 and bus.batcher.groups_written == 1
    assert all(exc.event_ids == (eid,) for eid, exc in errors.items())


async def test_aclose_waits_for_batched_writes(backend: aioredis.Redis, test_prefix: str) -> None:
    """Closing the bus while batched publishes are in flight lets them finish and be written."""
    results: list[PublishResult] = []
    async with open_bus(backend, test_prefix) as bus:
        stream = bus.keys.stream("global", "TICKET_CREATED")

        async def caller() -> None:
            results.append(await bus.publish("TICKET_CREATED", ticket_created(), batch=True))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(caller)
                await anyio.wait_all_tasks_blocked()
                await bus.aclose()
                assert bus.is_closed
    with anyio.fail_after(5):
        stored = await entries(backend, stream)
    assert len(results) == 10 and len(stored) == 10


async def test_cancelled_leader_still_writes_its_group(backend: aioredis.Redis, test_prefix: str) -> None:
    """Cancelling the caller that leads a group does not strand the others: their events are written."""
    results: list[PublishResult] = []
    async with open_bus(backend, test_prefix) as bus:
        stream = bus.keys.stream(NOTIFY, "TICKET_CREATED")

        async def follower() -> None:
            results.append(await bus.publish("TICKET_CREATED", ticket_created(), channel=NOTIFY, batch=True))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                with anyio.CancelScope() as leader_scope:
                    leader_scope.cancel()  # already cancelled when it starts waiting for its tick
                    tg.start_soon(follower)
                    tg.start_soon(follower)
                    await bus.publish("TICKET_CREATED", ticket_created(), channel=NOTIFY, batch=True)
            stored = await entries(backend, stream)
    assert len(results) == 2 and len(stored) == 3


async def test_a_full_group_is_written_at_once_by_the_caller_that_filled_it(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_batch 4, ten callers of one tick form groups of 4, 4 and 2; each returns after its own write.

    The full groups go out before the tick's later callers have even joined: the group of the
    last two is still open when the first group's MULTI/EXEC is sent.
    """
    outcomes: dict[int, PublishResult] = {}
    open_at_send: list[int] = []
    async with open_bus(backend, test_prefix) as bus:
        batcher = AutoBatcher(bus.publisher.write_outcomes, max_batch=4)
        write = bus.publisher.write_outcomes

        async def spied(prepared: Any) -> Any:
            open_at_send.append(len(batcher._open.items) if batcher._open is not None else 0)
            return await write(prepared)

        batcher._write = spied
        stream = bus.keys.stream(NOTIFY, "TICKET_CREATED")

        async def caller(i: int) -> None:
            prepared = bus.prepare("TICKET_CREATED", ticket_created(n=i), channel=NOTIFY)
            (outcomes[i],) = await batcher.submit([prepared])
            entry = outcomes[i].entries[stream]
            assert await xrange(backend, stream, entry, entry)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(caller, i)
            stored = await entries(backend, stream)
    assert batcher.groups_written == 3 and len(outcomes) == 10 and len(stored) == 10
    assert open_at_send[0] == 0  # the first full group went out before the others joined a new one


async def test_a_cancelled_follower_stops_waiting_and_its_event_is_written(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """A follower cancelled while its group is in flight stops waiting; the group (its event too) is written."""
    done: list[PublishResult] = []
    scopes: list[anyio.CancelScope] = []
    gate = anyio.Event()
    async with open_bus(backend, test_prefix) as bus:
        stream = bus.keys.stream(NOTIFY, "TICKET_CREATED")
        write = bus.publisher.write_outcomes

        async def gated(prepared: Any) -> Any:
            await gate.wait()  # the group stays in flight until the follower was cancelled
            return await write(prepared)

        bus.batcher._write = gated

        async def leader() -> None:
            done.append(await bus.publish("TICKET_CREATED", ticket_created(), channel=NOTIFY, batch=True))

        async def follower() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                done.append(await bus.publish("TICKET_CREATED", ticket_created(), channel=NOTIFY, batch=True))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(leader)
                tg.start_soon(follower)
                await anyio.wait_all_tasks_blocked()  # the group is in flight, the follower waits for it
                scopes[0].cancel()
                await anyio.wait_all_tasks_blocked()
                gate.set()
            stored = await entries(backend, stream)
    assert scopes[0].cancelled_caught
    assert len(done) == 1 and len(stored) == 2 and bus.batcher.groups_written == 1


async def test_a_cancelled_follower_does_not_wake_the_others(backend: aioredis.Redis, test_prefix: str) -> None:
    """Followers share one future: one cancelled (asyncio's own cancel) leaves the others waiting for their results."""
    gate = anyio.Event()
    async with open_bus(backend, test_prefix) as bus:
        stream = bus.keys.stream(NOTIFY, "TICKET_CREATED")
        write = bus.publisher.write_outcomes

        async def gated(prepared: Any) -> Any:
            await gate.wait()
            return await write(prepared)

        bus.batcher._write = gated

        def publish() -> asyncio.Task[PublishResult]:
            coro = bus.publish("TICKET_CREATED", ticket_created(), channel=NOTIFY, batch=True)
            return asyncio.ensure_future(coro)

        with anyio.fail_after(10):
            tasks = [publish() for _ in range(4)]  # a leader and three followers of one group
            await anyio.wait_all_tasks_blocked()
            tasks[1].cancel()
            await anyio.wait_all_tasks_blocked()  # the others woke (their future was cancelled) and wait again
            assert not any(t.done() for t in (tasks[0], tasks[2], tasks[3]))
            gate.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        stored = await entries(backend, stream)
    assert isinstance(results[1], asyncio.CancelledError)
    assert all(isinstance(r, PublishResult) for i, r in enumerate(results) if i != 1)
    assert len(stored) == 4 and bus.batcher.groups_written == 1


async def test_groups_beyond_max_in_flight_wait_for_a_slot(backend: aioredis.Redis, test_prefix: str) -> None:
    """With one write slot, full groups queue for it: never two writes at once, every caller written."""
    in_flight: list[int] = [0]
    peak: list[int] = [0]
    results: list[PublishResult] = []
    async with open_bus(backend, test_prefix) as bus:
        write = bus.publisher.write_outcomes

        async def counted(prepared: Any) -> Any:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            try:
                await anyio.sleep(0.01)
                return await write(prepared)
            finally:
                in_flight[0] -= 1

        batcher = AutoBatcher(counted, max_batch=2, max_in_flight=1)

        async def caller() -> None:
            results.extend(await batcher.submit([bus.prepare("TICKET_CREATED", ticket_created(), channel=NOTIFY)]))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(7):
                    tg.start_soon(caller)
            stored = await entries(backend, bus.keys.stream(NOTIFY, "TICKET_CREATED"))
    assert peak[0] == 1 and batcher.groups_written == 4 and len(results) == 7 and len(stored) == 7


async def test_one_callers_events_keep_their_order_across_pipelined_groups(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """With several groups in flight at once, each caller's consecutive submits are stored in the order it made them."""
    ids: dict[int, list[str]] = {c: [] for c in range(64)}
    async with open_bus(backend, test_prefix) as bus:
        batcher = AutoBatcher(bus.publisher.write_outcomes, max_batch=16)  # a tick's 64 callers: 4 groups in flight
        stream = bus.keys.stream(NOTIFY, "TICKET_CREATED")

        async def caller(c: int) -> None:
            for _ in range(6):
                (result,) = await batcher.submit([bus.prepare("TICKET_CREATED", ticket_created(), channel=NOTIFY)])
                ids[c].append(result.entries[stream])

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for c in range(64):
                    tg.start_soon(caller, c)
            stored = await xrange(backend, stream)
    position = {entry_id.decode(): n for n, (entry_id, _) in enumerate(stored)}
    assert batcher.groups_written >= 24 and len(position) == 64 * 6
    assert all(sorted(own, key=position.__getitem__) == own for own in ids.values())


async def _waves(bus: Any, batcher: AutoBatcher, callers: int, waves: int) -> None:
    """``waves`` times, ``callers`` tasks started in one tick each submit one event to ``batcher``."""

    async def caller(i: int) -> None:
        await batcher.submit([bus.prepare("TICKET_CREATED", ticket_created(n=i), channel=NOTIFY)])

    for _ in range(waves):
        async with anyio.create_task_group() as tg:
            for i in range(callers):
                tg.start_soon(caller, i)


@pytest.mark.parametrize("callers", [64, 201])
async def test_a_tick_of_many_callers_is_split_in_two_pipelined_groups(
    backend: aioredis.Redis, test_prefix: str, callers: int
) -> None:
    """Once a tick's fan-in is known, the next tick with nothing in flight is written as two halves,
    the second sent while the first is still in flight (never more than two groups for one tick)."""
    sizes: list[int] = []
    in_flight_at_send: list[int] = []
    in_flight = [0]
    async with open_bus(backend, test_prefix) as bus:
        write = bus.publisher.write_outcomes

        async def spied(prepared: Any) -> Any:
            sizes.append(len(prepared))
            in_flight_at_send.append(in_flight[0])
            in_flight[0] += 1
            try:
                return await write(prepared)
            finally:
                in_flight[0] -= 1

        batcher = AutoBatcher(spied)
        with anyio.fail_after(10):
            await _waves(bus, batcher, callers, 2)
            stored = await entries(backend, bus.keys.stream(NOTIFY, "TICKET_CREATED"))
    half = callers // 2
    assert sizes == [callers, half, callers - half] and in_flight_at_send == [0, 0, 1]
    assert len(stored) == 2 * callers


@pytest.mark.parametrize(("callers", "max_in_flight"), [(20, 8), (64, 1)])
async def test_no_split_for_a_small_fan_in_or_a_single_write_slot(
    backend: aioredis.Redis, test_prefix: str, callers: int, max_in_flight: int
) -> None:
    """A tick whose halves would be small, or a batcher with one write slot (no overlap), stays one group."""
    sizes: list[int] = []
    async with open_bus(backend, test_prefix) as bus:
        write = bus.publisher.write_outcomes

        async def spied(prepared: Any) -> Any:
            sizes.append(len(prepared))
            return await write(prepared)

        batcher = AutoBatcher(spied, max_in_flight=max_in_flight)
        with anyio.fail_after(10):
            await _waves(bus, batcher, callers, 3)
    assert sizes == [callers] * 3
