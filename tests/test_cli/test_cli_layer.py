"""The CLI as the top layer: entry points instead of import strings, flags vs environment, and the small gaps
(``--version``, ``bench`` and ``REDIS_URL``, ``status --all``, ``tail --follow`` across a Redis restart)."""

from __future__ import annotations

import ast
import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import Keys
from bus._acl import tenant_acl
from bus.cli import build_parser, main
from bus.cli._bench import DEFAULT_URL, bench_url
from bus.cli._common import settings_from_args
from bus.cli._publish import _retry_advice
from bus.cli._run import _environ
from bus.loader import (
    COMMANDS_GROUP,
    SERVICES_GROUP,
    ImportStringError,
    entry_point_names,
    load_entry_point,
    load_object,
    package_version,
)
from tests.conftest import REAL_REDIS_URL
from tests.test_cli._main import run_main

ROOT = Path(__file__).resolve().parents[2]

#: A service that reports the socket timeout its bus was built with, by crashing with it.
PROBE = """
import anyio

class Probe:
    name = "probe"
    async def run(self, bus, *, task_status=anyio.TASK_STATUS_IGNORED):
        task_status.started()
        raise RuntimeError(f"timeouts {bus.settings.socket_timeout_s} {bus.settings.connect_timeout_s}")

probe = Probe()
"""


# --- the layer: entry points, one loader ------------------------------------------------------


def test_builtin_services_and_demo_come_from_entry_points() -> None:
    """pyproject registers the built-in services and ``bus demo``; the loader resolves them."""
    assert {"email", "notifications", "workflow", "all"} <= set(entry_point_names(SERVICES_GROUP))
    assert load_entry_point(SERVICES_GROUP, "all") is load_object("subscribers.app:all_services")
    assert "demo" in entry_point_names(COMMANDS_GROUP)
    assert "    demo " in build_parser().format_help()
    with pytest.raises(ImportStringError, match="no entry point 'nope'"):
        load_entry_point(SERVICES_GROUP, "nope")


def test_unknown_service_lists_the_registered_names(capsys: pytest.CaptureFixture[str]) -> None:
    """``bus run nope`` exits 2 naming the names found in the services group."""
    code, _, err = run_main(capsys, "run", "nope", "--redis-url", "redis://127.0.0.1:1/0")
    assert code == 2
    assert "unknown service 'nope': use all, email, notifications, workflow or an import string" in err


def test_broken_user_module_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``bus run mod:app`` whose module raises on import exits 2 naming the module and the error, no traceback."""
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("async def handler(delivery: Delivery) -> None: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run_main(capsys, "run", f"{name}:app", "--redis-url", "redis://127.0.0.1:1/0")
    assert code == 2
    assert f"importing '{name}'" in err and "NameError" in err and "Delivery" in err
    assert "Traceback" not in err


def _library_files() -> list[Path]:
    return [p for pkg in ("schemas", "bus", "publishers", "subscribers") for p in (ROOT / pkg).rglob("*.py")]


def test_importlib_only_in_the_loader() -> None:
    """No library module but bus/loader.py loads code by name (importlib); reading package data
    (importlib.resources) is not loading code."""
    users = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            if any(n.startswith("importlib") and n != "importlib.resources" for n in names):
                users.append(str(path.relative_to(ROOT)))
    assert sorted(set(users)) == ["bus/loader.py"]


def test_bus_names_no_upper_package_in_strings() -> None:
    """No string in bus/ is an import string into publishers or subscribers (they come from entry points)."""
    found = []
    for path in (ROOT / "bus").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            if text.startswith(("publishers:", "subscribers.", "subscribers:", "publishers.")):
                found.append((str(path.relative_to(ROOT)), text))
    assert found == []


# --- flags vs environment ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["tail", "X"], ["dlq", "list"], ["publish", "T", "--payload", "{}"]])
def test_absent_flags_leave_the_environment_in_charge(command: list[str]) -> None:
    """Without --timeout-s/--prefix the variables apply; given flags win over them."""
    env = {"BUS_SOCKET_TIMEOUT_S": "7.5", "BUS_CONNECT_TIMEOUT_S": "2.5", "REDIS_PREFIX": "env:"}
    settings = settings_from_args(build_parser().parse_args(command), environ=env)
    assert (settings.socket_timeout_s, settings.connect_timeout_s, settings.prefix) == (7.5, 2.5, "env:")
    flagged = build_parser().parse_args([*command, "--timeout-s", "3", "--prefix", "flag:"])
    settings = settings_from_args(flagged, environ=env)
    assert (settings.socket_timeout_s, settings.connect_timeout_s, settings.prefix) == (3.0, 3.0, "flag:")


def test_run_writes_only_given_flags_into_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bus run``'s services see BUS_SOCKET_TIMEOUT_S from the environment unless --timeout-s is given."""
    monkeypatch.setenv("BUS_SOCKET_TIMEOUT_S", "7.5")
    assert _environ(build_parser().parse_args(["run", "email"]))["BUS_SOCKET_TIMEOUT_S"] == "7.5"
    env = _environ(build_parser().parse_args(["run", "email", "--timeout-s", "3"]))
    assert (env["BUS_SOCKET_TIMEOUT_S"], env["BUS_CONNECT_TIMEOUT_S"]) == ("3.0", "3.0")


@pytest.mark.integration
def test_run_bus_gets_the_socket_timeout_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, test_prefix: str
) -> None:
    """A running service's bus has BUS_SOCKET_TIMEOUT_S when no flag is given, and --timeout-s when one is."""
    name = f"probe_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BUS_SOCKET_TIMEOUT_S", "7.5")
    conn = ["--redis-url", REAL_REDIS_URL, "--prefix", test_prefix]
    code, _, err = run_main(capsys, "run", f"{name}:probe", *conn)
    assert code == 1
    assert "timeouts 7.5 5.0" in err
    code, _, err = run_main(capsys, "run", f"{name}:probe", *conn, "--timeout-s", "3")
    assert "timeouts 3.0 3.0" in err


def test_acl_prefix_defaults_to_redis_prefix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bus acl`` without --prefix uses REDIS_PREFIX; --prefix wins."""
    monkeypatch.setenv("REDIS_PREFIX", "envp:")
    code, out, _ = run_main(capsys, "acl", "--tenant", "acme")
    assert (code, out) == (0, tenant_acl("acme", base_prefix="envp:").command_line() + "\n")
    code, out, _ = run_main(capsys, "acl", "--tenant", "acme", "--prefix", "flagp:")
    assert out == tenant_acl("acme", base_prefix="flagp:").command_line() + "\n"


def test_bench_uses_redis_url_unless_url_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bus bench`` runs on --url, else REDIS_URL, else its own database 11."""
    parse = build_parser().parse_args
    assert bench_url(parse(["bench"]), {}) == DEFAULT_URL
    assert bench_url(parse(["bench"]), {"REDIS_URL": "redis://h:1/3"}) == "redis://h:1/3"
    assert bench_url(parse(["bench", "--url", "redis://h:2/4"]), {"REDIS_URL": "redis://h:1/3"}) == "redis://h:2/4"
    calls: list[list[str]] = []

    def call(argv: list[str]) -> int:
        calls.append(argv)
        return 0

    monkeypatch.setattr("subprocess.call", call)
    monkeypatch.setenv("REDIS_URL", "redis://h:1/3")
    assert main(["bench", "--quick", "--no-write"]) == 0
    ((*_, url_flag, url, quick, no_write),) = calls
    assert (url_flag, url, quick, no_write) == ("--url", "redis://h:1/3", "--quick", "--no-write")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``bus --version`` prints the installed version and exits 0."""
    code, out, _ = run_main(capsys, "--version")
    assert (code, out) == (0, f"bus {package_version()}\n")
    assert package_version() != "0+unknown"


# --- status --all ----------------------------------------------------------------------------


@pytest.mark.integration
async def test_status_hides_empty_streams_unless_all(
    capsys: pytest.CaptureFixture[str], real_client: aioredis.Redis, test_prefix: str
) -> None:
    """A stream holding only an empty group is left out (and counted) by default and listed with --all."""
    keys = Keys(test_prefix)
    empty, full = keys.stream("global", "TICKET_CLOSED"), keys.stream("global", "TICKET_CREATED")
    await real_client.xgroup_create(empty, "converter", id="$", mkstream=True)
    await real_client.xadd(full, {"event": "{}"})
    conn = ("--redis-url", REAL_REDIS_URL, "--prefix", test_prefix, "--no-workflow")

    def cli(*argv: str) -> tuple[int, str, str]:
        return run_main(capsys, *argv, *conn)

    code, out, err = await anyio.to_thread.run_sync(cli, "status")
    assert code == 0
    assert full in out and empty not in out
    assert "1 streams, 0 groups" in err and "1 empty streams hidden (--all shows them)" in err
    code, out, err = await anyio.to_thread.run_sync(cli, "status", "--all")
    assert empty in out and "hidden" not in err
    code, out, _ = await anyio.to_thread.run_sync(cli, "status", "--json")
    doc = json.loads(out)
    assert ([s["stream"] for s in doc["streams"]], doc["hidden_empty_streams"]) == ([full], 1)


# --- tail --follow across a restart -----------------------------------------------------------


async def _blocked_in_xread(url: str) -> bool:
    client = aioredis.Redis.from_url(url)
    try:
        clients: Any = await client.client_list()
        return any(c.get("cmd") == "xread" for c in clients)
    finally:
        await client.aclose()


@pytest.mark.fault
async def test_tail_follow_reconnects_when_redis_restarts(
    capsys: pytest.CaptureFixture[str], redis_process: Any
) -> None:
    """``tail --follow`` keeps going through a Redis restart (saying so on stderr) instead of exiting 3."""
    server = redis_process()
    client = aioredis.Redis.from_url(server.url)
    await client.xadd("t:s", {"n": "1"})
    await client.aclose()
    result: list[tuple[int, str, str]] = []

    def tail() -> None:
        result.append(
            run_main(capsys, "tail", "t:s", "--follow", "--count", "1", "--max", "2", "--redis-url", server.url)
        )

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, tail)
            while True:  # until the tail is blocked in XREAD (or has already exited)
                if result or await _blocked_in_xread(server.url):
                    break
                await anyio.sleep(0.02)
            await anyio.to_thread.run_sync(server.restart)
            writer = aioredis.Redis.from_url(server.url)
            await writer.xadd("t:s", {"n": "2"})
            await writer.aclose()
    ((code, out, err),) = result
    assert code == 0, err
    assert [json.loads(line)["fields"]["n"] for line in out.splitlines()] == ["1", "2"]
    assert "bus tail: lost Redis" in err and "reconnecting in" in err


@pytest.mark.parametrize(
    ("argv", "advice"),
    [
        pytest.param([], "with --event-id E (consumers dedupe on it)", id="one-channel"),
        pytest.param(["--idempotency-key", "k1"], "the same --idempotency-key k1", id="key"),
        pytest.param(["--fanout"], "check with bus tail", id="fanout-without-key"),
        pytest.param(["--fanout", "--idempotency-key", "k1"], "the same --idempotency-key k1", id="fanout-key"),
    ],
)
def test_unknown_outcome_advice_never_shares_one_id_across_copies(argv: list[str], advice: str) -> None:
    """After an unknown publish outcome the advice is a key when given, an event id for one channel, never
    one event id for a fan-out (its copies would share it)."""
    args = build_parser().parse_args(["publish", "T", "--payload", "{}", *argv])
    assert advice in _retry_advice(args, "E")


# --- a server that is not Redis --------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[int]:
    """A plain TCP server on a free port that answers anything with an HTTP error (not Redis)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(5)
    listener.close()


@pytest.mark.parametrize("command", [["status"], ["tail", "TICKET_CREATED"], ["run", "email"]])
def test_non_redis_server_exits_3_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], http_server: int, command: list[str], tmp_path: Path
) -> None:
    """A URL whose port answers HTTP, not RESP, exits 3 naming the host and the protocol, no traceback."""
    extra = ["--directory", str(ROOT / "subscribers" / "demo" / "directory.yaml"), "--outbox", str(tmp_path)]
    argv = [*command, "--redis-url", f"redis://127.0.0.1:{http_server}/0", *(extra if command[0] == "run" else [])]
    code, _, err = run_main(capsys, *argv)
    assert code == 3, err
    assert f"127.0.0.1:{http_server}" in err and "does not speak the Redis protocol" in err
    assert "Traceback" not in err


def test_tail_unknown_type_suggests_the_closest_names(capsys: pytest.CaptureFixture[str]) -> None:
    """``bus tail`` on a misspelt type exits 2 with the closest names, before connecting."""
    code, out, err = run_main(capsys, "tail", "TICKET_CRATED", "--redis-url", "redis://127.0.0.1:1/0")
    assert (code, out) == (2, "")
    assert "unknown event type 'TICKET_CRATED'; did you mean TICKET_CREATED" in err
