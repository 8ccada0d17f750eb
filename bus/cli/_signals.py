"""SIGTERM/SIGINT for the ``bus run`` daemons (one process and the ``--processes`` supervisor).

One anyio task, as anyio and trio recommend: ``await tg.start(watch_signals, on_signal, log)``
installs the handlers (``anyio.open_signal_receiver``) before it reports started, then calls
``on_signal`` for every signal until its task group is cancelled.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

__all__ = ["STOP_SIGNALS", "SignalHandler", "watch_signals"]

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
        task_status.started()
        async for signum in received:
            on_signal(signal.Signals(signum))
