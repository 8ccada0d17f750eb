"""The bus engine: settings, publish, consumer groups, delivery, reclaim, dead letters, CLI.

``bus`` imports only ``schemas``; it runs publishers and subscribers through protocols.
"""

from __future__ import annotations

from ._acl import AclUser, add_password_args, remove_password_args, service_acl, tenant_acl
from ._batch import AutoBatcher
from ._bus import EventBus
from ._codec import new_event_id, now_iso
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendLoadingError,
    BackendOutOfMemoryError,
    BackendPersistenceError,
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
from ._redact import (
    SECRET,
    install_log_redaction,
    redact,
    redact_labels,
    redact_text,
    register_secret,
    register_secrets,
)
from ._redis import create_client, redis_errors
from ._runner import Runner, Service, run_services
from ._settings import BusSettings, default_consumer_name
from ._tenant import check_tenant_id, tenant_prefix
from .consume import Consumer, ConsumerStats, DeadLetter, Delivery, Handler, Subscription
from .publish import PartialWriteError, PreparedEvent, Publisher, PublishResult

__all__ = [
    "CHANNEL_EMAIL",
    "CHANNEL_GLOBAL",
    "CHANNEL_NOTIFICATIONS",
    "SECRET",
    "WORKFLOW_DLQ",
    "WORKFLOW_GROUP",
    "WORKFLOW_STREAM",
    "AclUser",
    "AuthenticationError",
    "AutoBatcher",
    "BackendError",
    "BackendLoadingError",
    "BackendOutOfMemoryError",
    "BackendPersistenceError",
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
    "add_password_args",
    "apply_once",
    "check_tenant_id",
    "create_client",
    "default_consumer_name",
    "effect_marker_key",
    "group_peers",
    "install_log_redaction",
    "new_event_id",
    "now_iso",
    "redact",
    "redact_labels",
    "redact_text",
    "redis_effect",
    "redis_errors",
    "register_secret",
    "register_secrets",
    "remove_password_args",
    "run_services",
    "service_acl",
    "tenant_acl",
    "tenant_prefix",
]
