"""``bus run``: subscriber daemons.

``bus run NAME`` runs a service registered in the ``psa_event_bus.services`` entry-point group
(this distribution registers ``email``, ``notifications``, ``workflow`` and ``all`` from
``subscribers.app``; see :mod:`bus.loader`), ``bus run pkg.module:attr`` anything else (the
current folder is searched first, as with ``python -m``): ``bus`` never imports ``publishers``
or ``subscribers``. The target may be a service (an object with ``async run(bus, *,
task_status)``), a list of services, or a factory returning either; a factory taking one
argument gets the environment (a dict) with the given flags written into it, so every option
has one name (the variable): a flag given wins, an absent flag leaves the variable alone.

Each service runs on its own :class:`~bus.EventBus` under a :class:`~bus.Runner`. Shutdown: the
first SIGTERM/SIGINT stops reading and gives in-flight handlers ``--grace-s``
(``BUS_SHUTDOWN_GRACE_S``); a second signal, or a shutdown still running ``grace + 10 s`` later,
exits at once (unacked entries stay pending and are redelivered). A signal that arrives during
start-up is held until the daemon watches for it (:func:`~bus.cli._signals.stop_signals_held`),
then stops it the same way.

``--processes N`` (``BUS_PROCESSES``) runs N such processes under a supervisor
(:mod:`bus.cli._supervise`): signals forwarded, crashed children restarted, the group's probes
on ``--http-port``.

Exit codes: 0 clean shutdown; 1 a service crashed; 2 usage (bad flags, unknown service or
import string, invalid configuration); 3 Redis unreachable or refusing the credentials (at
start, or fatally later; no retry loop); 4 the shutdown did not finish within the grace period
(handlers were cut, a second signal, or the watchdog).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import orjson
import redis.exceptions as rex

from .._bus import EventBus
from .._errors import BusError, ConfigurationError
from .._runner import Runner, Service
from .._settings import BusSettings
from ..consume import single_error
from ..loader import SERVICES_GROUP, ImportStringError, entry_point_names, load_entry_point
from ..loader import load_object as _load_object
from ..observability import BusMetrics, Health, probe_app, runner_health, serve_http
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    connection_parent,
    fail,
    positive_int,
    report,
    settings_from_args,
)
from ._signals import SignalHandler, stop_signals_held, watch_signals
from ._supervise import Supervisor

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..observability import Tracing

__all__ = ["EXIT_FORCED", "JsonFormatter", "load_object", "load_services", "register"]

log = logging.getLogger("bus.run")

#: The shutdown did not finish within the grace period.
EXIT_FORCED = 4

#: Seconds the shutdown may run past the grace period before the watchdog exits.
WATCHDOG_MARGIN_S = 10.0

# Flag (namespace attribute) -> environment variables it sets when given.
_FLAG_ENV: dict[str, str | tuple[str, ...]] = {
    "prefix": "REDIS_PREFIX",
    "stream_prefix": "REDIS_EVENT_STREAM_PREFIX",
    "timeout_s": ("BUS_CONNECT_TIMEOUT_S", "BUS_SOCKET_TIMEOUT_S"),
    "consumer_name": "BUS_CONSUMER_NAME",
    "concurrency": "BUS_CONCURRENCY",
    "grace_s": "BUS_SHUTDOWN_GRACE_S",
    "directory": "BUS_DIRECTORY_FILE",
    "templates": "BUS_EMAIL_TEMPLATES",
    "outbox": "BUS_EMAIL_OUTBOX",
    "email_sender": "BUS_EMAIL_SENDER",
    "from_address": "BUS_EMAIL_FROM",
    "from_name": "BUS_EMAIL_FROM_NAME",
    "base_url": "BUS_EMAIL_BASE_URL",
    "smtp_host": "SMTP_HOST",
    "smtp_port": "SMTP_PORT",
    "smtp_username": "SMTP_USERNAME",
    "smtp_security": "SMTP_SECURITY",
    "workflow_group": "BUS_WORKFLOW_GROUP",
    "workflow_start": "BUS_WORKFLOW_START",
}

_LEVELS = ("debug", "info", "warning", "error")


# --- logging ---------------------------------------------------------------------------------

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as compact JSON."""
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                data[key] = value
        # The redacting filter leaves the traceback redacted in exc_text: never format exc_info again.
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if exc:
            data["exc"] = exc
        return orjson.dumps(data, default=str).decode()


class _Redact(logging.Filter):
    """Replaces secrets (passwords, a URL carrying one) in every message before it is written."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for secret in self.secrets:
                text = text.replace(secret, "***")
            record.msg, record.args = text, None
        return True


def _configure_logging(level: str, fmt: str, secrets: Sequence[str]) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_Redact(secrets))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


# --- loading ---------------------------------------------------------------------------------


def load_object(spec: str) -> Any:
    """A registered service name (``psa_event_bus.services``) or ``pkg.module:attr`` (attr may be
    dotted); a :class:`CommandError` (usage) says why it cannot be loaded."""
    try:
        if spec in entry_point_names(SERVICES_GROUP):
            return load_entry_point(SERVICES_GROUP, spec)
        if ":" not in spec:
            known = ", ".join(entry_point_names(SERVICES_GROUP)) or "(none registered: pip install -e .)"
            raise CommandError(f"unknown service {spec!r}: use {known} or an import string pkg.module:attr", EXIT_USAGE)
        return _load_object(spec, search_cwd=True)
    except ImportStringError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def _is_service(obj: Any) -> bool:
    return not isinstance(obj, type) and isinstance(obj, Service)


def _call_factory(factory: Any, environ: Mapping[str, str]) -> Any:
    """A class is instantiated without arguments; a function taking a positional argument gets the environment."""
    if isinstance(factory, type):
        return factory()
    try:
        params = [
            p
            for p in inspect.signature(factory).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        params = []
    return factory(dict(environ)) if params else factory()


def load_services(spec: str, environ: Mapping[str, str]) -> list[Service]:
    """The services ``spec`` (a built-in name or an import string) stands for, built from ``environ``."""
    target = load_object(spec)
    if not _is_service(target) and callable(target) and not inspect.iscoroutinefunction(target):
        try:
            target = _call_factory(target, environ)
        except BusError:
            raise
        except Exception as exc:
            raise CommandError(f"{spec}: could not build the services: {exc}", EXIT_USAGE) from exc
    found = [target] if _is_service(target) else list(target) if isinstance(target, list | tuple) else None
    if not found or not all(_is_service(s) for s in found):
        raise CommandError(
            f"{spec} is not a service (an object with async run(bus, *, task_status)), "
            "a list of services, or a factory returning them",
            EXIT_USAGE,
        )
    return found


# --- bus run ---------------------------------------------------------------------------------


class _Stop:
    """What happened at shutdown (and the probes' health, marked draining at the first signal)."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self.at: float | None = None
        self.health: Health | None = None


class _Http:
    """Where the probe server listens (``--http-port`` / ``BUS_HTTP_PORT``) and what it exports."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.metrics = BusMetrics()


def _http_from(args: argparse.Namespace, env: Mapping[str, str]) -> _Http | None:
    raw = args.http_port if args.http_port is not None else env.get("BUS_HTTP_PORT") or None
    if raw is None:
        return None
    try:
        port = int(raw)
        if not 0 <= port <= 65535:
            raise ValueError(raw)
    except ValueError:
        raise ConfigurationError("BUS_HTTP_PORT", f"{raw!r} is not a port number (0-65535)") from None
    return _Http(args.http_host or env.get("BUS_HTTP_HOST") or "0.0.0.0", port)


def _tracing_from(args: argparse.Namespace, env: Mapping[str, str]) -> Tracing | None:
    """OpenTelemetry spans when ``--otel`` or ``BUS_OTEL=1`` (they go to the global tracer provider,
    which ``opentelemetry-instrument`` configures from the ``OTEL_*`` variables); else None."""
    if not (args.otel or env.get("BUS_OTEL", "").strip().lower() in ("1", "true", "yes", "on")):
        return None
    try:
        from ..observability import Tracing
    except ImportError:
        raise ConfigurationError(
            "BUS_OTEL", "tracing needs the otel extra: pip install 'psa-event-bus[otel]'"
        ) from None
    return Tracing()


def _exit_now(code: int) -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


async def _watchdog(grace_s: float) -> None:
    await anyio.sleep(grace_s + WATCHDOG_MARGIN_S)
    log.error("shutdown still running %.1fs after the signal; exiting now", grace_s + WATCHDOG_MARGIN_S)
    _exit_now(EXIT_FORCED)


def _on_signal(run_scope: anyio.CancelScope, stop: _Stop, grace_s: float, tg: TaskGroup) -> SignalHandler:
    """What SIGTERM/SIGINT do: the first drains (probes say draining, the watchdog starts), a second exits."""

    def on_signal(sig: signal.Signals) -> None:
        if stop.signal is None:
            stop.signal, stop.at = sig, time.monotonic()
            if stop.health is not None:
                stop.health.set_draining()
            log.warning(
                "%s received: stopping; in-flight handlers get %.1fs (send it again to exit at once)", sig.name, grace_s
            )
            run_scope.cancel()
            tg.start_soon(_watchdog, grace_s)
        else:
            log.error("second %s: exiting now; unfinished entries stay pending and are redelivered", sig.name)
            _exit_now(EXIT_FORCED)

    return on_signal


class _Supervised:
    """A child of ``bus run --processes N``: reports to the supervisor on a pipe (one JSON object
    a line: ``{"http_port": n}``, ``{"ready": true}``) and stops when the supervisor is gone."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.parent = os.getppid()

    def report(self, **values: Any) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: watch_parent stops us
            os.write(self.fd, orjson.dumps(values) + b"\n")

    def started(self, value: None = None) -> None:
        """``task_status.started()`` of the runner: the services are running."""
        self.report(ready=True)

    async def watch_parent(self, run_scope: anyio.CancelScope, stop: _Stop, grace_s: float, tg: TaskGroup) -> None:
        """Drain as on SIGTERM when the supervisor died (we were handed to another parent)."""
        while os.getppid() == self.parent:  # noqa: ASYNC110 - no event says "parent died" (gunicorn polls too)
            await anyio.sleep(1.0)
        if stop.signal is None:
            stop.signal, stop.at = signal.SIGTERM, time.monotonic()
            log.error("the supervisor (pid %d) is gone: stopping; in-flight handlers get %.1fs", self.parent, grace_s)
            run_scope.cancel()
            tg.start_soon(_watchdog, grace_s)


async def _serve(
    services: Sequence[Service],
    settings: BusSettings,
    stop: _Stop,
    http: _Http | None = None,
    tracing: Tracing | None = None,
    supervised: _Supervised | None = None,
) -> None:
    metrics = http.metrics if http is not None else None
    runner = Runner(services, settings, signals=(), bus_factory=lambda s: EventBus(s, metrics=metrics, tracing=tracing))
    try:
        async with anyio.create_task_group() as tg:
            if http is not None:
                stop.health = runner_health(runner, http.metrics)
                port = await tg.start(serve_http, probe_app(stop.health, http.metrics), http.host, http.port)
                log.info("serving /metrics, /healthz and /readyz on %s:%d", http.host, port)
                if supervised is not None:
                    supervised.report(http_port=port)
            with anyio.CancelScope() as run_scope:
                await tg.start(watch_signals, _on_signal(run_scope, stop, settings.shutdown_grace_s, tg), log)
                if supervised is not None:
                    tg.start_soon(supervised.watch_parent, run_scope, stop, settings.shutdown_grace_s, tg)
                    await runner.run(task_status=supervised)
                else:
                    await runner.run()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = single_error(group)
        if error is not None:
            raise error from None
        raise


def _environ(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if args.redis_url:
        for var in ("REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB"):
            env.pop(var, None)
        env["REDIS_URL"] = args.redis_url
    for attr, names in _FLAG_ENV.items():
        value = getattr(args, attr, None)
        if value is not None:
            for var in (names,) if isinstance(names, str) else names:
                env[var] = str(value)
    if args.trigger:
        env["BUS_WORKFLOW_TRIGGERS"] = ",".join(args.trigger)
    if args.converter:
        env["BUS_WORKFLOW_CONVERTER"] = "1"
    if getattr(args, "otel", None):
        env["BUS_OTEL"] = "1"  # (also what --processes N hands its children)
    return env


def _describe(settings: BusSettings) -> str:
    where = (
        "unix socket"
        if (settings.redis_url or "").startswith("unix://")
        else f"sentinel master {settings.sentinel_master!r} via {settings.sentinels} db {settings.db}"
        if settings.sentinels
        else f"{settings.host}:{settings.port} db {settings.db}"
    )
    return f"Redis {where}, prefix {settings.prefix!r}, default group {settings.consumer_group!r}"


def _service_name(service: Service) -> str:
    """The service's name, with its own consumer group when it has one (an ``App``: its name by default)."""
    name = str(getattr(service, "name", type(service).__name__))
    group = getattr(service, "group", None)
    return f"{name} (group {group!r})" if isinstance(group, str) else name


def _run_command(args: argparse.Namespace) -> int:
    # A stop during start-up waits for the signal watcher instead of killing the process.
    with stop_signals_held():
        return _run_held(args)


def _run_held(args: argparse.Namespace) -> int:
    env = _environ(args)
    level = (args.log_level or env.get("BUS_LOG_LEVEL") or "info").lower()
    fmt = (args.log_format or env.get("BUS_LOG_FORMAT") or "text").lower()
    if level not in _LEVELS:
        return fail("run", f"--log-level/BUS_LOG_LEVEL: {level!r} is not one of {', '.join(_LEVELS)}", EXIT_USAGE)
    if fmt not in ("json", "text"):
        return fail("run", f"--log-format/BUS_LOG_FORMAT: {fmt!r} is not json or text", EXIT_USAGE)
    try:
        settings = settings_from_args(args, environ=env)
    except ConfigurationError as exc:
        return fail("run", f"invalid settings: {exc}", EXIT_USAGE)
    secrets = [settings.password or "", env.get("SMTP_PASSWORD", ""), env.get("REDIS_PASSWORD", "")]
    if settings.redis_url and settings.password:
        secrets.append(settings.redis_url)
    handler = _configure_logging(level, fmt, secrets)
    try:
        return _run_services(args, env, settings)
    finally:
        logging.getLogger().removeHandler(handler)


def _processes(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    raw = args.processes if args.processes is not None else env.get("BUS_PROCESSES") or "1"
    try:
        n = int(raw)
        if n < 1:
            raise ValueError(raw)
    except ValueError:
        raise ConfigurationError("BUS_PROCESSES", f"{raw!r} is not a positive number of processes") from None
    return n


def _supervise(args: argparse.Namespace, env: Mapping[str, str], settings: BusSettings, processes: int) -> int:
    http = _http_from(args, env)
    log.info(
        "starting %d processes of %s on %s (grace %.1fs)",
        processes,
        ", ".join(args.services),
        _describe(settings),
        settings.shutdown_grace_s,
    )
    child_env = {k: v for k, v in env.items() if k != "BUS_PROCESSES"}
    supervisor = Supervisor(
        list(dict.fromkeys(args.services)),
        child_env,
        processes=processes,
        grace_s=settings.shutdown_grace_s,
        http=(http.host, http.port) if http is not None else None,
    )
    try:
        return anyio.run(supervisor.run)
    except KeyboardInterrupt:
        return 130


def _run_services(args: argparse.Namespace, env: Mapping[str, str], settings: BusSettings) -> int:
    try:
        processes = _processes(args, env)
        if processes > 1 and args.supervisor_fd is None:
            return _supervise(args, env, settings, processes)
    except ConfigurationError as exc:
        return fail("run", str(exc), EXIT_USAGE)
    services: list[Service] = []
    try:
        for spec in dict.fromkeys(args.services):
            services.extend(load_services(spec, env))
    except CommandError as exc:
        return fail("run", str(exc), exc.code)
    except ConfigurationError as exc:
        return fail("run", str(exc), EXIT_USAGE)
    names = ", ".join(_service_name(s) for s in services)
    log.info(
        "starting %s on %s (grace %.1fs)",
        names,
        _describe(settings),
        settings.shutdown_grace_s,
        extra={"services": names, "prefix": settings.prefix},
    )
    stop = _Stop()
    try:
        http = _http_from(args, env)
        tracing = _tracing_from(args, env)
    except ConfigurationError as exc:
        return fail("run", str(exc), EXIT_USAGE)
    try:
        supervised = _Supervised(args.supervisor_fd) if args.supervisor_fd is not None else None
        anyio.run(_serve, services, settings, stop, http, tracing, supervised)
    except KeyboardInterrupt:
        return 130
    except (BusError, rex.RedisError) as exc:
        return report("run", exc, settings)
    except Exception as exc:
        log.error("a service crashed", exc_info=exc)
        return fail("run", f"a service crashed: {type(exc).__name__}: {exc}", EXIT_FAILED)
    if stop.at is not None:
        took = time.monotonic() - stop.at
        grace = settings.shutdown_grace_s
        if grace > 0 and took >= grace:
            log.error("shutdown took %.1fs, over the %.1fs grace period: handlers were cut", took, grace)
            return EXIT_FORCED
        log.info("stopped cleanly in %.2fs", took)
    return EXIT_OK


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        parents=[connection_parent()],
        help="run subscriber daemons (email, notifications, workflow, all, or pkg.module:app)",
        description=(
            "Run services until SIGTERM/SIGINT, then drain them. SERVICE is a registered name (email, "
            "notifications, workflow, all: the psa_event_bus.services entry points), or an import string "
            "pkg.module:attr naming a service, a list of services or a factory (called with the environment). "
            "A flag given overrides the environment variable named in its help; an absent flag leaves it alone."
        ),
        epilog=(
            "exit codes: 0 clean shutdown, 1 a service crashed, 2 usage or configuration error, "
            "3 Redis unreachable or refusing the credentials, 4 shutdown exceeded the grace period"
        ),
    )
    p.add_argument("services", nargs="+", metavar="SERVICE")
    run = p.add_argument_group("consuming")
    run.add_argument("--consumer-name", metavar="NAME", help="BUS_CONSUMER_NAME (default host-pid-random)")
    run.add_argument("--concurrency", type=positive_int, metavar="N", help="handlers in flight per service")
    run.add_argument("--grace-s", type=float, metavar="SECONDS", help="BUS_SHUTDOWN_GRACE_S (default 10)")
    run.add_argument("--log-level", choices=_LEVELS, help="BUS_LOG_LEVEL (default info)")
    run.add_argument("--log-format", choices=("json", "text"), help="BUS_LOG_FORMAT (default text)")
    run.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help="BUS_HTTP_PORT: serve /metrics (Prometheus), /healthz and /readyz on PORT (default: no server)",
    )
    run.add_argument("--http-host", metavar="HOST", help="BUS_HTTP_HOST: address of that server (default 0.0.0.0)")
    run.add_argument(
        "--otel",
        action="store_true",
        default=None,
        help="BUS_OTEL=1: OpenTelemetry spans per publish and handled delivery (the otel extra)",
    )
    run.add_argument(
        "--processes",
        type=positive_int,
        metavar="N",
        help="BUS_PROCESSES: run N consumer processes under one supervisor (default 1)",
    )
    run.add_argument("--supervisor-fd", type=int, help=argparse.SUPPRESS)  # a child of --processes N
    mail = p.add_argument_group("email and notifications")
    mail.add_argument("--directory", metavar="FILE", help="BUS_DIRECTORY_FILE: users, contacts, tickets (JSON/YAML)")
    mail.add_argument("--templates", metavar="DIR", help="BUS_EMAIL_TEMPLATES: template overrides")
    mail.add_argument("--outbox", metavar="DIR", help="BUS_EMAIL_OUTBOX: write .eml files here instead of SMTP")
    mail.add_argument("--email-sender", choices=("smtp", "file", "console"), help="BUS_EMAIL_SENDER")
    mail.add_argument("--from-address", metavar="ADDR", help="BUS_EMAIL_FROM")
    mail.add_argument("--from-name", metavar="NAME", help="BUS_EMAIL_FROM_NAME")
    mail.add_argument("--base-url", metavar="URL", help="BUS_EMAIL_BASE_URL: links in mail")
    mail.add_argument("--smtp-host", metavar="HOST", help="SMTP_HOST")
    mail.add_argument("--smtp-port", type=positive_int, metavar="PORT", help="SMTP_PORT (default by security)")
    mail.add_argument("--smtp-username", metavar="USER", help="SMTP_USERNAME (the password only from SMTP_PASSWORD)")
    mail.add_argument("--smtp-security", choices=("starttls", "tls", "none"), help="SMTP_SECURITY")
    wf = p.add_argument_group("workflow")
    wf.add_argument(
        "--trigger",
        action="append",
        metavar="TYPE=MODULE:FUNC",
        help="BUS_WORKFLOW_TRIGGERS: a workflow trigger (repeatable; TYPE * for every type)",
    )
    wf.add_argument("--workflow-group", metavar="GROUP", help="BUS_WORKFLOW_GROUP (default workflow-runtime-v2)")
    wf.add_argument("--workflow-start", metavar="ID", help="BUS_WORKFLOW_START: 0 or $ for a new group")
    wf.add_argument("--converter", action="store_true", help="BUS_WORKFLOW_CONVERTER: also run the converter")
    p.set_defaults(handler=_run_command)


def register(sub: Any) -> None:
    """Add ``bus run``."""
    _add_run(sub)
