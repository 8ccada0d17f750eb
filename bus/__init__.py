"""The bus engine: settings, publish, consumer groups, delivery, reclaim, dead letters, CLI.

``bus`` imports only ``schemas``; it runs publishers and subscribers through protocols.
"""

from __future__ import annotations

from ._bus import EventBus
from ._codec import new_event_id, now_iso
from ._consume import Consumer, ConsumerStats
from ._deadletter import DeadLetter
from ._delivery import Delivery, Handler, Subscription
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BusClosedError,
    BusError,
    ConfigurationError,
    GroupMissingError,
    HandlerError,
    PayloadTooLargeError,
    PayloadValidationError,
    PermissionDeniedError,
    PublishError,
    PublishOutcomeUnknownError,
    Reject,
    RetryLater,
)
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
from ._publish import PartialWriteError, PreparedEvent, PublishResult, WorkflowHooks
from ._redis import create_client, redis_errors
from ._runner import Runner, Service, run_services
from ._settings import BusSettings, default_consumer_name

__all__ = [
    "CHANNEL_EMAIL",
    "CHANNEL_GLOBAL",
    "CHANNEL_NOTIFICATIONS",
    "WORKFLOW_DLQ",
    "WORKFLOW_GROUP",
    "WORKFLOW_STREAM",
    "AuthenticationError",
    "BackendError",
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
    "GroupStatus",
    "Handler",
    "HandlerError",
    "Keys",
    "PartialWriteError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PermissionDeniedError",
    "PreparedEvent",
    "PublishError",
    "PublishOutcomeUnknownError",
    "PublishResult",
    "Reject",
    "RetryLater",
    "Runner",
    "Service",
    "StreamStatus",
    "Subscription",
    "WorkflowHooks",
    "create_client",
    "default_consumer_name",
    "new_event_id",
    "now_iso",
    "redis_errors",
    "run_services",
]
