"""In-app notifications: templates, the Redis store and the service on ``internal-notifications``."""

from __future__ import annotations

from ._service import NOTIFICATION_EVENT_TYPES, Broadcaster, NotificationSettings, NotificationSubscriber
from ._store import DeliveryStatus, Notification, NotificationStore
from ._templates import NotificationTemplate, NotificationTemplates, RenderedNotification

__all__ = [
    "NOTIFICATION_EVENT_TYPES",
    "Broadcaster",
    "DeliveryStatus",
    "Notification",
    "NotificationSettings",
    "NotificationStore",
    "NotificationSubscriber",
    "NotificationTemplate",
    "NotificationTemplates",
    "RenderedNotification",
]
