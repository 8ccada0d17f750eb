"""In-app notifications: store, pub/sub push, NOTIFICATION_* events, mark_read."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import msgspec
import pytest

from bus import EventBus
from subscribers.email import FileDirectory
from subscribers.notifications import NotificationSettings, NotificationSubscriber, NotificationTemplates

from ._data import ALICE, BOB, EMAIL_CASES, INVOICE, PORTAL, TENANT, TICKET, URSULA, domain, legacy
from .conftest import published


async def next_message(pubsub: Any, timeout_s: float = 3.0) -> dict[str, Any]:
    """The next pub/sub message (not a subscribe confirmation), within ``timeout_s``."""
    with anyio.fail_after(timeout_s):
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if msg is not None:
                return dict(msg)


def assigned_to_alice() -> dict[str, Any]:
    """TICKET_ASSIGNED of the test ticket to Alice, by Ursula."""
    return domain(ticketId=TICKET, newAssigneeId=ALICE, assignedByUserId=URSULA)


async def test_broadcast_store_and_delivered(any_bus: EventBus, directory: FileDirectory) -> None:
    """A live subscriber gets the push; the notification is stored unread; SENT then DELIVERED are published."""
    channel = any_bus.keys.notification_channel(TENANT, ALICE)
    pubsub = any_bus.client.pubsub()
    await pubsub.subscribe(channel)
    try:
        service = NotificationSubscriber(directory)
        [note] = await service.handle(any_bus, "TICKET_ASSIGNED", str(uuid.uuid4()), assigned_to_alice())
        msg = await next_message(pubsub)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    pushed = msgspec.json.decode(msg["data"])
    assert msg["channel"] in (channel, channel.encode())
    assert pushed["internal_notification_id"] == note.internal_notification_id
    assert pushed["title"] == "Ticket #1001 assigned to you"
    assert pushed["link"] == f"/msp/tickets/{TICKET}"
    store = service.store(any_bus)
    [stored] = await store.list(TENANT, ALICE)
    assert stored.title == pushed["title"] and not stored.is_read and stored.delivery_status == "delivered"
    assert await store.unread_count(TENANT, ALICE) == 1
    [sent] = await published(any_bus, "NOTIFICATION_SENT")
    [delivered] = await published(any_bus, "NOTIFICATION_DELIVERED")
    assert sent["notificationId"] == delivered["notificationId"] == note.internal_notification_id
    assert sent["channel"] == "in_app" and sent["recipientId"] == ALICE and sent["contextId"] == TICKET
    assert await published(any_bus, "NOTIFICATION_FAILED") == []


async def test_nobody_listening_is_sent_not_delivered(fake_bus: EventBus, directory: FileDirectory) -> None:
    """With no live subscriber the notification waits in the inbox: SENT, no DELIVERED, no FAILED."""
    [note] = await NotificationSubscriber(directory).handle(
        fake_bus, "TICKET_ASSIGNED", str(uuid.uuid4()), assigned_to_alice()
    )
    assert note.delivery_status == "stored"
    assert len(await published(fake_bus, "NOTIFICATION_SENT")) == 1
    assert await published(fake_bus, "NOTIFICATION_DELIVERED") == []
    assert await published(fake_bus, "NOTIFICATION_FAILED") == []


async def test_broadcast_failure_publishes_failed(fake_bus: EventBus, directory: FileDirectory) -> None:
    """When the push errors, NOTIFICATION_FAILED (retryable) follows SENT and the inbox keeps it."""

    async def broken(channel: str, message: bytes) -> int:
        raise ConnectionError("pub/sub connection reset")

    service = NotificationSubscriber(directory, broadcaster=broken)
    [note] = await service.handle(fake_bus, "TICKET_ASSIGNED", str(uuid.uuid4()), assigned_to_alice())
    [failed] = await published(fake_bus, "NOTIFICATION_FAILED")
    assert failed["notificationId"] == note.internal_notification_id
    assert failed["retryable"] is True and "connection reset" in failed["errorMessage"]
    assert failed["errorCode"] == "ConnectionError"
    assert note.delivery_status == "failed"
    assert await published(fake_bus, "NOTIFICATION_DELIVERED") == []
    assert await service.store(fake_bus).unread_count(TENANT, ALICE) == 1


async def test_mark_read_publishes_read_once(fake_bus: EventBus, directory: FileDirectory) -> None:
    """mark_read flips the unread state and publishes NOTIFICATION_READ once; unknown ids are refused."""
    service = NotificationSubscriber(directory)
    [note] = await service.handle(fake_bus, "TICKET_ASSIGNED", str(uuid.uuid4()), assigned_to_alice())
    nid = note.internal_notification_id
    assert await service.mark_read(fake_bus, TENANT, ALICE, nid, client="web")
    assert not await service.mark_read(fake_bus, TENANT, ALICE, nid)
    assert not await service.mark_read(fake_bus, TENANT, BOB, nid)  # not Bob's
    [read] = await published(fake_bus, "NOTIFICATION_READ")
    assert read["notificationId"] == nid and read["recipientId"] == ALICE and read["client"] == "web"
    assert read["actorUserId"] == ALICE and read["readAt"].endswith("Z")
    stored = await service.store(fake_bus).get(TENANT, nid)
    assert stored is not None and stored.is_read and stored.read_at == read["readAt"]
    assert await service.store(fake_bus).unread_count(TENANT, ALICE) == 0


async def test_redelivery_does_not_duplicate(fake_bus: EventBus, directory: FileDirectory) -> None:
    """Handling the same event twice stores, pushes and reports each notification once (staff and portal user)."""
    service = NotificationSubscriber(directory)
    eid = str(uuid.uuid4())
    first = await service.handle(fake_bus, "TICKET_UPDATED", eid, domain(ticketId=TICKET, updatedByUserId=URSULA))
    second = await service.handle(fake_bus, "TICKET_UPDATED", eid, domain(ticketId=TICKET, updatedByUserId=URSULA))
    assert {n.user_id for n in first} == {ALICE, BOB, PORTAL} and second == []
    assert len(await published(fake_bus, "NOTIFICATION_SENT")) == 3


async def test_actor_and_comment_author_not_notified(fake_bus: EventBus, directory: FileDirectory) -> None:
    """The user who made the change hears nothing about it; the contact's portal user does."""
    payload, _, _ = EMAIL_CASES["TICKET_COMMENT_ADDED"]  # Alice comments
    notes = await NotificationSubscriber(directory).handle(fake_bus, "TICKET_COMMENT_ADDED", str(uuid.uuid4()), payload)
    users = {n.user_id for n in notes}
    assert ALICE not in users and {BOB, PORTAL} <= users
    notes = await NotificationSubscriber(directory).handle(
        fake_bus, "TICKET_UPDATED", str(uuid.uuid4()), domain(ticketId=TICKET, updatedByUserId=ALICE)
    )
    assert ALICE not in {n.user_id for n in notes}


async def test_inbox_is_bounded(fake_bus: EventBus, directory: FileDirectory) -> None:
    """A user keeps at most max_per_user notifications; the oldest go, with their hashes and unread marks."""
    service = NotificationSubscriber(directory, settings=NotificationSettings(max_per_user=3))
    for _ in range(5):
        await service.handle(fake_bus, "TICKET_ASSIGNED", str(uuid.uuid4()), assigned_to_alice())
    store = service.store(fake_bus)
    assert len(await store.list(TENANT, ALICE)) == 3
    assert await store.unread_count(TENANT, ALICE) == 3
    keys = [k async for k in fake_bus.client.scan_iter(match=f"{fake_bus.keys.prefix}notifications:*:item:*")]
    assert len(keys) == 3


@pytest.mark.parametrize(
    ("event_type", "payload", "user"),
    [
        pytest.param("INVOICE_GENERATED", legacy(invoiceId=INVOICE, clientId=INVOICE, userId=ALICE, amount=10), ALICE),
        pytest.param(
            "MESSAGE_SENT",
            legacy(messageId=INVOICE, senderId=URSULA, recipientId=BOB, messagePreview="Lunch?", senderName="Ursula"),
            BOB,
        ),
        pytest.param(
            "USER_MENTIONED_IN_DOCUMENT",
            legacy(documentId=INVOICE, documentName="Runbook", userId=BOB, content="@bob see this"),
            BOB,
        ),
    ],
)
async def test_other_in_app_types(
    event_type: str, payload: dict[str, Any], user: str, fake_bus: EventBus, directory: FileDirectory
) -> None:
    """Invoices, messages and mentions notify the user the payload names."""
    [note] = await NotificationSubscriber(directory).handle(fake_bus, event_type, str(uuid.uuid4()), payload)
    assert note.user_id == user and note.title and note.message


def test_templates_cover_the_in_app_set() -> None:
    """Every type of the reference's in-app set has a notification template."""
    from subscribers.notifications import NOTIFICATION_EVENT_TYPES

    assert set(NotificationTemplates().event_types) == set(NOTIFICATION_EVENT_TYPES)


async def test_each_notification_is_logged_at_info(
    fake_bus: EventBus, directory: FileDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    """One info line per notification, with its recipient count, status and the event's fields."""
    eid = str(uuid.uuid4())
    caplog.set_level("INFO", logger="subscribers.notifications")
    [note] = await NotificationSubscriber(directory).handle(fake_bus, "TICKET_ASSIGNED", eid, assigned_to_alice())
    [record] = [r for r in caplog.records if r.name == "subscribers.notifications" and r.levelname == "INFO"]
    assert (record.event_type, record.event_id, record.recipients) == ("TICKET_ASSIGNED", eid, 1)  # type: ignore[attr-defined]
    assert (record.notification_id, record.status) == (note.internal_notification_id, "stored")  # type: ignore[attr-defined]
    assert "for 1 recipient: stored" in record.getMessage()
