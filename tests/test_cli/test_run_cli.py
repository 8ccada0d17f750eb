"""``bus run``: built-in and import-string services, configuration errors, exit codes, logs, signals.

In-process tests call ``main([...])`` from synchronous tests (it runs its own event loop, on the
main thread so the signal receiver can be installed). The daemon tests start ``python -m bus run``
as a subprocess against the real Redis under the test's prefix and send it SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import fakeredis
import pytest
import redis.asyncio as aioredis

from bus import WORKFLOW_STREAM, BusSettings, Delivery, EventBus, Keys, Runner
from bus.cli._run import JsonFormatter, _Redact, load_services
from bus.testing import fast_settings
from publishers import Actor, PublishContext, publish_workflow_event
from subscribers import SubscriberKeys
from subscribers.app import App, AppSettings, all_services, parse_triggers
from subscribers.demo import DIRECTORY_FILE
from subscribers.email import EmailSubscriber, FileSender
from subscribers.notifications import NotificationStore, NotificationSubscriber
from subscribers.workflow import WorkflowConsumer, WorkflowConverter
from tests.conftest import REAL_REDIS_URL, free_port
from tests.test_cli._daemon import Daemon, daemon_env
from tests.test_cli._main import run_main

TICKET = "71717171-0000-4000-8000-000000000008"  # in subscribers/demo/directory.yaml
DANA = "d1d1d1d1-0000-4000-8000-000000000001"
ALICE = "a1a1a1a1-0000-4000-8000-000000000002"

#: A module the tests import by string: services that crash, hang or take their time to stop.
APPS = '''
import anyio

class Crashing:
    name = "crashing"
    async def run(self, bus, *, task_status=anyio.TASK_STATUS_IGNORED):
        task_status.started()
        raise RuntimeError("boom in the service")

class Stubborn:
    """Ignores the first stop for `seconds` (shielded), like a handler that outlives the grace."""
    name = "stubborn"
    def __init__(self, seconds):
        self.seconds = seconds
    async def run(self, bus, *, task_status=anyio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(self.seconds)

crashing = Crashing()
hanging = Stubborn(60)
slow = Stubborn(1.5)
not_a_service = 42

def factory(environ):
    assert environ["BUS_CONSUMER_NAME"] == "from-flag"
    return [Crashing()]
'''


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A throwaway module ``runapps_<random>`` on sys.path; returns its name."""
    name = f"runapps_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


# --- usage errors (exit 2), before any connection ---------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param("nope", "unknown service 'nope'", id="unknown-name"),
        pytest.param("no_such_module_xyz:app", "cannot import 'no_such_module_xyz'", id="missing-module"),
        pytest.param("subscribers.app:missing", "has no attribute 'missing'", id="missing-attribute"),
        pytest.param("subscribers.app:log_trigger", "is not a service", id="coroutine-function"),
        pytest.param("bus:WORKFLOW_STREAM", "is not a service", id="not-a-service"),
    ],
)
def test_bad_target_exits_2(capsys: pytest.CaptureFixture[str], target: str, message: str) -> None:
    """An unknown service or a bad import string exits 2 with a one-line message naming it."""
    code, _, err = run_main(capsys, "run", target, "--redis-url", "redis://127.0.0.1:1/0")
    assert code == 2
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["email"], "BUS_DIRECTORY_FILE", id="email-without-directory"),
        pytest.param(["email", "--directory", str(DIRECTORY_FILE)], "--smtp-host", id="email-without-sender"),
        pytest.param(["all", "--directory", "/nonexistent.yaml", "--outbox", "x"], "cannot read", id="no-file"),
        pytest.param(["workflow"], "nothing to run", id="workflow-without-triggers"),
        pytest.param(
            ["workflow", "--trigger", "TICKET_CREATD=subscribers.app:log_trigger"], "TICKET_CREATED", id="typo"
        ),
        pytest.param(["workflow", "--trigger", "nonsense"], "TYPE=module:function", id="bad-trigger"),
    ],
)
def test_configuration_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    """Missing or invalid configuration of a built-in app exits 2 and says which option fixes it."""
    code, _, err = run_main(capsys, "run", *args, "--redis-url", "redis://127.0.0.1:1/0")
    assert code == 2
    assert message in err


def test_bad_smtp_port_in_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed variable is refused with its name."""
    monkeypatch.setenv("SMTP_PORT", "many")
    with pytest.raises(Exception, match="SMTP_PORT"):
        AppSettings.from_env()


def test_factory_gets_the_environment_with_flags(capsys: pytest.CaptureFixture[str], apps: str) -> None:
    """A factory receives the environment with the flags written into it (flags win)."""
    services = load_services(f"{apps}:factory", {"BUS_CONSUMER_NAME": "from-flag"})
    assert [s.name for s in services] == ["crashing"]  # type: ignore[attr-defined]


# --- Redis unreachable or refusing (exit 3) --------------------------------------------------


def test_unreachable_redis_exits_3_fast(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Nothing listening on the port: exit 3 at once, no retry loop, no traceback.

    The time bound is the behaviour (a retry loop never ends); it is generous for a loaded machine.
    """
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    code, _, err = run_main(
        capsys, "run", "all", "--directory", str(DIRECTORY_FILE), "--outbox", str(tmp_path), "--redis-url", url
    )
    assert code == 3
    assert time.monotonic() - started < 20
    assert "cannot reach Redis" in err
    assert "Traceback" not in err


@pytest.mark.integration
def test_refused_credentials_exit_3_without_the_password(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Wrong credentials: exit 3, and the password appears neither in the message nor in the logs."""
    url = REAL_REDIS_URL.replace("redis://", "redis://nobody:hunter2-secret@")
    code, out, err = run_main(
        capsys, "run", "all", "--directory", str(DIRECTORY_FILE), "--outbox", str(tmp_path), "--redis-url", url
    )
    assert code == 3
    assert "refused" in err
    assert "hunter2-secret" not in out + err


# --- crashes (exit 1) ------------------------------------------------------------------------


@pytest.mark.integration
def test_crashed_service_exits_1(capsys: pytest.CaptureFixture[str], apps: str, test_prefix: str) -> None:
    """A service that raises stops the daemon with exit 1 and names the error."""
    code, _, err = run_main(capsys, "run", f"{apps}:crashing", "--redis-url", REAL_REDIS_URL, "--prefix", test_prefix)
    assert code == 1
    assert "a service crashed: RuntimeError: boom in the service" in err


# --- logs ------------------------------------------------------------------------------------


def test_json_formatter_writes_one_object_with_extras() -> None:
    """The JSON format has ts (UTC, Z), level, logger, message, the record's extras and the exception."""
    record = logging.LogRecord("bus.run", logging.ERROR, __file__, 1, "stopped %s", ("x",), None)
    record.services = "email"
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(record))
    assert data["level"] == "error" and data["logger"] == "bus.run" and data["message"] == "stopped x"
    assert data["services"] == "email"
    assert data["ts"].endswith("Z")
    assert "ValueError: bad" in data["exc"]


def test_json_formatter_prints_the_redacted_traceback_not_the_raw_exception() -> None:
    """A traceback the redacting filter left in exc_text is what the JSON shows, never exc_info formatted again."""
    record = logging.LogRecord("bus.consume", logging.WARNING, __file__, 1, "failed", (), None)
    try:
        raise ConnectionError("redis://svc:hunter2-secret@h")
    except ConnectionError:
        record.exc_info = sys.exc_info()
    record.exc_text = "Traceback ...\nConnectionError: redis://svc:***@h"
    data = json.loads(JsonFormatter().format(record))
    assert data["exc"].endswith("redis://svc:***@h") and "hunter2" not in json.dumps(data)


def test_redaction_filter_masks_secrets() -> None:
    """A secret in a log message is replaced before any handler writes it."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "url %s", ("redis://u:s3cret@h",), None)
    _Redact(["s3cret"]).filter(record)
    assert record.getMessage() == "url redis://u:***@h"


# --- the built-in apps -----------------------------------------------------------------------


def test_all_builds_email_notifications_and_configured_workflow(tmp_path: Path) -> None:
    """``all`` with triggers and the converter: email, notifications, workflow consumer, converter."""
    env = {
        "BUS_DIRECTORY_FILE": str(DIRECTORY_FILE),
        "BUS_EMAIL_OUTBOX": str(tmp_path),
        "BUS_WORKFLOW_TRIGGERS": "TICKET_CREATED=subscribers.app:log_trigger,*=subscribers.app:log_trigger",
        "BUS_WORKFLOW_CONVERTER": "1",
        "BUS_CONVERTER_EVENT_TYPES": "TICKET_CREATED",
        "BUS_WORKFLOW_GROUP": "g1",
    }
    services = all_services(env)
    assert [type(s) for s in services][:2] == [EmailSubscriber, NotificationSubscriber]
    email, _, consumer, converter = services
    assert isinstance(email, EmailSubscriber) and isinstance(email.sender, FileSender)
    assert isinstance(consumer, WorkflowConsumer) and consumer.settings.group == "g1"
    assert set(consumer.triggers) == {"TICKET_CREATED", "*"}
    assert isinstance(converter, WorkflowConverter) and converter.event_types == ("TICKET_CREATED",)


def test_all_without_workflow_configuration_runs_two_services(tmp_path: Path) -> None:
    """Without triggers or converter, ``all`` is email and notifications (no consumer stealing entries)."""
    services = all_services({"BUS_DIRECTORY_FILE": str(DIRECTORY_FILE), "BUS_EMAIL_OUTBOX": str(tmp_path)})
    assert [s.name for s in services] == ["email", "notifications"]  # type: ignore[attr-defined]


def test_parse_triggers_loads_functions() -> None:
    """``TYPE=module:function`` pairs are loaded; ``*`` is accepted as a type."""
    from subscribers.app import log_trigger

    assert parse_triggers("*=subscribers.app:log_trigger") == [("*", log_trigger)]


async def test_app_handlers_run_under_the_runner(test_prefix: str) -> None:
    """An App's handlers are subscribed and called when it runs under the Runner."""
    server = fakeredis.FakeServer()
    seen: list[Delivery] = []
    called = anyio.Event()
    app = App("mine")

    @app.subscribe("TICKET_CREATED")
    async def on_created(delivery: Delivery) -> None:
        seen.append(delivery)
        called.set()

    def factory(settings: BusSettings) -> EventBus:
        return EventBus(settings, client=fakeredis.FakeAsyncRedis(server=server))

    settings = fast_settings(prefix=test_prefix)
    runner = Runner([app], settings, bus_factory=factory, signals=())
    async with anyio.create_task_group() as tg, factory(settings) as producer:
        await tg.start(runner.run)
        await producer.publish("TICKET_CREATED", {"tenantId": str(uuid.uuid4()), "ticketId": TICKET, "userId": DANA})
        with anyio.fail_after(10):
            await called.wait()
        runner.stop()
    assert seen[0].event_type == "TICKET_CREATED"


# --- the daemon as a subprocess --------------------------------------------------------------


@pytest.mark.integration
async def test_bus_run_all_processes_events_and_stops_cleanly_on_sigterm(
    real_client: aioredis.Redis, test_prefix: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """``bus run all`` (a subprocess) handles events published here; on SIGTERM it exits 0 within the grace.

    Exit 0 says the drain ended within the grace by the daemon's own clock; the grace is generous so
    that a loaded machine does not turn a clean stop into exit 4.
    """
    grace = 30.0
    group = f"{test_prefix}workflow"
    outbox = tmp_path / "outbox"
    tenant = str(uuid.uuid4())
    env = daemon_env(test_prefix, BUS_SHUTDOWN_GRACE_S=str(grace), BUS_WORKFLOW_GROUP=group, BUS_WORKFLOW_START="$")
    args = ["all", "--directory", str(DIRECTORY_FILE), "--outbox", str(outbox)]
    args += ["--trigger", "TICKET_CREATED=subscribers.app:log_trigger"]
    daemon = Daemon(args, env)
    daemons.append(daemon)
    try:
        await anyio.to_thread.run_sync(daemon.wait_for, "running 3 service(s)")
        settings = BusSettings.from_url(REAL_REDIS_URL, prefix=test_prefix)
        async with EventBus(settings) as producer:
            ctx = PublishContext(tenant_id=tenant, actor=Actor.user(DANA))
            created = await publish_workflow_event(producer, "TICKET_CREATED", {"ticketId": TICKET}, ctx)
            await publish_workflow_event(producer, "TICKET_ASSIGNED", {"ticketId": TICKET, "newAssigneeId": ALICE}, ctx)
            store = NotificationStore(producer.client, SubscriberKeys(test_prefix))
            sent_stream = Keys(test_prefix).stream("global", "OUTBOUND_EMAIL_SENT")
            with anyio.fail_after(60):
                while True:  # OUTBOUND_EMAIL_SENT is published after the .eml file is written
                    if (
                        len(list(outbox.glob("*.eml"))) >= 3
                        and await store.unread_count(tenant, ALICE) >= 2
                        and await real_client.xlen(sent_stream) >= 3
                    ):
                        break
                    await anyio.sleep(0.05)
            fired = json.loads(
                await anyio.to_thread.run_sync(daemon.wait_for, f"workflow trigger: TICKET_CREATED {created.event_id}")
            )
            assert fired["tenant"] == tenant and fired["correlation_key"] == TICKET
            sent = await real_client.xlen(sent_stream)
            assert sent == 3  # contact + assignee for the new ticket, the assignee for the assignment

        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        code = await anyio.to_thread.run_sync(lambda: daemon.proc.wait(grace + 5))
        took = time.monotonic() - started
        assert code == 0, "".join(daemon.lines)
        assert took < grace
        assert any("SIGTERM received" in line for line in daemon.lines)
        assert all(json.loads(line) for line in daemon.lines)  # every line is JSON
    finally:
        for key in (Keys(test_prefix).marker_events(tenant), Keys(test_prefix).marker_handlers(tenant)):
            await real_client.delete(key, f"{key}:prev", f"{key}:born")
        with contextlib.suppress(Exception):
            await real_client.xgroup_destroy(WORKFLOW_STREAM, group)


@pytest.mark.integration
def test_second_signal_exits_at_once_with_4(apps: str, test_prefix: str, tmp_path: Path, daemons: list[Daemon]) -> None:
    """A service still draining after SIGTERM: a second SIGTERM exits at once with 4.

    The time bound is the behaviour ("at once", not after the 60 s grace); it is generous for a loaded machine.
    """
    env = daemon_env(test_prefix, PYTHONPATH=str(tmp_path), BUS_SHUTDOWN_GRACE_S="60")
    daemon = Daemon([f"{apps}:hanging"], env)
    daemons.append(daemon)
    daemon.wait_for("running 1 service(s)")
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.wait_for("SIGTERM received")
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 4
    assert time.monotonic() - started < 20
    assert any("second SIGTERM" in line for line in daemon.lines)


@pytest.mark.integration
def test_shutdown_over_the_grace_period_exits_4(
    apps: str, test_prefix: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """A service that needs longer than the grace period to stop: exit 4 (it was not drained in time)."""
    env = daemon_env(test_prefix, PYTHONPATH=str(tmp_path), BUS_SHUTDOWN_GRACE_S="0.5")
    daemon = Daemon([f"{apps}:slow"], env)
    daemons.append(daemon)
    daemon.wait_for("running 1 service(s)")
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(15) == 4
    assert any("over the 0.5s grace period" in line for line in daemon.lines)


@pytest.mark.integration
@pytest.mark.slow
async def test_idle_workflow_daemon_logs_no_read_timeouts(
    real_client: aioredis.Redis, test_prefix: str, daemons: list[Daemon]
) -> None:
    """An idle ``bus run workflow --trigger ... --converter`` without --timeout-s logs no warning for 15 s: the
    socket timeout comes from the environment or its default, not from a flag default equal to the 5 s
    blocking read (which logged a read timeout every ~6 s)."""
    group = f"{test_prefix}workflow"
    env = daemon_env(test_prefix, BUS_WORKFLOW_GROUP=group, BUS_WORKFLOW_START="$")
    daemon = Daemon(["workflow", "--trigger", "*=subscribers.app:log_trigger", "--converter"], env)
    daemons.append(daemon)
    try:
        await anyio.to_thread.run_sync(daemon.wait_for, "running 2 service(s)")
        # An absence over a stretch of time: the stretch is the specification (15 s idle), not a guess.
        idle = await anyio.to_thread.run_sync(lambda: _still_running_after(daemon, 15.0))
        assert idle, "".join(daemon.lines)
        levels = [json.loads(line)["level"] for line in daemon.lines]
        assert [level for level in levels if level not in ("debug", "info")] == [], "".join(daemon.lines)
    finally:
        daemon.stop()
        with contextlib.suppress(Exception):
            await real_client.xgroup_destroy(WORKFLOW_STREAM, group)


def _still_running_after(daemon: Daemon, seconds: float) -> bool:
    """True when the daemon is still running ``seconds`` from now (waits on the process, not a sleep)."""
    try:
        daemon.proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


@pytest.mark.parametrize(
    ("flag", "env", "traced"),
    [
        pytest.param(None, {}, False, id="off-by-default"),
        pytest.param(None, {"BUS_OTEL": "1"}, True, id="env"),
        pytest.param(True, {}, True, id="flag"),
        pytest.param(None, {"BUS_OTEL": "0"}, False, id="env-off"),
    ],
)
def test_otel_flag_and_variable_turn_tracing_on(flag: bool | None, env: dict[str, str], traced: bool) -> None:
    """--otel or BUS_OTEL=1 gives the daemons' buses a Tracing (global tracer provider); else none."""
    from bus.cli._run import _tracing_from
    from bus.observability import Tracing

    tracing = _tracing_from(argparse.Namespace(otel=flag), env)
    assert isinstance(tracing, Tracing) if traced else tracing is None


def test_otel_without_the_extra_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """BUS_OTEL=1 without opentelemetry installed names the extra to install (ConfigurationError)."""
    from bus import ConfigurationError
    from bus.cli._run import _tracing_from

    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "bus.observability._tracing", raising=False)
    with pytest.raises(ConfigurationError, match=r"psa-event-bus\[otel\]"):
        _tracing_from(argparse.Namespace(otel=None), {"BUS_OTEL": "1"})
