"""The daemons' signal watcher (``bus.cli._signals``): each SIGTERM/SIGINT to the handler, none off the main thread."""

from __future__ import annotations

import logging
import os
import signal
import threading

import anyio
import pytest

from bus.cli._signals import watch_signals

log = logging.getLogger("tests.signals")


async def test_each_signal_reaches_the_handler_in_order() -> None:
    """Once started, SIGTERM then SIGINT sent to this process reach ``on_signal`` as such, one call each."""
    seen: list[signal.Signals] = []
    arrived = [anyio.Event(), anyio.Event()]

    def on_signal(sig: signal.Signals) -> None:
        seen.append(sig)
        arrived[len(seen) - 1].set()

    async with anyio.create_task_group() as tg:
        await tg.start(watch_signals, on_signal, log)
        for sig, event in zip((signal.SIGTERM, signal.SIGINT), arrived, strict=True):
            os.kill(os.getpid(), sig)  # one at a time: the order seen is the order sent
            with anyio.fail_after(5):
                await event.wait()
        tg.cancel_scope.cancel()
    assert seen == [signal.SIGTERM, signal.SIGINT]


def test_off_the_main_thread_it_warns_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    """In another thread no handler can be installed: it reports started, warns on the given logger and returns."""
    calls: list[signal.Signals] = []
    errors: list[BaseException] = []

    async def start() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(watch_signals, calls.append, log)

    def in_thread() -> None:
        try:
            anyio.run(start)
        except BaseException as exc:
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger=log.name):
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join(10)
    assert not thread.is_alive() and errors == [] and calls == []
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        (log.name, "not on the main thread: SIGTERM/SIGINT are not handled here")
    ]
