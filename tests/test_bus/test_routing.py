"""bus.routing: the reference's fan-out table, and every list derived from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import CHANNEL_EMAIL, CHANNEL_GLOBAL, CHANNEL_NOTIFICATIONS, routing
from schemas import REGISTRY

# Copied by hand from ../shared/reference/wire-format.md ("Fan-out on publish"), never read at run time.
REFERENCE_NOTIFICATION_SET = {
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
REFERENCE_EMAIL_SET = {
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
G, N, E = CHANNEL_GLOBAL, CHANNEL_NOTIFICATIONS, CHANNEL_EMAIL
PUBLISHING_PAGE = Path(__file__).resolve().parents[2] / "docs" / "publishing.md"


def test_table_is_the_reference_sets() -> None:
    """The table's two sets are the reference's, on its channels, in its write order, all known types."""
    assert [(rule.channel, set(rule.event_types)) for rule in routing.FANOUT] == [
        (N, REFERENCE_NOTIFICATION_SET),
        (E, REFERENCE_EMAIL_SET),
    ]
    assert routing.event_types_on(N) == REFERENCE_NOTIFICATION_SET
    assert routing.event_types_on(E) == REFERENCE_EMAIL_SET
    assert routing.event_types_on("custom") == frozenset()
    assert all(t in REGISTRY for t in REFERENCE_NOTIFICATION_SET | REFERENCE_EMAIL_SET)
    with pytest.raises(ValueError, match="every event type"):
        routing.event_types_on(G)


@pytest.mark.parametrize(
    ("event_type", "channel", "expected"),
    [
        pytest.param("TICKET_CREATED", None, (G, N, E), id="both-sets"),
        pytest.param("PROJECT_UPDATED", None, (G, E), id="email-only"),
        pytest.param("INVOICE_GENERATED", None, (G, N), id="notification-only"),
        pytest.param("ASSET_CREATED", None, (G,), id="neither"),
        pytest.param("TICKET_CREATED", "custom", (G, "custom"), id="explicit-skips-sets"),
        pytest.param("TICKET_CREATED", G, (G,), id="explicit-global-once"),
    ],
)
def test_fanout_channels(event_type: str, channel: str | None, expected: tuple[str, ...]) -> None:
    """Global first, then the sets' channels, or global plus the one named; the same tuple every call."""
    first = routing.fanout_channels(event_type, channel)
    assert first == expected
    assert routing.fanout_channels(event_type, channel) is first


def test_publishers_lists_are_the_table() -> None:
    """publishers' EMAIL/NOTIFICATION_EVENT_TYPES and fanout_channels are the table itself, not copies."""
    import publishers

    assert publishers.EMAIL_EVENT_TYPES is routing.EMAIL_EVENT_TYPES
    assert publishers.NOTIFICATION_EVENT_TYPES is routing.NOTIFICATION_EVENT_TYPES
    assert publishers.fanout_channels is routing.fanout_channels


def test_email_subscriber_set_names_its_differences() -> None:
    """The email subscriber mails the email set less appointments (no templates) plus TASK_COMMENT_ADDED."""
    from subscribers.email import EMAIL_EVENT_TYPES, NOT_MAILED_EVENT_TYPES, OFF_ROUTE_EVENT_TYPES, EmailTemplates

    assert {t for t in REFERENCE_EMAIL_SET if t.startswith("APPOINTMENT_REQUEST_")} == NOT_MAILED_EVENT_TYPES
    assert {"TASK_COMMENT_ADDED"} == OFF_ROUTE_EVENT_TYPES
    assert not OFF_ROUTE_EVENT_TYPES & REFERENCE_EMAIL_SET
    assert set(EMAIL_EVENT_TYPES) == (REFERENCE_EMAIL_SET - NOT_MAILED_EVENT_TYPES) | {"TASK_COMMENT_ADDED"}
    assert len(EMAIL_EVENT_TYPES) == 16
    templates = EmailTemplates()
    assert all(templates.has(t) for t in EMAIL_EVENT_TYPES)
    assert not any(templates.has(t) for t in NOT_MAILED_EVENT_TYPES)


def test_audience_kinds_cover_ticket_and_project_events() -> None:
    """The audience resolver's ticket/project kinds are the routed ticket and project/task events."""
    from subscribers.email._audience import PROJECT_AUDIENCE_TYPES, TICKET_AUDIENCE_TYPES

    routed = REFERENCE_EMAIL_SET | REFERENCE_NOTIFICATION_SET
    assert {t for t in routed if t.startswith("TICKET_")} == TICKET_AUDIENCE_TYPES
    assert len(TICKET_AUDIENCE_TYPES) == 6
    assert {t for t in routed if t.startswith("PROJECT_")} | {"TASK_COMMENT_ADDED"} == PROJECT_AUDIENCE_TYPES
    assert len(PROJECT_AUDIENCE_TYPES) == 10


def test_notification_subscriber_takes_the_notification_set() -> None:
    """The in-app subscriber's default types are exactly the table's notification set."""
    from subscribers.notifications import NOTIFICATION_EVENT_TYPES

    assert set(NOTIFICATION_EVENT_TYPES) == REFERENCE_NOTIFICATION_SET


def test_readme_shows_the_table() -> None:
    """The docs' fan-out table (docs/publishing.md) is the one the module renders."""
    assert routing.markdown_table() in PUBLISHING_PAGE.read_text(encoding="utf-8")
