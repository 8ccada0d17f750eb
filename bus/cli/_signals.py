"""SIGTERM/SIGINT for the ``bus run`` daemons (one process and the ``--processes`` supervisor).

One anyio task, as anyio and trio recommend: ``await tg.start(watch_signals, on_signal, log)``
installs the handlers (``anyio.open_signal_receiver``) before it reports started, then calls
``on_signal`` for every signal until its task group is cancelled.

Until then a signal would end the process by its default action. So the daemons hold them from
the start (:func:`stop_signals_held`: blocked, one that arrives stays pending) and the watcher
unblocks them once its handlers are in place, which delivers a pending one to ``on_signal``: a
stop during start-up drains like any other, none is lost. A process started while they are
blocked (:func:`stop_signals_blocked`, the ``--processes`` children) inherits the block, which
covers its interpreter's start and imports too.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

__all__ = ["STOP_SIGNALS", "SignalHandler", "stop_signals_blocked", "stop_signals_held", "watch_signals"]

#: The signals that stop a daemon (the first drains, a second forces the exit).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

#: Called with each signal received (on the event loop, not in a signal handler).
SignalHandler = Callable[[signal.Signals], None]


async def watch_signals(
    on_signal: SignalHandler,
    log: logging.Logger,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_signal`` for each SIGTERM/SIGINT received, until cancelled.

    Signal handlers can only be installed on the main thread: elsewhere (the command run in a
    thread, as tests do) it warns on ``log`` and returns at once, and signals are not handled.
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning("not on the main thread: SIGTERM/SIGINT are not handled here")
        task_status.started()
        return
    with anyio.open_signal_receiver(*STOP_SIGNALS) as received:
        held = signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a pending one arrives now
        try:
            task_status.started()
            async for signum in received:
                on_signal(signal.Signals(signum))
        finally:
            # The mask as it was, before the handlers go: a daemon holding the signals keeps one that
            # arrives from now on pending (its hold discards it) instead of dying from it.
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """SIGTERM/SIGINT blocked on this thread, and in processes started from it meanwhile (the mask
    is inherited); a signal that arrives stays pending until the mask is restored on exit."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """SIGTERM/SIGINT held from now until :func:`watch_signals` watches for them (around a daemon's
    whole command). One still pending at the end (the command ended without watching, e.g. a
    start-up error) is discarded: the command is ending anyway, with its own exit code."""
    with stop_signals_blocked():
        try:
            yield
        finally:
            while pending := signal.sigpending() & set(STOP_SIGNALS):
                signal.sigwait(pending)
