"""Backend health of the consume loop: what is an outage, pause on a confirmed one, probe, resume, one voice."""

from __future__ import annotations

import logging
import uuid

import anyio
import fakeredis
import pytest
from redis._parsers.base import BaseParser

from bus import (
    AuthenticationError,
    BackendError,
    BackendOutOfMemoryError,
    BackendReadOnlyError,
    BackendUnavailableError,
)
from bus.consume._health import BackendHealth, capped_backoff, outage_cause, paused_consumers
from bus.consume._stats import StatsBoard

OOM = BackendOutOfMemoryError("Redis is out of memory", "OOM command not allowed")


def _chained(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "is_outage"),
    [
        pytest.param(OOM, True, id="oom"),
        pytest.param(BackendUnavailableError("connection refused"), True, id="connection-lost"),
        pytest.param(_chained(RuntimeError("effect failed"), BackendReadOnlyError("ro")), True, id="chained"),
        pytest.param(
            _chained(ValueError("handler"), BaseParser.parse_error("READONLY You can't write")), True, id="redis-py"
        ),
        pytest.param(AuthenticationError("Redis rejected the credentials: ... (NOAUTH)"), True, id="noauth-race"),
        pytest.param(AuthenticationError("Redis rejected the credentials: ... (WRONGPASS)"), False, id="wrongpass"),
        pytest.param(BackendError("Redis error: WRONGTYPE"), False, id="wrongtype"),
        pytest.param(ConnectionError("the handler's own HTTP call"), False, id="not-redis"),
        pytest.param(ValueError("bad event"), False, id="handler-bug"),
    ],
)
def test_outage_cause_finds_redis_wide_refusals_along_the_chain(error: Exception, is_outage: bool) -> None:
    """Refusals, lost connections and NOAUTH races count, also chained or from redis-py; bugs and WRONGPASS do not."""
    assert (outage_cause(error) is not None) is is_outage


class Probe:
    """A write probe refused ``refusals`` times, then passing."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            raise BackendOutOfMemoryError("Redis is out of memory", "OOM")


def make_health(probe: Probe, *, server: str = "", interval_s: float = 1000.0, name: str = "c1") -> BackendHealth:
    """A health on its own server name, without sleeps (zero probe backoff)."""
    return BackendHealth(
        fakeredis.FakeAsyncRedis(),
        name,
        probe_initial_s=0.0,
        probe_max_s=0.0,
        log_interval_s=interval_s,
        board=StatsBoard(),
        probe=probe,
        server=server or f"test-{uuid.uuid4().hex[:8]}",
    )


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warning lines logged so far."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_refusal_the_probe_does_not_confirm_is_an_ordinary_failure(caplog: pytest.LogCaptureFixture) -> None:
    """When the write probe passes, the refusal was about that command: no pause, no line, counted as usual."""
    health = make_health(Probe(0))
    assert not await health.confirm(OOM, "handler effect")
    assert not health.paused and warnings(caplog) == []
    assert not await health.confirm(ValueError("bug"), "handler")  # not even probed


async def test_a_confirmed_outage_pauses_once_and_resumes_by_itself(caplog: pytest.LogCaptureFixture) -> None:
    """A refused probe pauses (one warning with the cause); later refusals are quiet; the probe's success resumes."""
    probe = Probe(5)
    health = make_health(probe)
    assert await health.confirm(OOM, "handler effect")
    assert health.paused and health.status() is not None and "out of memory" in (health.status() or "")
    assert health in paused_consumers()
    for _ in range(10):
        assert await health.confirm(OOM, "ack flush")
    assert len(warnings(caplog)) == 1 and "refuses handler effect" in warnings(caplog)[0]
    with anyio.fail_after(5):
        await health.wait_resumed()
    assert not health.paused and health.status() is None and health not in paused_consumers()
    assert probe.calls == 6
    lines = warnings(caplog)
    assert len(lines) == 2 and "accepts writes again" in lines[1] and "11 operations refused" in lines[1]
    assert health.board is not None and health.board.stats.outages == 1


async def test_summary_lines_at_most_one_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """A long outage logs no summary inside the interval, and one per probe round once it is tiny."""
    quiet = make_health(Probe(50), interval_s=1000.0)
    assert await quiet.confirm(OOM, "read")
    with anyio.fail_after(5):
        await quiet.wait_resumed()
    assert len(warnings(caplog)) == 2  # began, ended: 50 refused probes in between said nothing
    caplog.clear()
    chatty = make_health(Probe(3), interval_s=1e-9)
    assert await chatty.confirm(OOM, "read")
    with anyio.fail_after(5):
        await chatty.wait_resumed()
    assert sum("still refuses writes" in line for line in warnings(caplog)) == 3


async def test_consumers_of_one_server_share_one_voice(caplog: pytest.LogCaptureFixture) -> None:
    """Two loops on one server: one opening line, the end line only when the last one resumes."""
    server = f"shared-{uuid.uuid4().hex[:8]}"
    first, second = make_health(Probe(1), server=server, name="a"), make_health(Probe(2), server=server, name="b")
    assert await first.confirm(OOM, "read")
    assert await second.confirm(OOM, "read")
    assert len(warnings(caplog)) == 1
    with anyio.fail_after(5):
        await first.wait_resumed()
    assert len(warnings(caplog)) == 1 and second.paused
    with anyio.fail_after(5):
        await second.wait_resumed()
    assert len(warnings(caplog)) == 2 and "accepts writes again" in warnings(caplog)[1]


async def test_ride_out_calls_the_handler_again_after_the_resume() -> None:
    """A handler failure caused by a confirmed outage is not given up: the handler runs again once Redis writes."""
    health = make_health(Probe(3))
    calls: list[int] = []

    async def again() -> BaseException | None:
        calls.append(1)
        return None

    with anyio.fail_after(5):
        assert await health.ride_out(OOM, again, "handler") is None
    assert calls == [1] and health.board is not None and health.board.stats.outage_failures == 1
    other = ValueError("bug")
    assert await health.ride_out(other, again, "handler") is other and calls == [1]


async def test_concurrent_failures_probe_once() -> None:
    """Many workers failing at once: one probe decides for all of them."""
    probe = Probe(1000)
    health = make_health(probe)
    results: list[bool] = []

    async def fail() -> None:
        results.append(await health.confirm(OOM, "handler"))

    async with anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(fail)
    assert results == [True] * 16 and probe.calls == 1
    health.close()
    assert health not in paused_consumers()


@pytest.mark.parametrize("attempts", [1, 2, 5, 30])
def test_capped_backoff_grows_and_stays_under_the_cap(attempts: int) -> None:
    """The wait doubles from the first one, with jitter, and never passes the cap; a zero cap never waits."""
    wait = capped_backoff(attempts, 0.05, 2.0)
    assert min(2.0, 0.05 * 2.0 ** (attempts - 1)) <= wait <= 2.0
    assert capped_backoff(attempts, 0.05, 0.0) == 0.0


async def test_the_real_probe_passes_on_a_writable_redis() -> None:
    """The default probe (a script that may write) passes where writes work, and on a server without shebangs."""
    health = BackendHealth(
        fakeredis.FakeAsyncRedis(), "c", probe_initial_s=0.0, probe_max_s=0.0, log_interval_s=60.0, server="fake"
    )
    assert not await health.confirm(OOM, "x")  # fakeredis answers a script error: Redis answers, so it writes
    assert not health.paused
