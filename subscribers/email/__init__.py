"""The email subscriber: directory, templates, senders and the service on ``emailservice::v7``."""

from __future__ import annotations

from ._directory import (
    Contact,
    Directory,
    DirectoryData,
    EmailThread,
    FileDirectory,
    Project,
    Task,
    Team,
    TenantDirectory,
    Ticket,
    User,
)
from ._sender import (
    ConsoleSender,
    FileSender,
    RetryPolicy,
    Sender,
    SendError,
    SendResult,
    SmtpSender,
    SmtpSettings,
    send_with_retry,
)
from ._service import (
    EMAIL_EVENT_TYPES,
    NOT_MAILED_EVENT_TYPES,
    OFF_ROUTE_EVENT_TYPES,
    EmailOutcome,
    EmailSettings,
    EmailSubscriber,
    SentEmail,
)
from ._templates import ChangeRow, EmailTemplates, RenderedEmail, format_money, format_value, normalize_changes

__all__ = [
    "EMAIL_EVENT_TYPES",
    "NOT_MAILED_EVENT_TYPES",
    "OFF_ROUTE_EVENT_TYPES",
    "ChangeRow",
    "ConsoleSender",
    "Contact",
    "Directory",
    "DirectoryData",
    "EmailOutcome",
    "EmailSettings",
    "EmailSubscriber",
    "EmailTemplates",
    "EmailThread",
    "FileDirectory",
    "FileSender",
    "Project",
    "RenderedEmail",
    "RetryPolicy",
    "SendError",
    "SendResult",
    "Sender",
    "SentEmail",
    "SmtpSender",
    "SmtpSettings",
    "Task",
    "Team",
    "TenantDirectory",
    "Ticket",
    "User",
    "format_money",
    "format_value",
    "normalize_changes",
    "send_with_retry",
]
