"""Subscribers: email, in-app notifications and workflow conversion, each a service the runner runs.

Every service has ``async def run(self, bus, *, task_status)``; ``bus run email|notifications|workflow``
loads them by import string. See docs/subscribers.md.
"""

from __future__ import annotations

from ._keys import SubscriberKeys
from .email import (
    ConsoleSender,
    Directory,
    EmailSettings,
    EmailSubscriber,
    EmailTemplates,
    FileDirectory,
    FileSender,
    RetryPolicy,
    SmtpSender,
    SmtpSettings,
)
from .email._audience import Audience, CommentInfo, Party, resolve_audience
from .notifications import NotificationSettings, NotificationStore, NotificationSubscriber
from .workflow import (
    ConverterSettings,
    CorrelationRules,
    WorkflowConsumer,
    WorkflowConsumerSettings,
    WorkflowConverter,
    WorkflowInvocation,
)

__all__ = [
    "Audience",
    "CommentInfo",
    "ConsoleSender",
    "ConverterSettings",
    "CorrelationRules",
    "Directory",
    "EmailSettings",
    "EmailSubscriber",
    "EmailTemplates",
    "FileDirectory",
    "FileSender",
    "NotificationSettings",
    "NotificationStore",
    "NotificationSubscriber",
    "Party",
    "RetryPolicy",
    "SmtpSender",
    "SmtpSettings",
    "SubscriberKeys",
    "WorkflowConsumer",
    "WorkflowConsumerSettings",
    "WorkflowConverter",
    "WorkflowInvocation",
    "resolve_audience",
]
