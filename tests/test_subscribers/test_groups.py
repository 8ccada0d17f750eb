"""Consumer groups safe by default: a user's consumer beside the email service takes none of its entries."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import BusSettings, Delivery, EventBus, group_peers
from publishers import publish_event
from subscribers.app import App
from subscribers.email import EmailSettings, EmailSubscriber, FileDirectory, RetryPolicy, SmtpSender, SmtpSettings

from ._data import TICKET, URSULA, domain
from .conftest import SmtpServer, wait_until

CONSUME_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consuming.py"
FAST: dict[str, Any] = {
    "block_ms": 100,
    "read_timeout_s": 2.0,
    "claim_idle_ms": 5000,
    "reclaim_interval_s": 0.05,
    "retry_backoff_s": 0.0,
    "retry_backoff_max_s": 0.0,
    "shutdown_grace_s": 2.0,
}
EVENTS = 10


def readme_consume_example() -> tuple[str, str, str, str]:
    """The docs' "Consuming" example's (examples/consuming.py) group, event type, channel and subscriber id."""
    section = CONSUME_EXAMPLE.read_text(encoding="utf-8")
    group = re.search(r'EventBus\(BusSettings\.from_env\(consumer_group="([^"]+)"\)\)', section)
    sub = re.search(r'@bus\.subscriber\("(\w+)", channel="([^"]+)", subscriber_id="([^"]+)"\)', section)
    assert group is not None and sub is not None, "the consume example changed shape"
    return group[1], sub[1], sub[2], sub[3]


@asynccontextmanager
async def running(service: Any, bus: EventBus) -> AsyncIterator[None]:
    """Run a service (or ``bus.run``) until the block ends."""
    async with anyio.create_task_group() as tg:
        await tg.start(service.run, bus) if service is not None else await tg.start(bus.run)
        yield
        tg.cancel_scope.cancel()


def email_service(smtp_server: SmtpServer, directory: FileDirectory) -> EmailSubscriber:
    """The email service as ``bus run email`` builds it, mailing to the test's SMTP server."""
    sender = SmtpSender(SmtpSettings(host=smtp_server.host, port=smtp_server.port, security="none"))
    return EmailSubscriber(directory, sender, settings=EmailSettings(retry=RetryPolicy.no_wait()))


def mailed_event_ids(smtp_server: SmtpServer) -> set[str]:
    """The event ids of the mails the SMTP server accepted."""
    return {str(m["X-PSA-Event-Id"]) for m in smtp_server.recorder.messages}


async def test_readme_consumer_beside_email_service_takes_nothing(
    backend: aioredis.Redis, test_prefix: str, smtp_server: SmtpServer, directory: FileDirectory
) -> None:
    """The docs' consume example (its own group) and the email service (event-processors) each handle every event."""
    group, event_type, channel, subscriber_id = readme_consume_example()
    assert group != "event-processors"
    seen: list[str] = []
    service_settings = BusSettings.build(prefix=test_prefix, **FAST)
    example_settings = BusSettings.build(prefix=test_prefix, consumer_group=group, **FAST)
    async with (
        EventBus(service_settings, client=backend) as producer,
        EventBus(service_settings, client=backend) as service_bus,
        EventBus(example_settings, client=backend) as example_bus,
    ):

        @example_bus.subscriber(event_type, channel=channel, subscriber_id=subscriber_id)
        async def on_ticket(delivery: Delivery) -> None:
            seen.append(delivery.event_id)

        async with running(email_service(smtp_server, directory), service_bus), running(None, example_bus):
            results = [
                await publish_event(producer, event_type, domain(ticketId=TICKET, createdByUserId=URSULA))
                for _ in range(EVENTS)
            ]
            copies = {r.event_id_of(producer.keys.stream(channel, event_type)) for r in results}

            async def both_done() -> bool:
                return mailed_event_ids(smtp_server) == copies and set(seen) == copies

            await wait_until(both_done, timeout_s=20)
    assert len(copies) == EVENTS and sorted(seen) == sorted(copies)  # each once, none taken from the other
    assert len(smtp_server.recorder.messages) == 2 * EVENTS  # the contact and the assignee of each ticket


async def test_app_consumes_in_its_own_group(fake_client: aioredis.Redis, test_prefix: str) -> None:
    """App("billing") consumes in group "billing" whatever REDIS_EVENT_CONSUMER_GROUP says; group= overrides."""
    assert App("billing").group == "billing" and App("billing", group="shared").group == "shared"
    app = App("billing")

    @app.subscribe("TICKET_CREATED")
    async def on_ticket(delivery: Delivery) -> None: ...

    settings = BusSettings.build(prefix=test_prefix, consumer_group="event-processors", **FAST)
    async with EventBus(settings, client=fake_client) as bus, running(app, bus):
        assert bus.settings.consumer_group == "billing"
        groups = await fake_client.xinfo_groups(bus.keys.stream("global", "TICKET_CREATED"))
    assert [g["name"] for g in groups] == [b"billing"]


async def test_app_in_a_running_services_group_warns(
    backend: aioredis.Redis,
    test_prefix: str,
    smtp_server: SmtpServer,
    directory: FileDirectory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app subscribing in the email service's group logs a warning naming the group, stream and consumer."""
    settings = BusSettings.build(prefix=test_prefix, **FAST)
    shared = App("audit", group="event-processors")
    own = App("audit-own")
    for app in (shared, own):
        app.subscribe("TICKET_CREATED", _noop, channel="emailservice::v7")
    async with (
        EventBus(settings, client=backend) as producer,
        EventBus(settings, client=backend) as service_bus,
        running(email_service(smtp_server, directory), service_bus),
    ):
        # Redis 7.0 lists a consumer once it received an entry: let the service handle one first.
        await publish_event(producer, "TICKET_CREATED", domain(ticketId=TICKET, createdByUserId=URSULA))
        stream = producer.keys.stream("emailservice::v7", "TICKET_CREATED")

        async def service_listed() -> bool:
            return bool(await group_peers(producer, "event-processors", streams=[stream]))

        await wait_until(service_listed, timeout_s=10)
        for app in (own, shared):
            async with EventBus(settings, client=backend) as bus:
                with caplog.at_level(logging.INFO, logger="subscribers.groups"):
                    async with running(app, bus):
                        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "audit subscribes in group 'event-processors'" in warnings[0]
    assert stream in warnings[0] and service_bus.consumer_name in warnings[0]


async def _noop(delivery: Delivery) -> None:
    """A handler that does nothing."""
