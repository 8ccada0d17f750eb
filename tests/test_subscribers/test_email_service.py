"""Email subscriber against a real local SMTP server (aiosmtpd) and a bus on fakeredis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bus import EventBus, RetryLater
from subscribers.email import (
    EMAIL_EVENT_TYPES,
    EmailSettings,
    EmailSubscriber,
    FileDirectory,
    FileSender,
    RetryPolicy,
    SmtpSender,
    SmtpSettings,
)

from ._data import ALICE, BOB, CONTACT, EMAIL_CASES, EMAILS, MARY, TICKET, URSULA, domain, legacy
from .conftest import SmtpServer, part, published


def make_subscriber(directory: FileDirectory, smtp: SmtpServer, attempts: int = 3) -> EmailSubscriber:
    """An email subscriber sending to the test SMTP server without backoff."""
    sender = SmtpSender(SmtpSettings(host=smtp.host, port=smtp.port, security="none", timeout_s=5))
    settings = EmailSettings(from_address="psa@msp.example", retry=RetryPolicy.no_wait(attempts))
    return EmailSubscriber(directory, sender, settings=settings)


def event_id() -> str:
    """A fresh event id."""
    return str(uuid.uuid4())


def test_every_email_type_has_a_case() -> None:
    """The cases below cover every type the subscriber handles."""
    assert set(EMAIL_CASES) == set(EMAIL_EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EMAIL_CASES))
async def test_recipients_and_template_per_type(
    event_type: str, fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """Each handled type mails exactly its audience, with its own subject, text and HTML."""
    payload, expected, subject = EMAIL_CASES[event_type]
    outcome = await make_subscriber(directory, smtp_server).handle(fake_bus, event_type, event_id(), payload)
    assert smtp_server.recorder.recipients() == {EMAILS[k] for k in expected}
    assert all(e.status == "sent" for e in outcome.emails)
    for msg in smtp_server.recorder.messages:
        assert subject in str(msg["Subject"])
        assert msg["X-PSA-Event-Type"] == event_type
        kinds = {part.get_content_type() for part in msg.walk()}
        assert {"text/plain", "text/html"} <= kinds


async def test_html_is_escaped_and_text_is_not(
    fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """Payload and record text is escaped in HTML (autoescape) and left alone in plain text."""
    payload, _, _ = EMAIL_CASES["TICKET_CREATED"]
    await make_subscriber(directory, smtp_server).handle(fake_bus, "TICKET_CREATED", event_id(), payload)
    msg = smtp_server.recorder.messages[0]
    html, text = part(msg, "text/html"), part(msg, "text/plain")
    assert "Printer &lt;on&gt; fire" in html and "<on>" not in html
    assert "Client &amp; Co" in html
    assert "Printer <on> fire" in text and "Client & Co" in text


async def test_changes_box_in_both_parts(fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer) -> None:
    """TICKET_UPDATED shows each change as previous -> new in text and HTML."""
    payload = domain(
        ticketId=TICKET,
        updatedByUserId=URSULA,
        changes={"status": {"previous": "Open", "new": "Closed"}, "priority_id": {"from": "Low", "to": "High"}},
    )
    await make_subscriber(directory, smtp_server).handle(fake_bus, "TICKET_UPDATED", event_id(), payload)
    msg = smtp_server.recorder.messages[0]
    html, text = part(msg, "text/html"), part(msg, "text/plain")
    assert "- Status: Open -> Closed" in text
    assert "- Priority: Low -> High" in text
    assert 'class="changes"' in html and "Open</span> &rarr; <strong>Closed</strong>" in html


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        pytest.param({"suppressContactNotifications": True}, {ALICE, BOB}, id="no-contact"),
        pytest.param({"suppressInternalNotifications": True}, {CONTACT}, id="no-internal"),
        pytest.param({"suppressContactNotifications": True, "suppressInternalNotifications": True}, set(), id="none"),
    ],
)
async def test_suppression_flags(
    flags: dict[str, Any], expected: set[str], fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """suppressContactNotifications drops contacts, suppressInternalNotifications drops staff."""
    payload = domain(ticketId=TICKET, updatedByUserId=URSULA, **flags)
    await make_subscriber(directory, smtp_server).handle(fake_bus, "TICKET_UPDATED", event_id(), payload)
    assert smtp_server.recorder.recipients() == {EMAILS[k] for k in expected}


async def test_no_self_mail_on_comment_and_internal_note_stays_internal(
    fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """The comment's author gets no copy; an internal note never reaches the contact."""
    comment = {"id": str(uuid.uuid4()), "content": "Internal: check the fuser", "author": "Bob", "isInternal": True}
    payload = legacy(ticketId=TICKET, userId=BOB, comment=comment)
    await make_subscriber(directory, smtp_server).handle(fake_bus, "TICKET_COMMENT_ADDED", event_id(), payload)
    assert smtp_server.recorder.recipients() == {EMAILS[ALICE]}
    assert "internal note" in str(smtp_server.recorder.messages[0]["Subject"])


async def test_recipients_deduped_per_event(fake_bus: EventBus, smtp_server: SmtpServer) -> None:
    """A person who is both assignee and additional agent (same address) gets one mail."""
    directory = FileDirectory.from_dict(
        {
            "tenants": {
                "*": {
                    "users": [{"id": ALICE, "email": "ALICE@msp.example"}, {"id": BOB, "email": "alice@msp.example"}],
                    "tickets": [{"id": TICKET, "assigned_to": ALICE, "additional_agents": [ALICE, BOB]}],
                }
            }
        }
    )
    await make_subscriber(directory, smtp_server).handle(
        fake_bus, "TICKET_UPDATED", event_id(), domain(ticketId=TICKET, updatedByUserId=URSULA)
    )
    assert len(smtp_server.recorder.messages) == 1


async def test_threading_headers_from_the_ticket(
    fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """Mail about a ticket with a thread replies into it: In-Reply-To and References set."""
    payload, _, _ = EMAIL_CASES["TICKET_UPDATED"]
    await make_subscriber(directory, smtp_server).handle(fake_bus, "TICKET_UPDATED", event_id(), payload)
    for msg in smtp_server.recorder.messages:
        assert msg["In-Reply-To"] == "<orig-1@mail.client.example>"
        assert msg["References"] == "<r0@mail.client.example> <orig-1@mail.client.example>"
        assert str(msg["Message-ID"]).endswith("@msp.example>")


async def test_no_threading_headers_for_projects(
    fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """Mail without a ticket thread has a Message-ID but no In-Reply-To."""
    payload, _, _ = EMAIL_CASES["PROJECT_CREATED"]
    await make_subscriber(directory, smtp_server).handle(fake_bus, "PROJECT_CREATED", event_id(), payload)
    assert all(m["In-Reply-To"] is None and m["Message-ID"] for m in smtp_server.recorder.messages)


async def test_outbound_email_events_published(
    fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """Every mail is reported QUEUED then SENT, with message id, addresses, ticket and thread."""
    payload, expected, _ = EMAIL_CASES["TICKET_CLOSED"]
    outcome = await make_subscriber(directory, smtp_server).handle(fake_bus, "TICKET_CLOSED", event_id(), payload)
    queued = await published(fake_bus, "OUTBOUND_EMAIL_QUEUED")
    sent = await published(fake_bus, "OUTBOUND_EMAIL_SENT")
    assert len(queued) == len(sent) == len(expected)
    assert {q["to"][0] for q in queued} == {EMAILS[k] for k in expected}
    assert {s["messageId"] for s in sent} == {e.message_id for e in outcome.emails}
    for q in queued:
        assert q["from"] == "psa@msp.example" and q["provider"] == "smtp" and q["ticketId"] == TICKET
        assert q["threadId"] and q["tenantId"] and q["occurredAt"].endswith("Z") and q["actorType"] == "SYSTEM"
    assert all(s["providerMessageId"].startswith("<") for s in sent)


async def test_retryable_failure_is_retried_then_sent(
    fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """Two 451 replies, then success: three attempts, one mail, SENT published, no FAILED."""
    smtp_server.recorder.data_failures = ["451 4.3.0 Try again later", "451 4.3.0 Try again later"]
    payload = domain(ticketId=TICKET, newAssigneeId=ALICE, assignedByUserId=URSULA)
    outcome = await make_subscriber(directory, smtp_server).handle(fake_bus, "TICKET_ASSIGNED", event_id(), payload)
    assert smtp_server.recorder.data_attempts == 3
    assert [e.status for e in outcome.emails] == ["sent"]
    assert len(await published(fake_bus, "OUTBOUND_EMAIL_SENT")) == 1
    assert await published(fake_bus, "OUTBOUND_EMAIL_FAILED") == []


async def test_permanent_failure_is_not_retried(
    fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """A 550 is tried once, reported FAILED (retryable false), and not tried again on redelivery."""
    smtp_server.recorder.rcpt_replies[EMAILS[ALICE]] = "550 5.1.1 No such user"
    subscriber = make_subscriber(directory, smtp_server)
    payload = domain(ticketId=TICKET, newAssigneeId=ALICE, assignedByUserId=URSULA)
    eid = event_id()
    outcome = await subscriber.handle(fake_bus, "TICKET_ASSIGNED", eid, payload)
    assert [(e.status, e.retryable) for e in outcome.emails] == [("failed", False)]
    failed = await published(fake_bus, "OUTBOUND_EMAIL_FAILED")
    assert len(failed) == 1 and failed[0]["retryable"] is False and failed[0]["errorCode"] == "550"
    again = await subscriber.handle(fake_bus, "TICKET_ASSIGNED", eid, payload)
    assert [e.status for e in again.emails] == ["skipped"]
    assert len(await published(fake_bus, "OUTBOUND_EMAIL_QUEUED")) == 1


async def test_retryable_failure_outlasting_the_policy_asks_for_redelivery(
    fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer
) -> None:
    """When 4xx persists: FAILED (retryable) and RetryLater; the redelivery sends only the missing mail."""
    smtp_server.recorder.data_failures = ["451 4.3.0 busy"] * 2
    subscriber = make_subscriber(directory, smtp_server, attempts=1)
    payload, _, _ = EMAIL_CASES["PROJECT_CREATED"]  # two recipients: Mary, then the contact
    eid = event_id()
    with pytest.raises(RetryLater):
        await subscriber.handle(fake_bus, "PROJECT_CREATED", eid, payload)
    failed = await published(fake_bus, "OUTBOUND_EMAIL_FAILED")
    assert [f["retryable"] for f in failed] == [True, True]
    outcome = await subscriber.handle(fake_bus, "PROJECT_CREATED", eid, payload)
    assert sorted(e.status for e in outcome.emails) == ["sent", "sent"]
    assert smtp_server.recorder.recipients() == {EMAILS[MARY], EMAILS[CONTACT]}


async def test_connection_refused_is_retryable(fake_bus: EventBus, directory: FileDirectory) -> None:
    """No server listening: the send fails retryably and the event asks for redelivery."""
    from tests.conftest import free_port

    sender = SmtpSender(SmtpSettings(host="127.0.0.1", port=free_port(), security="none", timeout_s=2))
    subscriber = EmailSubscriber(directory, sender, settings=EmailSettings(retry=RetryPolicy.no_wait(2)))
    payload = domain(ticketId=TICKET, newAssigneeId=ALICE, assignedByUserId=URSULA)
    with pytest.raises(RetryLater):
        await subscriber.handle(fake_bus, "TICKET_ASSIGNED", event_id(), payload)
    failed = await published(fake_bus, "OUTBOUND_EMAIL_FAILED")
    assert failed[0]["retryable"] is True


async def test_file_sender_writes_eml(fake_bus: EventBus, directory: FileDirectory, tmp_path: Any) -> None:
    """The demo sender writes one .eml per message into its folder."""
    subscriber = EmailSubscriber(directory, FileSender(tmp_path / "out"))
    payload, expected, _ = EMAIL_CASES["TICKET_UPDATED"]
    await subscriber.handle(fake_bus, "TICKET_UPDATED", event_id(), payload)
    files = sorted((tmp_path / "out").glob("*.eml"))
    assert len(files) == len(expected)
    assert b"Subject: [Ticket #1001] Updated" in files[0].read_bytes()
    assert (await published(fake_bus, "OUTBOUND_EMAIL_SENT"))[0]["provider"] == "file"


async def test_each_mail_sent_is_logged_at_info_without_addresses(
    fake_bus: EventBus, directory: FileDirectory, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One info line per mail sent, with its recipient count and the event's fields; no address at info."""
    payload, expected, _ = EMAIL_CASES["TICKET_CREATED"]
    eid = event_id()
    caplog.set_level("INFO", logger="subscribers.email")
    outcome = await make_subscriber(directory, smtp_server).handle(fake_bus, "TICKET_CREATED", eid, payload)
    lines = [r for r in caplog.records if r.name == "subscribers.email" and r.levelname == "INFO"]
    assert len(lines) == len(outcome.emails) == len(expected) >= 1
    assert sorted(r.message_id for r in lines) == sorted(e.message_id for e in outcome.emails)  # type: ignore[attr-defined]
    for record in lines:
        assert (record.event_type, record.event_id, record.recipients) == ("TICKET_CREATED", eid, 1)  # type: ignore[attr-defined]
        assert "sent to 1 recipient" in record.getMessage()
        assert not any(address in record.getMessage() for address in EMAILS.values())
