"""Every Redis key the subscribers own is built here, under the bus prefix (``REDIS_PREFIX``).

The per-type streams, dead letters and the notification pub/sub channel come from
:class:`bus.Keys`; this adds the subscribers' own state. The workflow stream and its DLQ are
not prefixed in the reference; services take them as settings (defaults from ``bus``).
"""

from __future__ import annotations

import msgspec

__all__ = ["SubscriberKeys"]


class SubscriberKeys(msgspec.Struct, frozen=True):
    """Key builder for one prefix (``alga-psa:`` by default)."""

    prefix: str = "alga-psa:"

    # --- email -------------------------------------------------------------------------------
    def email_sent(self, event_id: str) -> str:
        """Set of message ids already handled (sent or permanently failed) for one event: no resend on redelivery."""
        return f"{self.prefix}email:handled:{event_id}"

    # --- in-app notifications ----------------------------------------------------------------
    def notification(self, tenant_id: str, notification_id: str) -> str:
        """Hash holding one notification."""
        return f"{self.prefix}notifications:{tenant_id}:item:{notification_id}"

    def notification_index(self, tenant_id: str, user_id: str) -> str:
        """Sorted set of a user's notification ids, scored by creation time (ms), newest last; bounded."""
        return f"{self.prefix}notifications:{tenant_id}:user:{user_id}:all"

    def notification_unread(self, tenant_id: str, user_id: str) -> str:
        """Set of a user's unread notification ids."""
        return f"{self.prefix}notifications:{tenant_id}:user:{user_id}:unread"

    # --- workflow ----------------------------------------------------------------------------
    def workflow_written(self, event_id: str) -> str:
        """Marker: a workflow stream entry exists for this event id (set by the publisher or the converter)."""
        return f"{self.prefix}workflow:written:{event_id}"

    def workflow_processed(self, group: str, event_id: str) -> str:
        """Marker: the workflow consumer group ``group`` has dispatched this event id."""
        return f"{self.prefix}workflow:processed:{group}:{event_id}"
