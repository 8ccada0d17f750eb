"""The reference's fan-out table (``publishEvent``): which channels get a copy of an event.

The one source of these facts: publishers fan out with it, the built-in subscribers derive the
types they take from it, ``bus.prepare``/``bus.publish`` apply it when no channel is named
(``PublishOptions(channels=None)``), and the docs' table (docs/publishing.md) is checked against it.

1. Always ``global`` (only that copy writes the workflow stream entry).
2. A type in the in-app notification set: a copy on ``internal-notifications``.
3. A type in the email set: a copy on ``emailservice::v7``.
4. An explicit channel: ``global`` plus that channel, skipping 2 and 3. An explicit ``global``
   writes once (the reference writes it twice: a quirk we do not copy).
"""

from __future__ import annotations

import msgspec

from ._keys import CHANNEL_EMAIL, CHANNEL_GLOBAL, CHANNEL_NOTIFICATIONS

__all__ = [
    "EMAIL_EVENT_TYPES",
    "FANOUT",
    "NOTIFICATION_EVENT_TYPES",
    "ChannelRule",
    "event_types_on",
    "fanout_channels",
    "fanout_sets",
    "markdown_table",
]


class ChannelRule(msgspec.Struct, frozen=True):
    """A channel the reference copies some event types to, in addition to ``global``."""

    channel: str
    #: What the copies are for (the reference service that reads them).
    purpose: str
    event_types: frozenset[str]


#: The reference's in-app notification set: a copy goes to ``internal-notifications``.
NOTIFICATION_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "TICKET_CREATED",
        "TICKET_ASSIGNED",
        "TICKET_ADDITIONAL_AGENT_ASSIGNED",
        "TICKET_UPDATED",
        "TICKET_CLOSED",
        "TICKET_COMMENT_ADDED",
        "PROJECT_CREATED",
        "PROJECT_ASSIGNED",
        "PROJECT_TASK_ASSIGNED",
        "PROJECT_TASK_ADDITIONAL_AGENT_ASSIGNED",
        "PROJECT_MILESTONE_READY",
        "PROJECT_BUDGET_THRESHOLD_REACHED",
        "PROJECT_BUDGET_EXCEEDED",
        "TASK_COMMENT_ADDED",
        "INVOICE_GENERATED",
        "MESSAGE_SENT",
        "USER_MENTIONED_IN_DOCUMENT",
        "APPOINTMENT_REQUEST_CREATED",
        "APPOINTMENT_REQUEST_APPROVED",
        "APPOINTMENT_REQUEST_DECLINED",
        "APPOINTMENT_REQUEST_CANCELLED",
    }
)

#: The reference's email set: a copy goes to ``emailservice::v7``.
EMAIL_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "TICKET_CREATED",
        "TICKET_UPDATED",
        "TICKET_CLOSED",
        "TICKET_ASSIGNED",
        "TICKET_ADDITIONAL_AGENT_ASSIGNED",
        "TICKET_COMMENT_ADDED",
        "PROJECT_CREATED",
        "PROJECT_UPDATED",
        "PROJECT_CLOSED",
        "PROJECT_ASSIGNED",
        "PROJECT_TASK_ASSIGNED",
        "PROJECT_TASK_ADDITIONAL_AGENT_ASSIGNED",
        "PROJECT_MILESTONE_READY",
        "PROJECT_BUDGET_THRESHOLD_REACHED",
        "PROJECT_BUDGET_EXCEEDED",
        "APPOINTMENT_REQUEST_CREATED",
        "APPOINTMENT_REQUEST_APPROVED",
        "APPOINTMENT_REQUEST_DECLINED",
        "APPOINTMENT_REQUEST_CANCELLED",
    }
)

#: The channels beyond ``global``, in the order the copies are written.
FANOUT: tuple[ChannelRule, ...] = (
    ChannelRule(CHANNEL_NOTIFICATIONS, "in-app notifications", NOTIFICATION_EVENT_TYPES),
    ChannelRule(CHANNEL_EMAIL, "email notifications", EMAIL_EVENT_TYPES),
)

_CHANNELS: dict[str, tuple[str, ...]] = {}
_EXPLICIT: dict[str, tuple[str, ...]] = {CHANNEL_GLOBAL: (CHANNEL_GLOBAL,)}


def fanout_channels(event_type: str, channel: str | None = None) -> tuple[str, ...]:
    """The channels one publish writes to, ``global`` first (cached: the same tuple every time)."""
    if channel is not None:
        out = _EXPLICIT.get(channel)
        if out is None:
            if len(_EXPLICIT) >= 1024:
                _EXPLICIT.clear()
                _EXPLICIT[CHANNEL_GLOBAL] = (CHANNEL_GLOBAL,)
            out = _EXPLICIT[channel] = (CHANNEL_GLOBAL, channel)
        return out
    out = _CHANNELS.get(event_type)
    if out is None:
        chans = [CHANNEL_GLOBAL]
        chans += [rule.channel for rule in FANOUT if event_type in rule.event_types]
        if len(_CHANNELS) >= 4096:
            _CHANNELS.clear()
        out = _CHANNELS[event_type] = tuple(chans)
    return out


def event_types_on(channel: str) -> frozenset[str]:
    """The types the fan-out copies to ``channel`` (``global`` takes every type: not a fixed set)."""
    if channel == CHANNEL_GLOBAL:
        raise ValueError("every event type is published on global; ask the registry for the list")
    for rule in FANOUT:
        if rule.channel == channel:
            return rule.event_types
    return frozenset()


def fanout_sets() -> dict[str, frozenset[str]]:
    """``{channel: the types copied there}`` for every channel besides ``global``, in write order."""
    return {rule.channel: rule.event_types for rule in FANOUT}


def markdown_table() -> str:
    """The fan-out table as docs/publishing.md shows it (a test holds the page to this)."""
    lines = [
        "| channel | gets a copy of | types |",
        "|---|---|---|",
        f"| `{CHANNEL_GLOBAL}` | every publish (only this copy writes the workflow entry) | all |",
    ]
    for rule in FANOUT:
        names = ", ".join(f"`{t}`" for t in sorted(rule.event_types))
        lines.append(f"| `{rule.channel}` | {rule.purpose} ({len(rule.event_types)} types) | {names} |")
    return "\n".join(lines) + "\n"
