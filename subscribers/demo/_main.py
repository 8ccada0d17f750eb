"""``bus demo``: publish the burst, run every subscriber in-process, wait until all is processed, report.

Backends: without a Redis URL (``--redis-url`` or ``REDIS_URL``), or with ``--fake``, an embedded
fakeredis server in this process; else that Redis, under a fresh ``demo-<random>:`` prefix and a
fresh tenant id. The workflow stream is never prefixed (as in the reference), so on a real Redis
the demo reads it in a consumer group of its own, created at ``$`` (only entries written from now
on), and at the end deletes that group, its workflow entries (found by tenant), its prefixed keys
and its tenant's processed markers; ``--keep`` keeps the data and says where it is.

Waiting polls each consumer group (nothing pending, nothing unread) in order of the data flow
(email, notifications, converter, workflow) under a deadline: no fixed sleeps.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import redis.asyncio as aioredis
import redis.exceptions as rex

from bus import (
    WORKFLOW_STREAM,
    BackendError,
    BusError,
    BusSettings,
    ConfigurationError,
    EventBus,
    Keys,
    Runner,
    Service,
    create_client,
)

from .._keys import SubscriberKeys
from ..email import EmailSettings, EmailSubscriber, FileDirectory, FileSender
from ..notifications import NotificationStore, NotificationSubscriber
from ..workflow import ConverterSettings, WorkflowConsumer, WorkflowConsumerSettings, WorkflowConverter
from ._report import LIFECYCLE_TYPES, DemoReport, EmailRow, NotificationRow, PushRow, render_text
from ._scenario import EVENT_TYPES, publish_burst
from ._triggers import DemoTriggers

__all__ = ["DIRECTORY_FILE", "DemoOptions", "Progress", "build_parser", "main", "run_demo"]

log = logging.getLogger("subscribers.demo")

DIRECTORY_FILE = Path(__file__).with_name("directory.yaml")

#: Consume settings that make a demo snappy (short blocks; the rest the reference's defaults); the
#: workflow services read with the bus's timing.
_FAST: dict[str, Any] = {
    "block_ms": 200,
    "read_timeout_s": 2.0,
    "claim_idle_ms": 5000,
    "reclaim_interval_s": 1.0,
    "handler_timeout_s": 10.0,
    "retry_backoff_s": 0.05,
    "retry_backoff_max_s": 0.5,
    "shutdown_grace_s": 2.0,
}


class DemoOptions:
    """Parsed flags."""

    def __init__(self, ns: argparse.Namespace) -> None:
        self.out = Path(ns.out)
        self.redis_url: str | None = None if ns.fake else (ns.redis_url or os.environ.get("REDIS_URL") or None)
        self.prefix: str | None = ns.prefix
        self.keep: bool = ns.keep
        self.deadline_s: float = ns.deadline_s
        self.json: bool = ns.json


class Progress:
    """The step the demo is in (named when something fails)."""

    def __init__(self) -> None:
        self.stage = "setup"


class _Backend:
    """Where the demo's buses connect: an embedded fakeredis server or a real Redis."""

    def __init__(self, settings: BusSettings, fake: bool) -> None:
        self.settings = settings
        self.fake = fake
        self._server: Any = None
        self._clients: list[aioredis.Redis] = []
        if fake:
            import fakeredis

            self._server = fakeredis.FakeServer()

    @property
    def name(self) -> str:
        if self.fake:
            return "an embedded fakeredis server (no REDIS_URL)"
        return f"Redis at {self.settings.host}:{self.settings.port} db {self.settings.db}"

    def client(self) -> aioredis.Redis:
        if self.fake:
            import fakeredis

            client: aioredis.Redis = fakeredis.FakeAsyncRedis(server=self._server)
        else:
            client = create_client(self.settings)
        self._clients.append(client)
        return client

    def bus(self, settings: BusSettings) -> EventBus:
        return EventBus(settings, client=self.client())

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def _id(value: Any) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else str(value)
    ms, _, seq = text.partition("-")
    return (int(ms or 0), int(seq or 0))


async def _unfinished(client: aioredis.Redis, checks: Sequence[tuple[str, str, str]]) -> list[str]:
    """``"what: stream (group)"`` for every group with pending or unread entries (missing streams are idle)."""
    pipe = client.pipeline(transaction=False)
    for _, stream, _group in checks:
        pipe.xinfo_stream(stream)
        pipe.xinfo_groups(stream)
    replies = await pipe.execute(raise_on_error=False)
    busy: list[str] = []
    for i, (what, stream, group) in enumerate(checks):
        info, groups = replies[2 * i], replies[2 * i + 1]
        if isinstance(info, Exception) or isinstance(groups, Exception):
            continue  # no such stream yet: nothing to read
        last = _id(info.get("last-generated-id") or b"0-0")
        for g in groups:
            name = g["name"].decode() if isinstance(g["name"], bytes) else str(g["name"])
            if name == group and (int(g["pending"]) > 0 or _id(g["last-delivered-id"]) < last):
                busy.append(f"{what}: {stream} ({group})")
    return busy


async def _wait(predicate: Callable[[], Any], deadline: float, interval: float = 0.02) -> bool:
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await anyio.sleep(interval)
    return bool(await predicate())


def _new_emails(folder: Path, before: set[str]) -> list[EmailRow]:
    rows: list[EmailRow] = []
    if not folder.is_dir():
        return rows
    parser = BytesHeaderParser()
    for path in sorted(folder.glob("*.eml")):
        if path.name in before:
            continue
        headers = parser.parsebytes(path.read_bytes())
        to = str(headers.get("To", "")).rsplit("<", 1)[-1].rstrip(">")
        rows.append(EmailRow(to=to, subject=str(headers.get("Subject", "")), file=path.name))
    return sorted(rows, key=lambda e: (e.to, e.subject))


async def _collect_pushes(pubsub: Any, into: list[tuple[str, bytes]]) -> None:
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
        if message is not None and message.get("type") == "pmessage":
            channel = message["channel"]
            into.append((channel.decode() if isinstance(channel, bytes) else str(channel), message["data"]))
        await anyio.lowlevel.checkpoint()


async def _cleanup(
    client: aioredis.Redis, settings: BusSettings, tenant: str, groups: Sequence[str], since: Any
) -> int:
    """Delete the demo's keys, its workflow entries and groups; returns the number of keys deleted."""
    for group in groups:
        try:
            await client.xgroup_destroy(WORKFLOW_STREAM, group)
        except Exception as exc:  # the stream may be gone
            log.debug("could not destroy group %s: %s", group, exc)
    # Our processed markers live under the prefix too; the reference's marker sets are never touched.
    keys = [key async for key in client.scan_iter(match=f"{settings.prefix}*", count=1000)]
    deleted = 0
    for i in range(0, len(keys), 500):
        deleted += int(await client.delete(*keys[i : i + 500]))
    rows: Any = await client.xrange(WORKFLOW_STREAM, min=f"({since.decode() if isinstance(since, bytes) else since}")
    ours = [entry_id for entry_id, fields in rows if fields.get(b"tenant") == tenant.encode()]
    if ours:
        await client.xdel(WORKFLOW_STREAM, *ours)
    return deleted


async def run_demo(opts: DemoOptions, progress: Progress | None = None) -> DemoReport:
    """Run the whole demo and return its report (the steps already checked)."""
    progress = progress or Progress()
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    tenant = str(uuid.uuid4())
    fake = opts.redis_url is None
    prefix = opts.prefix or ("alga-psa:" if fake else f"demo-{run_id}:")
    settings = (
        BusSettings.build(prefix=prefix, **_FAST)
        if fake
        else BusSettings.from_url(opts.redis_url or "", prefix=prefix, **_FAST)
    )
    backend = _Backend(settings, fake)
    emails_folder = opts.out / "emails"
    report = DemoReport(backend=backend.name, prefix=prefix, tenant=tenant, emails_folder=str(emails_folder))
    before = {p.name for p in emails_folder.glob("*.eml")} if emails_folder.is_dir() else set()

    directory = FileDirectory.from_path(DIRECTORY_FILE)
    triggers = DemoTriggers(tenant)
    email = EmailSubscriber(
        directory,
        FileSender(emails_folder),
        settings=EmailSettings(
            from_address="servicedesk@msp.example",
            from_name="MSP Service Desk",
            product_name="PSA",
            base_url="https://psa.msp.example",
        ),
    )
    notifications = NotificationSubscriber(directory)
    workflow_group = f"demo-workflow-{run_id}"
    consumer = WorkflowConsumer(WorkflowConsumerSettings(group=workflow_group))
    triggers.register(consumer)
    converter = WorkflowConverter(ConverterSettings(event_types=EVENT_TYPES, group=f"demo-converter-{run_id}"))
    services: list[Service] = [email, notifications, converter, consumer]
    pushes: list[tuple[str, bytes]] = []
    try:
        progress.stage = "connect"
        async with backend.bus(settings) as producer:
            client = producer.client
            # Only workflow entries written from now on: a real Redis's stream may hold anyone's.
            await client.xgroup_create(WORKFLOW_STREAM, workflow_group, id="$", mkstream=True)
            last: Any = await client.xrevrange(WORKFLOW_STREAM, count=1)
            since = last[0][0] if last else b"0-0"
            pubsub = backend.client().pubsub()
            await pubsub.psubscribe(producer.keys.notification_channel(tenant, "*"))
            runner = Runner(services, settings, bus_factory=backend.bus, signals=())
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_collect_pushes, pubsub, pushes)
                    progress.stage = "start services"
                    await tg.start(runner.run)
                    progress.stage = "publish"
                    report.published = await publish_burst(producer, tenant, datetime.now(UTC))
                    progress.stage = "processing"
                    await _await_processing(report, runner, producer, consumer, converter, opts.deadline_s, started)
                    progress.stage = "report"
                    expected_pushes = sum(1 for n in report.notifications if n.status == "delivered")
                    await _wait(lambda: _true(len(pushes) >= expected_pushes), started + opts.deadline_s)
                    report.pushes = [
                        PushRow(user=_user_name(directory, channel.rsplit(":", 1)[-1]), title=_title(data))
                        for channel, data in pushes
                    ]
                    report.triggers = list(triggers.fired)
                    report.expected_triggers = dict(triggers.expected(report.published))
                    report.converter = dict(converter.stats)
                    report.emails = _new_emails(emails_folder, before)
                    runner.stop()
                    tg.cancel_scope.cancel()
            finally:
                progress.stage = "cleanup"
                await pubsub.aclose()
                if not fake:
                    if opts.keep:
                        await client.xgroup_destroy(WORKFLOW_STREAM, workflow_group)
                        report.data = (
                            f"   data kept: keys under {prefix!r}; workflow entries of tenant {tenant} in "
                            f"{WORKFLOW_STREAM}"
                        )
                    else:
                        with anyio.CancelScope(shield=True):
                            n = await _cleanup(client, settings, tenant, [workflow_group], since)
                        report.data = f"   cleaned up: {n} keys under {prefix!r} and the demo's workflow entries"
    finally:
        await backend.aclose()
    report.seconds = time.monotonic() - started
    report.check()
    return report


async def _true(value: bool) -> bool:
    return value


async def _await_processing(
    report: DemoReport,
    runner: Runner,
    producer: EventBus,
    consumer: WorkflowConsumer,
    converter: WorkflowConverter,
    deadline_s: float,
    started: float,
) -> None:
    """Poll the groups until everything is processed (or the deadline), then read the outcomes."""
    email_bus, notification_bus, converter_bus = runner.buses[0], runner.buses[1], runner.buses[2]
    group = producer.settings.consumer_group
    checks = [("email", s.stream, group) for s in email_bus.subscriptions]
    checks += [("notifications", s.stream, group) for s in notification_bus.subscriptions]
    checks += [("converter", stream, converter.settings.group) for stream in converter.streams(converter_bus)]
    checks.append(("workflow", consumer.settings.stream, consumer.settings.group))
    busy: list[str] = []

    async def done() -> bool:
        nonlocal busy
        busy = await _unfinished(producer.client, checks)
        return not busy

    report.drained = await _wait(done, started + deadline_s)
    report.pending = busy
    client, keys, tenant = producer.client, producer.keys, report.tenant
    for event_type in LIFECYCLE_TYPES:
        report.lifecycle[event_type] = int(await client.xlen(keys.stream("global", event_type)))
    store = NotificationStore(client, SubscriberKeys(keys.prefix))
    directory = FileDirectory.from_path(DIRECTORY_FILE)
    for tenant_records in directory.data.tenants.values():
        for user in tenant_records.users:
            for n in await store.list(tenant, user.id):
                report.notifications.append(NotificationRow(user=user.name, title=n.title, status=n.delivery_status))
    streams = {stream for _, stream, _ in checks if stream != WORKFLOW_STREAM}
    dead = 0
    for stream in sorted(streams):
        dead += int(await client.xlen(Keys.dead_letter(stream)))
    for loop in (consumer.loop, converter.loop):
        dead += loop.stats.dead_lettered if loop is not None else 0
    report.dead_letters = dead


def _user_name(directory: FileDirectory, user_id: str) -> str:
    for records in directory.data.tenants.values():
        for user in records.users:
            if user.id == user_id:
                return user.name
    return user_id


def _title(data: Any) -> str:
    try:
        return str(msgspec.json.decode(data).get("title", ""))
    except (msgspec.DecodeError, AttributeError):
        return "?"


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _failed(stage: str, exc: BaseException) -> int:
    """Print why the demo stopped and return its exit code."""
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    if isinstance(exc, ConfigurationError):
        print(f"bus demo: invalid settings: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, BackendError | rex.ConnectionError | rex.TimeoutError):
        print(f"bus demo: step '{stage}' failed: Redis: {exc}; check --redis-url or REDIS_URL", file=sys.stderr)
        return 3
    print(f"bus demo: step '{stage}' failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    if not isinstance(exc, BusError | OSError | rex.RedisError):
        log.error("unexpected error", exc_info=exc)
    return 1


def build_parser() -> argparse.ArgumentParser:
    """``bus demo``'s flags (``bus demo`` forwards its own to :func:`main`)."""
    p = argparse.ArgumentParser(prog="bus demo", description="psa-event-bus demo (see docs/index.md, 'The demo').")
    p.add_argument("--out", default="demo-out", help="output folder; emails go to OUT/emails (default demo-out)")
    p.add_argument("--redis-url", help="a real Redis (default REDIS_URL; none: embedded fakeredis)")
    p.add_argument("--fake", action="store_true", help="embedded fakeredis even when REDIS_URL is set")
    p.add_argument("--prefix", help="key prefix (real Redis default demo-<random>:)")
    p.add_argument("--keep", action="store_true", help="keep the data on a real Redis")
    p.add_argument("--deadline-s", type=float, default=30.0, help="give up waiting after (default 30)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="count", default=0, help="the services' logs (-vv: debug)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when every step worked, 1 a step failed, 2 usage, 3 Redis unreachable."""
    ns = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(("WARNING", "INFO", "DEBUG")[min(ns.verbose, 2)])
    try:
        opts = DemoOptions(ns)
        progress = Progress()
        try:
            report = anyio.run(run_demo, opts, progress)
        except Exception as exc:  # a group from a task group, or the error itself
            return _failed(progress.stage, _leaf(exc))
        if opts.json:
            sys.stdout.buffer.write(report.to_json() + b"\n")
            sys.stdout.flush()
        else:
            print(render_text(report))
        if not report.ok:
            failed = ", ".join(s.name for s in report.steps if not s.ok) or "setup"
            print(f"bus demo: FAILED step(s): {failed}", file=sys.stderr)
            return 1
        return 0
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
