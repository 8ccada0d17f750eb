"""Email, notification, survey and CSAT builders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from publishers._context import Actor
from publishers.builders import (
    InboundReply,
    NotificationSnapshot,
    OutboundEmailSnapshot,
    SurveyInvite,
    csat_alert,
    email_webhook_events,
    inbound_email_reply_received,
    notification_changed,
    outbound_email_changed,
    survey_expired,
    survey_expiry_scan,
    survey_reminder_sent,
    survey_response_received,
    survey_sent,
    webhook_tenant_id,
)

from ._factories import NOW_ISO, TENANT, check, later, make_ctx, types, uid, wire

MESSAGE, TICKET = uid("message"), uid("ticket")
SYSTEM = make_ctx(actor=Actor.system())


def test_inbound_reply() -> None:
    """An inbound reply names sender, recipients, provider and match, keyed by Message-ID."""
    reply = InboundReply(
        message_id="<abc@mail.example>",
        thread_id="thread-1",
        from_address="jane@acme.example",
        to=("support@msp.example", " "),
        provider="imap",
        matched_by="in-reply-to",
        ticket_id=TICKET,
    )
    ev = check(inbound_email_reply_received(reply, make_ctx()))[0]
    doc = wire(ev)
    assert (doc["from"], doc["to"], doc["matchedBy"]) == ("jane@acme.example", ["support@msp.example"], "in-reply-to")
    assert ev.idempotency_key == "inbound_email_reply_received:<abc@mail.example>"
    assert ev.correlation_key == TICKET


def test_inbound_reply_without_recipients_is_refused() -> None:
    """A reply with no recipient is malformed input."""
    reply = InboundReply(
        message_id="m", thread_id="t", from_address="a@b.example", to=(), provider="imap", matched_by="x"
    )
    with pytest.raises(ValueError, match="no recipients"):
        inbound_email_reply_received(reply, make_ctx())


def outbound(**overrides: Any) -> OutboundEmailSnapshot:
    """An outgoing email to one recipient."""
    fields: dict[str, Any] = {
        "message_id": MESSAGE,
        "status": "queued",
        "from_address": "support@msp.example",
        "to": ("jane@acme.example",),
        "provider": "smtp",
        "ticket_id": TICKET,
    }
    fields.update(overrides)
    return OutboundEmailSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {}, ["OUTBOUND_EMAIL_QUEUED"], id="queued"),
        pytest.param({}, {"status": "sent", "provider_message_id": "p-1"}, ["OUTBOUND_EMAIL_SENT"], id="sent"),
        pytest.param({}, {"status": "sent"}, [], id="sent-without-provider-id"),
        pytest.param({}, {"status": "Failed", "error_message": "550"}, ["OUTBOUND_EMAIL_FAILED"], id="failed"),
        pytest.param({}, {}, [], id="still-queued"),
    ],
)
def test_outbound_email_changed(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """Outbound email lifecycle events fire on entering queued, sent or failed."""
    prev = None if before is None else outbound(**before)
    assert types(check(outbound_email_changed(prev, outbound(**after), make_ctx()))) == expected


def resend(kind: str, **data: Any) -> dict[str, Any]:
    """A Resend webhook for an email the platform tagged with tenant and message id."""
    body: dict[str, Any] = {
        "email_id": "re_123",
        "to": ["jane@acme.example"],
        "tags": [
            {"name": "alga_tenant_id", "value": TENANT},
            {"name": "alga_workflow_message_id", "value": MESSAGE},
        ],
    }
    body.update(data)
    return {"type": kind, "created_at": "2026-03-10T11:00:00.000Z", "data": body}


@pytest.mark.parametrize(
    ("webhook", "expected", "fields"),
    [
        pytest.param(
            resend("email.delivered"), "EMAIL_DELIVERED", {"deliveredAt": "2026-03-10T11:00:00.000Z"}, id="delivered"
        ),
        pytest.param(
            resend("email.bounced", smtp_code=550, smtp_message="User unknown"),
            "EMAIL_BOUNCED",
            {"bounceType": "hard", "smtpCode": "550", "smtpMessage": "User unknown"},
            id="hard-bounce",
        ),
        pytest.param(resend("email.soft_bounced"), "EMAIL_BOUNCED", {"bounceType": "soft"}, id="soft-bounce"),
        pytest.param(
            resend("email.complained", complaint_type="abuse"),
            "EMAIL_COMPLAINT_RECEIVED",
            {"complaintType": "abuse", "to": "jane@acme.example"},
            id="complaint",
        ),
        pytest.param(
            resend("contact.updated", unsubscribed=True, email="jane@acme.example"),
            "EMAIL_UNSUBSCRIBED",
            {"recipientEmail": "jane@acme.example", "source": "resend", "messageId": MESSAGE},
            id="unsubscribed",
        ),
    ],
)
def test_provider_webhook_maps_to_feedback_events(
    webhook: dict[str, Any], expected: str, fields: dict[str, Any]
) -> None:
    """Each provider webhook type maps to its feedback event with the provider's details."""
    events = check(email_webhook_events(webhook, SYSTEM, delivery_id="msg_1"), SYSTEM)
    assert types(events) == [expected]
    doc = wire(events[0])
    assert {k: doc.get(k) for k in fields} == fields
    assert events[0].idempotency_key is not None
    assert events[0].idempotency_key.startswith(f"resend_webhook:msg_1:{webhook['type']}:")


@pytest.mark.parametrize(
    "webhook",
    [
        pytest.param(resend("email.opened"), id="unmapped-type"),
        pytest.param(resend("email.delivered", tags=[]), id="not-our-message"),
        pytest.param(resend("email.delivered", email_id=None), id="no-provider-id"),
        pytest.param(resend("email.delivered", to=[]), id="no-recipient"),
        pytest.param(resend("contact.updated", unsubscribed=False, email="jane@acme.example"), id="resubscribed"),
        pytest.param({"data": {}}, id="no-type"),
    ],
)
def test_provider_webhook_without_a_mapping_gives_nothing(webhook: dict[str, Any]) -> None:
    """Webhooks that are not ours, incomplete or of another type give no event."""
    assert email_webhook_events(webhook, SYSTEM) == []


def test_provider_webhook_key_is_stable_without_delivery_id() -> None:
    """Without a delivery id the key is a fingerprint of the webhook: a redelivery dedupes."""
    first = email_webhook_events(resend("email.delivered"), SYSTEM)
    again = email_webhook_events(resend("email.delivered"), SYSTEM)
    assert first[0].idempotency_key == again[0].idempotency_key


def test_webhook_tenant_id_reads_tags_in_both_shapes() -> None:
    """The tenant tag is read from list-of-pairs and mapping tags alike."""
    assert webhook_tenant_id(resend("email.delivered")) == TENANT
    assert webhook_tenant_id({"data": {"tags": {"alga_tenant_id": "t"}}}) == "t"
    assert webhook_tenant_id({}) is None


def note(**overrides: Any) -> NotificationSnapshot:
    """A pending in-app notification."""
    fields: dict[str, Any] = {
        "notification_id": uid("notification"),
        "channel": "in_app",
        "recipient_id": uid("recipient"),
        "status": "pending",
        "context_type": "ticket",
        "context_id": TICKET,
    }
    fields.update(overrides)
    return NotificationSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, "sent", ["NOTIFICATION_SENT"], id="sent"),
        pytest.param("sent", "delivered", ["NOTIFICATION_DELIVERED"], id="delivered"),
        pytest.param("delivered", "Read", ["NOTIFICATION_READ"], id="read"),
        pytest.param("sent", "failed", ["NOTIFICATION_FAILED"], id="failed"),
        pytest.param("sent", "sent", [], id="unchanged"),
        pytest.param("sent", "archived", [], id="other-status"),
    ],
)
def test_notification_changed(before: str | None, after: str, expected: list[str]) -> None:
    """Notification events fire on entering sent, delivered, read or failed."""
    prev = None if before is None else note(status=before)
    events = check(notification_changed(prev, note(status=after), make_ctx()))
    assert types(events) == expected
    assert all(e.correlation_key == TICKET for e in events)


def invite(**overrides: Any) -> SurveyInvite:
    """A CSAT survey about a ticket."""
    fields: dict[str, Any] = {
        "survey_id": uid("survey"),
        "survey_type": "csat",
        "recipient_id": uid("contact"),
        "channel": "email",
        "ticket_id": TICKET,
    }
    fields.update(overrides)
    return SurveyInvite(**fields)


def test_survey_lifecycle() -> None:
    """Sent, reminder, response and expiry validate and are keyed by survey/recipient/response."""
    s = invite()
    sent = check(survey_sent(s, make_ctx()))[0]
    assert sent.idempotency_key == f"survey_sent:{s.survey_id}:{s.recipient_id}"
    response = check(survey_response_received(s, uid("response"), 4, make_ctx(), comment="quick fix"))[0]
    assert (wire(response)["score"], wire(response)["comment"]) == (4.0, "quick fix")
    expired = check(survey_expired(s, make_ctx()))[0]
    assert wire(expired)["expiredAt"] == NOW_ISO


@pytest.mark.parametrize(
    "number", [pytest.param(1, id="first"), pytest.param(2, id="second"), pytest.param(3, id="third")]
)
def test_survey_reminders_are_numbered(number: int) -> None:
    """Each reminder carries its number, which is also part of its key."""
    ev = check(survey_reminder_sent(invite(), number, make_ctx()))[0]
    assert wire(ev)["reminderNumber"] == number
    assert ev.idempotency_key is not None and ev.idempotency_key.endswith(f":{number}")


@pytest.mark.parametrize("number", [pytest.param(0, id="zero"), pytest.param(-1, id="negative")])
def test_survey_reminder_number_must_be_positive(number: int) -> None:
    """Reminder numbers start at 1."""
    with pytest.raises(ValueError, match="positive"):
        survey_reminder_sent(invite(), number, make_ctx())


@pytest.mark.parametrize(
    ("expires", "last_checked", "responded", "count"),
    [
        pytest.param(later(minutes=-5), later(hours=-1), False, 1, id="expired-since-last-check"),
        pytest.param(later(hours=-2), later(hours=-1), False, 0, id="expired-before-last-check"),
        pytest.param(later(hours=1), later(hours=-1), False, 0, id="not-yet"),
        pytest.param(later(minutes=-5), later(hours=-1), True, 0, id="answered"),
    ],
)
def test_survey_expiry_scan_needs_a_crossing(
    expires: datetime, last_checked: datetime, responded: bool, count: int
) -> None:
    """The expiry scan fires once for an unanswered survey whose deadline passed since the last check."""
    events = survey_expiry_scan(
        invite(), make_ctx(), expires_at=expires, last_checked_at=last_checked, responded=responded
    )
    assert len(check(events)) == count


@pytest.mark.parametrize(
    ("score", "count"),
    [pytest.param(2.9, 1, id="under"), pytest.param(3.0, 1, id="at-threshold"), pytest.param(3.1, 0, id="over")],
)
def test_csat_alert_at_or_under_threshold(score: float, count: int) -> None:
    """A CSAT alert fires when the score is at or under the threshold."""
    events = check(csat_alert(score, 3.0, SYSTEM, window="daily", scope_type="team", scope_id=uid("team")), SYSTEM)
    assert len(events) == count


def test_csat_alert_payload_and_period_key() -> None:
    """The alert carries baseline and delta; its key names scope, window and period."""
    ev = csat_alert(2.5, 3.0, SYSTEM, window="weekly", scope_type="agent", scope_id="a1", baseline=4.0)[0]
    assert (wire(ev)["baseline"], wire(ev)["delta"]) == (4.0, -1.5)
    assert ev.idempotency_key == "csat_alert_triggered:agent:a1:weekly:2026-W11"
    monthly = csat_alert(1, 3, SYSTEM, window="monthly", scope_type="org")[0]
    assert monthly.idempotency_key == "csat_alert_triggered:org:-:monthly:2026-03"
