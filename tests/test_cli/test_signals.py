"""The daemons' signal watcher (``bus.cli._signals``): each SIGTERM/SIGINT to the handler, none off the main
thread; held from the start until the watcher runs, and a held one discarded if it never does.

Signals held here are sent to this thread (``pthread_kill``): sent to the process, another thread of the test
run, where they are not blocked, could take one with its default action."""

from __future__ import annotations

import logging
import os
import signal
import threading

import anyio
import pytest

from bus.cli._signals import STOP_SIGNALS, stop_signals_held, watch_signals

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


def _blocked() -> set[signal.Signals]:
    return signal.pthread_sigmask(signal.SIG_BLOCK, []) & set(STOP_SIGNALS)


async def test_a_signal_held_before_the_watcher_reaches_it_once() -> None:
    """SIGTERM sent while held stays pending, then reaches ``on_signal`` exactly once when the watcher starts;
    the watcher and the hold each restore the mask they found."""
    seen: list[signal.Signals] = []
    arrived = anyio.Event()

    def on_signal(sig: signal.Signals) -> None:
        seen.append(sig)
        arrived.set()

    assert _blocked() == set()
    with stop_signals_held():
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        assert signal.SIGTERM in signal.sigpending() and seen == []
        async with anyio.create_task_group() as tg:
            await tg.start(watch_signals, on_signal, log)
            assert _blocked() == set()
            with anyio.fail_after(5):
                await arrived.wait()
            tg.start_soon(anyio.sleep_forever)  # the loop reads the wakeup fd again: a duplicate would show
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        assert _blocked() == set(STOP_SIGNALS)
    assert seen == [signal.SIGTERM]
    assert _blocked() == set()


def test_a_signal_held_without_a_watcher_is_discarded() -> None:
    """A command that ends before watching (a start-up error): the held SIGTERM and SIGINT are dropped, not
    delivered, and the mask is as before."""
    delivered: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: delivered.append(signum)) for sig in STOP_SIGNALS}
    try:  # recorded, not the default action, should one get through
        with stop_signals_held():
            for sig in STOP_SIGNALS:
                signal.pthread_kill(threading.get_ident(), sig)
            assert set(STOP_SIGNALS) <= signal.sigpending()
        assert signal.sigpending() & set(STOP_SIGNALS) == set()
        assert _blocked() == set()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert delivered == []
