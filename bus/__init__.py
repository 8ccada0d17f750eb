"""The bus engine: settings, publish, consumer groups, delivery, reclaim, dead letters, CLI.

``bus`` imports only ``schemas``; it runs publishers and subscribers through protocols.
"""

from __future__ import annotations

from ._batch import AutoBatcher
from ._bus import EventBus
from ._codec import new_event_id, now_iso
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendLoadingError,
    BackendOutOfMemoryError,
    BackendPersistenceError,
    BackendProtocolError,
    BackendReadOnlyError,
    BackendRefusedError,
    BackendTimeoutError,
    BackendUnavailableError,
    BusClosedError,
    BusError,
    ConfigurationError,
    GroupMissingError,
    HandlerError,
    InvalidTenantIdError,
    PayloadTooLargeError,
    PayloadValidationError,
    PermissionDeniedError,
    PublishError,
    PublishOutcomeUnknownError,
    Reject,
    RetryLater,
    TLSHandshakeError,
)
from ._groups import GroupPeer, group_peers
from ._guard import RedisEffect, apply_once, effect_marker_key, redis_effect
from ._inspect import BusStatus, ConsumerStatus, GroupStatus, StreamStatus
from ._keys import (
    CHANNEL_EMAIL,
    CHANNEL_GLOBAL,
    CHANNEL_NOTIFICATIONS,
    WORKFLOW_DLQ,
    WORKFLOW_GROUP,
    WORKFLOW_STREAM,
    Keys,
)
from ._options import PublishOptions, WorkflowHooks
from ._redis import create_client, redis_errors
from ._runner import Runner, Service, run_services
from ._settings import BusSettings, LoopTiming, default_consumer_name
from .consume import Consumer, ConsumerStats, DeadLetter, Delivery, Handler, Subscription
from .publish import PartialWriteError, PreparedEvent, Publisher, PublishResult

__all__ = [
    "CHANNEL_EMAIL",
    "CHANNEL_GLOBAL",
    "CHANNEL_NOTIFICATIONS",
    "WORKFLOW_DLQ",
    "WORKFLOW_GROUP",
    "WORKFLOW_STREAM",
    "AuthenticationError",
    "AutoBatcher",
    "BackendError",
    "BackendLoadingError",
    "BackendOutOfMemoryError",
    "BackendPersistenceError",
    "BackendProtocolError",
    "BackendReadOnlyError",
    "BackendRefusedError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BusClosedError",
    "BusError",
    "BusSettings",
    "BusStatus",
    "ConfigurationError",
    "Consumer",
    "ConsumerStats",
    "ConsumerStatus",
    "DeadLetter",
    "Delivery",
    "EventBus",
    "GroupMissingError",
    "GroupPeer",
    "GroupStatus",
    "Handler",
    "HandlerError",
    "InvalidTenantIdError",
    "Keys",
    "LoopTiming",
    "PartialWriteError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PermissionDeniedError",
    "PreparedEvent",
    "PublishError",
    "PublishOptions",
    "PublishOutcomeUnknownError",
    "PublishResult",
    "Publisher",
    "RedisEffect",
    "Reject",
    "RetryLater",
    "Runner",
    "Service",
    "StreamStatus",
    "Subscription",
    "TLSHandshakeError",
    "WorkflowHooks",
    "apply_once",
    "create_client",
    "default_consumer_name",
    "effect_marker_key",
    "group_peers",
    "new_event_id",
    "now_iso",
    "redis_effect",
    "redis_errors",
    "run_services",
]
