"""The in-app notification subscriber (channel ``internal-notifications``).

Per event: resolve who it concerns (internal users and portal users; never the actor), render
one notification per recipient, store it, publish ``NOTIFICATION_SENT``, push it on the user's
pub/sub channel ``{prefix}internal-notifications:{tenant}:{user}``, then publish the outcome:

- ``NOTIFICATION_DELIVERED`` when PUBLISH reached at least one live subscriber (a connected
  client or the web gateway relaying to browsers). That is all Redis can tell us: delivered
  means "pushed to a live listener", not "seen by the user" (that is ``NOTIFICATION_READ``).
- ``NOTIFICATION_FAILED`` (retryable) when the push itself errored.
- Neither when PUBLISH reached nobody: the user is offline; the notification waits in their
  inbox (the store), which clients load on connect. Its stored status says ``stored``.

Ids are deterministic (uuid5 of event id and user), so a redelivered event neither stores nor
pushes a notification twice; a notification whose outcome was recorded is skipped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import msgspec
from msgspec import Meta

from bus import CHANNEL_NOTIFICATIONS, EventBus, routing
from publishers import Actor, PublishContext
from schemas import utc_now_iso

from .._emit import emit
from .._groups import check_group
from .._keys import SubscriberKeys
from ..email._audience import Audience, Party, resolve_audience
from ..email._directory import Directory
from ..email._templates import normalize_changes
from ._store import DeliveryStatus, Notification, NotificationStore
from ._templates import NotificationTemplates

if TYPE_CHECKING:
    from bus import Delivery

__all__ = ["NOTIFICATION_EVENT_TYPES", "Broadcaster", "NotificationSettings", "NotificationSubscriber"]

log = logging.getLogger("subscribers.notifications")

#: The reference's in-app notification set: the types publishers copy to ``internal-notifications``.
NOTIFICATION_EVENT_TYPES: tuple[str, ...] = tuple(sorted(routing.event_types_on(CHANNEL_NOTIFICATIONS)))

#: Pushes ``message`` on pub/sub ``channel``; returns how many subscribers received it.
Broadcaster = Callable[[str, bytes], Awaitable[int]]

_NAMESPACE = uuid.UUID("2b0f5c1e-8a3d-5e6f-9c40-7d1a2e3b4c5d")
_CONTEXT_IDS = (
    ("ticket", "ticketId"),
    ("task", "taskId"),
    ("project", "projectId"),
    ("invoice", "invoiceId"),
    ("message", "messageId"),
    ("document", "documentId"),
    ("appointment_request", "appointmentRequestId"),
)


class NotificationSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Inbox bounds and which events the subscriber takes."""

    max_per_user: Annotated[int, Meta(gt=0)] = 200
    ttl_s: Annotated[int, Meta(gt=0)] = 30 * 86400
    channel: str = CHANNEL_NOTIFICATIONS
    subscriber_id: str = "notification-subscriber"
    event_types: tuple[str, ...] = NOTIFICATION_EVENT_TYPES


class NotificationSubscriber:
    """Service object: ``await NotificationSubscriber(directory).run(bus)``; ``mark_read`` for the read side."""

    #: Service name (the runner derives consumer names from it).
    name = "notifications"

    def __init__(
        self,
        directory: Directory,
        *,
        settings: NotificationSettings | None = None,
        templates: NotificationTemplates | None = None,
        broadcaster: Broadcaster | None = None,
    ) -> None:
        self.directory = directory
        self.settings = settings or NotificationSettings()
        self.templates = templates or NotificationTemplates()
        self.broadcaster = broadcaster

    def store(self, bus: EventBus) -> NotificationStore:
        """The store on ``bus``'s client and prefix."""
        return NotificationStore(
            bus.client,
            SubscriberKeys(bus.keys.prefix),
            max_per_user=self.settings.max_per_user,
            ttl_s=self.settings.ttl_s,
        )

    def _context(self, audience: Audience, party: Party, payload: Mapping[str, Any]) -> dict[str, Any]:
        fields = payload.get("updatedFields")
        return {
            "event_type": audience.event_type,
            "recipient": party,
            "actor": audience.actor,
            "actor_name": audience.actor.name if audience.actor and audience.actor.name else "Someone",
            "ticket": audience.ticket,
            "project": audience.project,
            "task": audience.task,
            "comment": audience.comment,
            "payload": payload,
            "changes": normalize_changes(payload.get("changes"), fields if isinstance(fields, list) else None),
        }

    async def handle(
        self, bus: EventBus, event_type: str, event_id: str, payload: Mapping[str, Any]
    ) -> list[Notification]:
        """Create, store and push the event's notifications; returns the ones handled now."""
        if not self.templates.has(event_type):
            return []
        audience = await resolve_audience(self.directory, event_type, payload, exclude_actor=True)
        store = self.store(bus)
        context_type, context_id = next(
            ((kind, str(payload[name])) for kind, name in _CONTEXT_IDS if payload.get(name)), (None, None)
        )
        out: list[Notification] = []
        for party in audience.parties:
            if not party.user_id:
                continue
            notification_id = str(uuid.uuid5(_NAMESPACE, f"{event_id}:{party.user_id}"))
            existing = await store.get(audience.tenant_id, notification_id)
            if existing is not None and existing.delivery_status != "pending":
                continue
            rendered = self.templates.render(event_type, self._context(audience, party, payload))
            notification = existing or Notification(
                internal_notification_id=notification_id,
                tenant=audience.tenant_id,
                user_id=party.user_id,
                template_name=rendered.template_id,
                title=rendered.title,
                message=rendered.message,
                category=rendered.category,
                type="info",
                created_at=utc_now_iso(),
                link=rendered.link,
                event_id=event_id,
                context_type=context_type,
                context_id=context_id,
            )
            await store.add(notification)
            status = await self._push(bus, notification)
            await store.set_status(notification.tenant, notification_id, status)
            log.info(
                "notification %s of %s %s for 1 recipient: %s",
                notification_id,
                event_type,
                event_id,
                status,
                extra={
                    "event_type": event_type,
                    "event_id": event_id,
                    "tenant": audience.tenant_id,
                    "notification_id": notification_id,
                    "recipients": 1,
                    "status": status,
                },
            )
            out.append(msgspec.structs.replace(notification, delivery_status=status))
        return out

    async def _push(self, bus: EventBus, n: Notification) -> DeliveryStatus:
        ctx = PublishContext(tenant_id=n.tenant, actor=Actor.system())
        common = {"notificationId": n.internal_notification_id, "channel": "in_app", "recipientId": n.user_id}
        sent: dict[str, Any] = {**common, "sentAt": utc_now_iso(), "templateId": n.template_name}
        if n.context_type and n.context_id:
            sent.update(contextType=n.context_type, contextId=n.context_id)
        await emit(bus, "NOTIFICATION_SENT", sent, ctx)
        channel = bus.keys.notification_channel(n.tenant, n.user_id)
        try:
            broadcaster = self.broadcaster or bus.client.publish
            receivers = int(await broadcaster(channel, n.to_json()))
        except Exception as exc:  # a failed push is reported, never fatal: the inbox still has it
            log.warning("push of notification %s to %s failed: %s", n.internal_notification_id, channel, exc)
            failed: dict[str, Any] = {
                **common,
                "failedAt": utc_now_iso(),
                "errorMessage": f"broadcast failed: {exc}",
            }
            failed["errorCode"] = type(exc).__name__
            failed["retryable"] = True
            await emit(bus, "NOTIFICATION_FAILED", failed, ctx)
            return "failed"
        if receivers >= 1:
            await emit(bus, "NOTIFICATION_DELIVERED", {**common, "deliveredAt": utc_now_iso()}, ctx)
            return "delivered"
        return "stored"

    async def mark_read(
        self, bus: EventBus, tenant_id: str, user_id: str, notification_id: str, *, client: str | None = None
    ) -> bool:
        """Mark a notification read and publish ``NOTIFICATION_READ`` once; False if unknown or already read."""
        read_at = utc_now_iso()
        if not await self.store(bus).mark_read(tenant_id, user_id, notification_id, read_at):
            return False
        payload: dict[str, Any] = {
            "notificationId": notification_id,
            "channel": "in_app",
            "recipientId": user_id,
            "readAt": read_at,
        }
        if client:
            payload["client"] = client
        await emit(bus, "NOTIFICATION_READ", payload, PublishContext(tenant_id=tenant_id, actor=Actor.user(user_id)))
        return True

    def subscribe(self, bus: EventBus) -> None:
        """Register the handler for every configured type on the notification channel (before ``bus.run``)."""

        async def on_delivery(delivery: Delivery) -> None:
            await self.handle(bus, delivery.event_type, delivery.event_id, delivery.payload_dict())

        for event_type in self.settings.event_types:
            bus.subscribe(
                event_type, on_delivery, channel=self.settings.channel, subscriber_id=self.settings.subscriber_id
            )

    async def run(self, bus: EventBus, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, then run the bus consume loop until cancelled (``task_status`` once the groups exist)."""
        self.subscribe(bus)
        await check_group(bus, self.name, shared_by_design=True)  # the reference's group, on purpose
        await bus.run(task_status=task_status)
