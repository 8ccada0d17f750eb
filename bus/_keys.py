"""Every Redis key, stream and group name the bus uses is built here (reference layout).

Keys that embed a tenant id check it first (:func:`bus.security.check_tenant_id`): no glob characters,
hash-tag braces, separators, whitespace or control characters, at most 128 characters.
"""

from __future__ import annotations

import msgspec

from ._tenant import check_tenant_id

__all__ = [
    "CHANNEL_EMAIL",
    "CHANNEL_GLOBAL",
    "CHANNEL_NOTIFICATIONS",
    "WORKFLOW_DLQ",
    "WORKFLOW_GROUP",
    "WORKFLOW_STREAM",
    "Keys",
]

CHANNEL_GLOBAL = "global"
CHANNEL_NOTIFICATIONS = "internal-notifications"
CHANNEL_EMAIL = "emailservice::v7"
WORKFLOW_STREAM = "workflow:events:global"
WORKFLOW_DLQ = "workflow:events:global:dlq"
WORKFLOW_GROUP = "workflow-runtime-v2"


class Keys(msgspec.Struct, frozen=True):
    """Key builder for one prefix configuration (REDIS_PREFIX + REDIS_EVENT_STREAM_PREFIX)."""

    prefix: str = "alga-psa:"
    stream_prefix: str = "event-stream:"
    #: Redis Cluster: our marker sets hash-tag the tenant (``{prefix}processed:{{tenantId}}``), so
    #: a set, its rotated ``:prev`` and its ``:born`` share the slot the rotation script needs.
    cluster: bool = False
    #: BUS_KEY_HASHTAG (cluster only): every key carries ``{tag}``; set through :meth:`tagged`.
    hashtag: str | None = None

    @classmethod
    def tagged(cls, prefix: str, stream_prefix: str, *, cluster: bool, hashtag: str | None) -> Keys:
        """The keys of a bus: with a hash tag, ``{tag}`` joins the prefix (``alga-psa:{tag}:``) so that
        every prefixed key, and the workflow stream (:attr:`workflow_stream`), hash to the tag's slot."""
        if hashtag:
            prefix = f"{prefix}{{{hashtag}}}:"
        return cls(prefix, stream_prefix, cluster=cluster, hashtag=hashtag)

    @property
    def workflow_stream(self) -> str:
        """The workflow stream: the reference's ``workflow:events:global``, or ``{tag}:workflow:events:global``
        with a hash tag (which the reference does not read)."""
        return f"{{{self.hashtag}}}:{WORKFLOW_STREAM}" if self.hashtag else WORKFLOW_STREAM

    @property
    def workflow_dlq(self) -> str:
        """The workflow consumer's dead letters: the reference's ``workflow:events:global:dlq``, or
        ``{tag}:workflow:events:global:dlq`` with a hash tag (beside the tagged workflow stream)."""
        return f"{self.workflow_stream}:dlq" if self.hashtag else WORKFLOW_DLQ

    def stream(self, channel: str, event_type: str) -> str:
        """The per-type stream of a channel: ``alga-psa:event-stream:global:TICKET_CREATED``."""
        return f"{self.prefix}{self.stream_prefix}{channel}:{event_type}"

    def stream_pattern(self, channel: str = "*") -> str:
        """A SCAN pattern for the per-type streams of a channel (or all channels)."""
        return f"{self.prefix}{self.stream_prefix}{channel}:*"

    def parse_stream(self, key: str) -> tuple[str, str] | None:
        """``(channel, event_type)`` of a per-type stream key, or None for another key.

        Channels may contain ``::`` (``emailservice::v7``); the event type is the last segment.
        """
        head = self.prefix + self.stream_prefix
        if not key.startswith(head) or key.endswith(":dead-letter"):
            return None
        channel, sep, event_type = key[len(head) :].rpartition(":")
        return (channel, event_type) if sep and channel and event_type else None

    @staticmethod
    def dead_letter(stream: str) -> str:
        """The dead-letter stream of a per-type stream."""
        return f"{stream}:dead-letter"

    @staticmethod
    def processed_events(tenant_id: str) -> str:
        """The REFERENCE's set of processed event ids of a tenant. The reference owns it: we never
        write, rename, delete or expire it (our consumers keep :meth:`marker_events`)."""
        return f"processed_events:{check_tenant_id(tenant_id)}"

    @staticmethod
    def processed_handlers(tenant_id: str) -> str:
        """The REFERENCE's set of ``{eventId}:{handlerKey}`` markers of a tenant (owned by it, as above)."""
        return f"processed_event_handlers:{check_tenant_id(tenant_id)}"

    def marker_events(self, tenant_id: str) -> str:
        """OUR consumers' processed-event set of a tenant: ``{prefix}processed:{tenantId}``."""
        return f"{self.prefix}processed:{self._tenant_part(tenant_id)}"

    def marker_handlers(self, tenant_id: str) -> str:
        """OUR consumers' processed-handler set of a tenant: ``{prefix}processed-handlers:{tenantId}``."""
        return f"{self.prefix}processed-handlers:{self._tenant_part(tenant_id)}"

    def _tenant_part(self, tenant_id: str) -> str:
        """The checked tenant id, as a hash tag on a cluster (tenant ids never contain braces)."""
        tenant = check_tenant_id(tenant_id)
        return "{" + tenant + "}" if self.cluster and not self.hashtag else tenant

    def notification_channel(self, tenant_id: str, user_id: str) -> str:
        """Pub/sub channel of a user's in-app notifications."""
        return f"{self.prefix}internal-notifications:{check_tenant_id(tenant_id)}:{user_id}"
