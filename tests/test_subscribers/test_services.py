"""The services end to end: published events reach them through the bus consume loop (bus.run)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import fakeredis
import pytest

from bus import BusSettings, EventBus
from publishers import Actor, PublishContext, publish_event, publish_workflow_event
from subscribers.email import EmailSettings, EmailSubscriber, FileDirectory, RetryPolicy, SmtpSender, SmtpSettings
from subscribers.notifications import NotificationSubscriber

from ._data import ALICE, EMAILS, TENANT, TICKET, URSULA, domain
from .conftest import SmtpServer, published, wait_until

FAST: dict[str, Any] = {
    "block_ms": 100,
    "read_timeout_s": 2.0,
    "claim_idle_ms": 200,
    "reclaim_interval_s": 0.05,
    "handler_timeout_s": 10.0,
    "retry_backoff_s": 0.0,
    "retry_backoff_max_s": 0.0,
    "shutdown_grace_s": 2.0,
}


@asynccontextmanager
async def two_buses(test_prefix: str) -> AsyncIterator[tuple[EventBus, EventBus]]:
    """A producer bus and a service bus on one fakeredis server."""
    server = fakeredis.FakeServer()
    settings = BusSettings.build(prefix=test_prefix, **FAST)
    clients = [fakeredis.FakeAsyncRedis(server=server) for _ in range(2)]
    async with EventBus(settings, client=clients[0]) as producer, EventBus(settings, client=clients[1]) as service:
        yield producer, service
    for c in clients:
        await c.aclose()


@asynccontextmanager
async def running(service: Any, bus: EventBus) -> AsyncIterator[None]:
    """Run a service until the block ends."""
    async with anyio.create_task_group() as tg:
        await tg.start(service.run, bus)
        yield
        tg.cancel_scope.cancel()


async def test_email_service_consumes_its_channel(
    test_prefix: str, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """TICKET_ASSIGNED published with the reference's fan-out is mailed by the running email service."""
    sender = SmtpSender(SmtpSettings(host=smtp_server.host, port=smtp_server.port, security="none"))
    service = EmailSubscriber(directory, sender, settings=EmailSettings(retry=RetryPolicy.no_wait()))
    async with two_buses(test_prefix) as (producer, bus), running(service, bus):
        ctx = PublishContext(tenant_id=TENANT, actor=Actor.user(URSULA))
        await publish_workflow_event(producer, "TICKET_ASSIGNED", {"ticketId": TICKET, "newAssigneeId": ALICE}, ctx)

        async def mailed() -> bool:
            return bool(smtp_server.recorder.messages)

        await wait_until(mailed)
        await wait_until(lambda: _sent(producer))
    assert smtp_server.recorder.recipients() == {EMAILS[ALICE]}


async def _sent(bus: EventBus) -> bool:
    return bool(await published(bus, "OUTBOUND_EMAIL_SENT"))


async def test_notification_service_consumes_its_channel(test_prefix: str, directory: FileDirectory) -> None:
    """TICKET_UPDATED published with the fan-out becomes stored notifications for the ticket's people."""
    service = NotificationSubscriber(directory)
    async with two_buses(test_prefix) as (producer, bus), running(service, bus):
        await publish_event(producer, "TICKET_UPDATED", domain(ticketId=TICKET, updatedByUserId=URSULA))
        store = service.store(bus)

        async def stored() -> bool:
            return await store.unread_count(TENANT, ALICE) == 1

        await wait_until(stored)


@pytest.mark.parametrize("service_name", ["email", "notifications"])
async def test_run_reports_started_after_subscribing(
    service_name: str, test_prefix: str, directory: FileDirectory
) -> None:
    """run() subscribes every configured type on the service's channel before reporting started."""
    from subscribers.email import FileSender

    service: Any = (
        EmailSubscriber(directory, FileSender("/nonexistent"))
        if service_name == "email"
        else NotificationSubscriber(directory)
    )
    async with two_buses(test_prefix) as (_, bus), running(service, bus):
        subs = bus.subscriptions
        assert {s.event_type for s in subs} == set(service.settings.event_types)
        assert {s.channel for s in subs} == {service.settings.channel}
