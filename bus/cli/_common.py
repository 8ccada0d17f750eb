"""Shared bits of the ``bus`` sub-commands that talk to Redis.

- :func:`connection_parent`: the ``--redis-url``/``--prefix``/``--stream-prefix``/``--timeout-s``
  flags for ``parents=[...]`` of any sub-command parser. Every flag defaults to None: a flag given
  overrides its variable, an absent flag leaves the environment (:meth:`BusSettings.from_env`)
  in charge;
- :func:`run_with_bus`: build the settings, open an :class:`EventBus`, run an async body and map
  what it raises to an exit code (:data:`EXIT_OK`, :data:`EXIT_FAILED`, :data:`EXIT_USAGE`,
  :data:`EXIT_UNREACHABLE`) with a one-line message on stderr: no traceback, no secrets;
- output helpers: :func:`table`, :func:`write_json`, :func:`json_line`, :func:`fmt_ms`, :func:`fail`,
  :func:`confirm`.

A body stops with a chosen code and message by raising :class:`CommandError`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import orjson
import redis.exceptions as rex

from schemas import UnknownEventTypeError, UnknownSchemaRefError

from .._bus import EventBus
from .._errors import (
    AuthenticationError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    BusError,
    ConfigurationError,
)
from .._redis import translate_error
from .._settings import BusSettings
from ..loader import ImportStringError
from ..ops import AmbiguousDeadLetterError, InvalidEntryIdError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CommandError",
    "command",
    "confirm",
    "connection_parent",
    "exit_code_of",
    "fail",
    "fmt_ms",
    "json_line",
    "non_negative_int",
    "opt",
    "positive_int",
    "report",
    "run_with_bus",
    "settings_from_args",
    "table",
    "write_json",
]

EXIT_OK = 0
#: The operation failed: invalid input, nothing to replay, an entry not found, a refused write.
EXIT_FAILED = 1
#: Bad flags or arguments, an unknown event type, a missing ``--yes``, invalid settings.
EXIT_USAGE = 2
#: Redis cannot be reached, timed out, or refused the credentials / the command (ACL).
EXIT_UNREACHABLE = 3

#: Connection variables ignored when ``--redis-url`` is given (the URL says it all).
_URL_VARS = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB")


class CommandError(Exception):
    """Raised by a command body: print ``message`` on stderr and exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        self.code = code
        super().__init__(message)


#: Variables only the CLI reads (the rest are BusSettings' and the services'), for docs/environment.md.
CLI_DOCS: dict[str, tuple[str, str]] = {
    "BUS_LOG_LEVEL": ("cli", "`bus run` log level: debug, info (default), warning, error"),
    "BUS_LOG_FORMAT": ("cli", "`bus run` log format: `text` (default) or `json` (one object per line)"),
    "BUS_HTTP_PORT": ("cli", "`bus run` port of `/metrics`, `/healthz` and `/readyz` (unset: no HTTP server)"),
    "BUS_HTTP_HOST": ("cli", "`bus run` address of that server (default `0.0.0.0`)"),
    "BUS_PROCESSES": (
        "cli",
        "`bus run` consumer processes under one supervisor (default 1): signals forwarded, crashed ones restarted",
    ),
    "BUS_DASHBOARD_TOKEN": (
        "cli",
        "`bus dashboard` write token (16+ characters); without it the dashboard is read-only",
    ),
}


def connection_parent() -> argparse.ArgumentParser:
    """A parent parser holding the connection flags (``parents=[connection_parent()]``)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "connection",
        "Defaults come from the environment: REDIS_URL, or REDIS_HOST/REDIS_PORT/REDIS_USERNAME/"
        "REDIS_PASSWORD/REDIS_DB, REDIS_TLS_*, REDIS_PREFIX, REDIS_EVENT_STREAM_PREFIX.",
    )
    group.add_argument(
        "--redis-url",
        metavar="URL",
        help="redis://[user:pass@]host:port/db or rediss://...; overrides REDIS_URL and REDIS_HOST/PORT/...",
    )
    group.add_argument("--prefix", help="key prefix (REDIS_PREFIX, default alga-psa:)")
    group.add_argument("--stream-prefix", help="stream prefix (REDIS_EVENT_STREAM_PREFIX, default event-stream:)")
    group.add_argument(
        "--timeout-s",
        type=float,
        metavar="SECONDS",
        help="connect and command timeout (BUS_CONNECT_TIMEOUT_S and BUS_SOCKET_TIMEOUT_S, default 5)",
    )
    return parent


def settings_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> BusSettings:
    """Settings from the environment overlaid with the connection flags that were given.

    An absent flag (None) never overrides: ``BUS_SOCKET_TIMEOUT_S`` applies unless ``--timeout-s``
    is given, ``REDIS_PREFIX`` unless ``--prefix``...
    """
    env = dict(os.environ if environ is None else environ)
    url: str | None = getattr(args, "redis_url", None)
    if url:
        for var in _URL_VARS:
            env.pop(var, None)
    timeout: float | None = getattr(args, "timeout_s", None)
    overrides: dict[str, Any] = {
        "redis_url": url,
        "prefix": getattr(args, "prefix", None),
        "stream_prefix": getattr(args, "stream_prefix", None),
        "connect_timeout_s": timeout,
        "socket_timeout_s": timeout,
    }
    return BusSettings.from_env(env, **{k: v for k, v in overrides.items() if v is not None})


def _target(settings: BusSettings) -> str:
    """Where we connect, without credentials."""
    if settings.redis_url and settings.redis_url.startswith("unix://"):
        return f"unix socket {urlsplit(settings.redis_url).path}"
    if settings.sentinels:
        return f"the master {settings.sentinel_master!r} of the sentinels {settings.sentinels} db {settings.db}"
    return f"{settings.host}:{settings.port} db {settings.db}"


def _scrub(text: str, settings: BusSettings | None) -> str:
    """Mask the password and the raw URL, should a message ever carry them."""
    if settings is None:
        return text
    if settings.redis_url and settings.redis_url in text:
        text = text.replace(settings.redis_url, str(settings.redacted()["redis_url"]))
    if settings.password:
        text = text.replace(settings.password, "***")
    return text


def _leaf(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (anyio wraps task-group failures)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def exit_code_of(exc: BaseException) -> int:
    """The exit code an error means (see the module docstring)."""
    if isinstance(exc, CommandError):
        return exc.code
    if isinstance(exc, BackendUnavailableError | BackendTimeoutError | AuthenticationError | BackendProtocolError):
        return EXIT_UNREACHABLE
    if isinstance(
        exc,
        ConfigurationError
        | UnknownEventTypeError
        | UnknownSchemaRefError
        | InvalidEntryIdError
        | AmbiguousDeadLetterError
        | ImportStringError,
    ):
        return EXIT_USAGE
    return EXIT_FAILED


def report(command: str, exc: BaseException, settings: BusSettings | None) -> int:
    """Print one line for ``exc`` on stderr and return its exit code."""
    exc = _leaf(exc)
    if isinstance(exc, rex.RedisError | OSError) and not isinstance(exc, BusError):
        exc = translate_error(exc)
    code = exit_code_of(exc)
    message = str(exc) or type(exc).__name__
    if settings is not None and isinstance(exc, BackendUnavailableError | BackendTimeoutError):
        message = f"cannot reach Redis at {_target(settings)} ({message}); check --redis-url or REDIS_URL"
    elif settings is not None and isinstance(exc, BackendProtocolError):
        message = f"{_target(settings)}: {message} (--redis-url or REDIS_URL)"
    elif settings is not None and isinstance(exc, AuthenticationError):
        message = f"Redis at {_target(settings)} refused: {message}"
    return fail(command, _scrub(message, settings), code)


def run_with_bus(
    command: str,
    args: argparse.Namespace,
    body: Callable[[EventBus], Awaitable[int]],
    *,
    connect: bool = True,
) -> int:
    """Build a bus from the flags and environment, run ``body(bus)``, map errors to exit codes.

    The bus is connected first unless ``connect=False`` (the body then validates its input
    before calling ``await bus.connect()``); it is closed afterwards either way.
    """
    try:
        settings = settings_from_args(args)
    except ValueError as exc:  # ConfigurationError, or urlsplit refusing the URL
        message = str(exc)
        url = getattr(args, "redis_url", None)
        if url:
            message = message.replace(url, "<--redis-url>")
        return fail(command, f"invalid settings: {message}", EXIT_USAGE)

    async def go() -> int:
        bus = EventBus(settings)
        try:
            if connect:
                await bus.connect()
            return await body(bus)
        finally:
            await bus.aclose()

    try:
        return anyio.run(go)
    except BrokenPipeError:
        raise
    except (CommandError, BusError, rex.RedisError, OSError, UnknownEventTypeError, UnknownSchemaRefError) as exc:
        return report(command, exc, settings)
    except BaseExceptionGroup as group:
        leaf = _leaf(group)
        if isinstance(leaf, KeyboardInterrupt):
            raise leaf from None
        if isinstance(leaf, Exception) and not isinstance(leaf, CommandError | BusError | rex.RedisError | OSError):
            raise
        return report(command, leaf, settings)


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not >= 0")
    return value


def fail(command: str, message: str, code: int = EXIT_FAILED) -> int:
    """Print ``bus COMMAND: message`` on stderr and return ``code``."""
    print(f"bus {command}: {message}", file=sys.stderr)
    return code


def table(rows: Iterable[Sequence[str]], header: Sequence[str], indent: str = "") -> str:
    """Left-aligned columns separated by two spaces (the last column is not padded)."""
    all_rows = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header) - 1)]
    out = []
    for r in all_rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)] + [r[-1]]
        out.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(out)


def write_json(data: Any, *, indent: bool = True) -> None:
    """Write ``data`` as JSON (indented by default) and a newline to stdout."""
    option = orjson.OPT_INDENT_2 if indent else 0
    sys.stdout.buffer.write(orjson.dumps(data, option=option | orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


def json_line(data: Any) -> None:
    """Write ``data`` as one compact JSON line to stdout and flush (for ``tail --follow | jq``)."""
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


def fmt_ms(ms: int | None) -> str:
    """A duration for humans: ``-``, ``850ms``, ``12.3s``, ``4m05s``, ``3h12m``, ``2d04h``."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def command(name: str, body: Callable[[EventBus, argparse.Namespace], Awaitable[int]], *, connect: bool = True) -> Any:
    """An argparse handler running ``body(bus, args)`` under :func:`run_with_bus`."""

    def handler(args: argparse.Namespace) -> int:
        return run_with_bus(name, args, lambda bus: body(bus, args), connect=connect)

    return handler


def opt(value: int | None) -> str:
    """An optional count for a table cell (``-`` when unknown)."""
    return "-" if value is None else str(value)


def confirm(prompt: str, *, assume_yes: bool) -> bool:
    """True when ``--yes`` was given or the user answers y/yes on an interactive terminal.

    Raises :class:`CommandError` (exit 2) when stdin is not a terminal and ``--yes`` is missing.
    """
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise CommandError("not an interactive terminal: pass --yes to confirm", EXIT_USAGE)
    sys.stderr.write(f"{prompt} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")
