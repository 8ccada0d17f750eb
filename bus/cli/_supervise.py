"""``bus run --processes N``: N consumer processes under one supervisor.

Each child is ``python -m bus run SERVICE...`` with ``BUS_PROCESSES=1``, started with the
environment the flags were written into (every option has one name, its variable), in a session
of its own so a terminal's Ctrl-C reaches the supervisor only. A child tells the supervisor, on a
pipe (``--supervisor-fd``), its probe port and when its services are running; it exits on its
own (graceful drain) if the supervisor dies.

- Signals: SIGTERM/SIGINT are forwarded to every child, which drains within its grace period; a
  second signal is forwarded too (the children exit at once) and the supervisor exits 4. A
  watchdog kills what still runs ``grace + 10 s`` after the first signal and exits 4. A child
  starts with them blocked (:func:`~bus.cli._signals.stop_signals_blocked`) until its own
  watcher is ready, so one forwarded while it starts is held, then drained, not fatal; no child
  is started once the group is stopping, and one started as it began stopping is sent the stop.
- Restarts: a child that exits while not asked to (a crash, SIGKILL, Redis lost for good) is
  started again after a capped, jittered backoff (:data:`RESTART_BACKOFF_S` doubling up to
  :data:`RESTART_BACKOFF_MAX_S`; reset after :data:`STABLE_S` of running). A child that exits 2
  (usage, configuration) or 3 (Redis unreachable or refusing the credentials) before its
  services ever ran stops the group with that code, as one process would have.
- Consumer names: unique per child. Default names are ``{host}-{pid}-{random}`` already; a fixed
  ``BUS_CONSUMER_NAME`` becomes ``{name}-{slot}`` (slot 1..N), the same slot keeping its name
  across restarts. A crashed child's pending entries are taken over by reclaim (after
  ``REDIS_STREAM_CLAIM_TIMEOUT``), by a sibling or its replacement.
- Exit code: 0 when every child stopped cleanly; 4 when one was cut at shutdown; 1 when one
  failed while stopping; 2 or 3 as above.
- ``--http-port``: the supervisor serves the group's probes (:mod:`bus.observability._group`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anyio
import orjson

from ..observability._group import GroupMember, group_app
from ..observability._server import serve_http
from ._signals import stop_signals_blocked, watch_signals

if TYPE_CHECKING:
    from anyio.abc import Process, TaskGroup

__all__ = ["RESTART_BACKOFF_MAX_S", "RESTART_BACKOFF_S", "STABLE_S", "Supervisor"]

log = logging.getLogger("bus.run.supervisor")

#: First wait before a crashed child is started again (doubles per crash in a row, jittered).
RESTART_BACKOFF_S = 0.5
#: Longest wait before a restart.
RESTART_BACKOFF_MAX_S = 30.0
#: A child that ran this long resets the backoff.
STABLE_S = 60.0
#: Seconds past the grace period before the supervisor kills what still runs.
WATCHDOG_MARGIN_S = 10.0

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_FORCED = 0, 1, 2, 3, 4


class _Child:
    """One slot of the group: its current process, probe port and state."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.process: Process | None = None
        self.http_port: int | None = None
        self.ready = False
        self.crashes = 0
        self.code: int | None = None

    @property
    def name(self) -> str:
        return f"process-{self.slot}"


class Supervisor:
    """Runs ``processes`` children of ``bus run SERVICES`` and keeps them running until a signal."""

    def __init__(
        self,
        services: Sequence[str],
        env: Mapping[str, str],
        *,
        processes: int,
        grace_s: float,
        http: tuple[str, int] | None = None,
    ) -> None:
        self.services = list(services)
        self.env = dict(env)
        self.children = [_Child(slot) for slot in range(1, processes + 1)]
        self.grace_s = grace_s
        self.http = http
        self.restarts = 0
        self.stopping: signal.Signals | None = None
        self.fatal: int | None = None
        self._stopped = anyio.Event()
        self._stop_signal = signal.SIGTERM  # what _stop_all forwarded
        self._spawning = anyio.Lock()

    # --- children --------------------------------------------------------------------------

    def _command(self, fd: int) -> list[str]:
        args = [sys.executable, "-m", "bus", "run", *self.services, "--supervisor-fd", str(fd)]
        if self.http is not None:
            args += ["--http-port", "0", "--http-host", "127.0.0.1"]
        return args

    def _child_env(self, child: _Child) -> dict[str, str]:
        env = {k: v for k, v in self.env.items() if k not in ("BUS_HTTP_PORT", "BUS_HTTP_HOST")}
        env["BUS_PROCESSES"] = "1"
        if env.get("BUS_CONSUMER_NAME"):
            env["BUS_CONSUMER_NAME"] = f"{env['BUS_CONSUMER_NAME']}-{child.slot}"
        return env

    async def _spawn(self, child: _Child, write_fd: int) -> Process | None:
        """A new process for ``child``, started with the stop signals blocked (it inherits the mask
        and unblocks them once it watches for them); None once the group is stopping. One at a
        time: the mask belongs to this thread, so overlapping spawns could restore it blocked."""
        async with self._spawning:
            if self._stopped.is_set():
                return None
            with stop_signals_blocked():
                return await anyio.open_process(
                    self._command(write_fd),
                    stdin=None,
                    stdout=None,
                    stderr=None,
                    env=self._child_env(child),
                    start_new_session=True,
                    pass_fds=(write_fd,),
                )

    async def _run_once(self, child: _Child) -> int | None:
        """Start ``child``'s process, follow its reports until it exits; its exit code (None: not
        started, the group is stopping)."""
        read_fd, write_fd = os.pipe()
        try:
            process = await self._spawn(child, write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        if process is None:
            os.close(read_fd)
            return None
        child.process = process
        log.info("started %s (pid %d)", child.name, process.pid, extra={"slot": child.slot})
        if self._stopped.is_set():  # the stop came while it was being started: _stop_all did not see it
            self._forward(child, self._stop_signal)
        try:
            await self._follow(child, read_fd)
            code = await process.wait()
        finally:
            os.close(read_fd)
        child.process, child.http_port, child.ready = None, None, False
        return code

    async def _follow(self, child: _Child, fd: int) -> None:
        """Read the child's reports (JSON lines) until it closes the pipe (it exited)."""
        os.set_blocking(fd, False)
        buffer = b""
        while True:
            await anyio.wait_readable(fd)
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                report = orjson.loads(line)
                if "http_port" in report:
                    child.http_port = int(report["http_port"])
                if report.get("ready"):
                    child.ready = True
                    if all(c.ready for c in self.children):
                        log.info("group ready: %d process(es) running", len(self.children))

    async def _keep(self, child: _Child) -> None:
        """Run ``child``'s slot until the group stops: restart it after a crash, with backoff."""
        while True:
            started = time.monotonic()
            code = await self._run_once(child)
            if code is None:
                return
            ran_s = time.monotonic() - started
            child.code = code
            if self.stopping is not None or self.fatal is not None:
                return
            if code in (EXIT_USAGE, EXIT_UNAVAILABLE) and child.crashes == 0 and ran_s < STABLE_S and not child.ready:
                log.error("%s exited %d before its services ran: stopping the group", child.name, code)
                self.fatal = code
                self._stop_all(signal.SIGTERM)
                return
            if code == EXIT_OK:
                log.info("%s finished (its services returned)", child.name)
                return
            child.crashes = 1 if ran_s >= STABLE_S else child.crashes + 1
            delay = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** (child.crashes - 1))
            delay *= random.uniform(0.5, 1.0)
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            log.error(
                "%s died (%s) after %.1fs; restarting in %.2fs",
                child.name,
                how,
                ran_s,
                delay,
                extra={"slot": child.slot, "exit": code},
            )
            with anyio.move_on_after(delay):
                await self._stopped.wait()
            if self.stopping is not None or self.fatal is not None:
                return
            self.restarts += 1

    # --- signals ---------------------------------------------------------------------------

    @staticmethod
    def _forward(child: _Child, signum: signal.Signals) -> None:
        if child.process is not None and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signum)

    def _stop_all(self, signum: signal.Signals) -> None:
        self._stopped.set()
        self._stop_signal = signum
        for child in self.children:
            self._forward(child, signum)

    def _kill_all(self) -> None:
        for child in self.children:
            if child.process is not None and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()

    async def _watchdog(self) -> None:
        await anyio.sleep(self.grace_s + WATCHDOG_MARGIN_S)
        log.error("children still running %.1fs after the signal: killing them", self.grace_s + WATCHDOG_MARGIN_S)
        self.fatal = EXIT_FORCED
        self._kill_all()

    def _on_signal(self, tg: TaskGroup, sig: signal.Signals) -> None:
        """The first SIGTERM/SIGINT is forwarded and starts the watchdog; a second is forwarded, exit 4."""
        if self.stopping is None:
            self.stopping = sig
            log.warning(
                "%s received: forwarded to %d process(es); each drains within %.1fs",
                sig.name,
                len(self.children),
                self.grace_s,
            )
            self._stop_all(sig)
            tg.start_soon(self._watchdog)
        else:
            log.error("second %s: forwarded; the children exit at once", sig.name)
            self.fatal = EXIT_FORCED
            self._stop_all(sig)

    # --- the group -------------------------------------------------------------------------

    def _members(self) -> Sequence[GroupMember]:
        return [(c.name, c.http_port) for c in self.children]

    def exit_code(self) -> int:
        """The group's exit code once every child is gone (see the module's docstring)."""
        if self.fatal is not None:
            return self.fatal
        codes = [c.code for c in self.children if c.code is not None]
        if any(code == EXIT_FORCED or code < 0 for code in codes):
            return EXIT_FORCED
        return next((code for code in codes if code != EXIT_OK), EXIT_OK)

    async def run(self) -> int:
        """Start the children, keep them running until a signal, wait for them; the exit code."""
        async with anyio.create_task_group() as outer:
            await outer.start(watch_signals, functools.partial(self._on_signal, outer), log)
            if self.http is not None:
                app = group_app(
                    self._members, draining=lambda: self.stopping is not None, restarts=lambda: self.restarts
                )
                port = await outer.start(serve_http, app, *self.http)
                log.info("serving the group's /metrics, /healthz and /readyz on %s:%d", self.http[0], port)
            async with anyio.create_task_group() as slots:
                for child in self.children:
                    slots.start_soon(self._keep, child)
            log.info("all %d process(es) stopped", len(self.children))
            outer.cancel_scope.cancel()
        return self.exit_code()
