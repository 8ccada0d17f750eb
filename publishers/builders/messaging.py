"""Email, notification, survey and CSAT builders.

Idempotency keys: one-off facts carry their id (``inbound_email_reply_received:<messageId>``,
``outbound_email_sent:<messageId>``, ``survey_response_received:<responseId>``); survey
reminders carry their number (``survey_reminder_sent:<surveyId>:<recipientId>:<n>``);
failures that can repeat carry ``ctx.occurred_at``; provider webhooks use the reference's
``<provider>_webhook:<deliveryId>:<webhookType>:<outcome>``; a CSAT alert fires once per scope,
window and period (``csat_alert_triggered:<scopeType>:<scopeId>:<window>:<period>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec

from schemas import Payload
from schemas.events.email import (
    EmailBounced,
    EmailComplaintReceived,
    EmailDelivered,
    EmailUnsubscribed,
    InboundEmailReplyReceived,
    OutboundEmailFailed,
    OutboundEmailQueued,
    OutboundEmailSent,
)
from schemas.events.notifications import (
    NotificationDelivered,
    NotificationFailed,
    NotificationRead,
    NotificationSent,
)
from schemas.events.surveys import (
    CsatAlertTriggered,
    SurveyExpired,
    SurveyReminderSent,
    SurveyResponseReceived,
    SurveySent,
)

from .._context import DomainEvent, PublishContext
from ._util import as_utc, ctx_now, digest, emit, envelope, iso, norm_status, opt, text_opt
from ._util import idem_key as key

__all__ = [
    "InboundReply",
    "NotificationSnapshot",
    "OutboundEmailSnapshot",
    "SurveyInvite",
    "csat_alert",
    "email_webhook_events",
    "inbound_email_reply_received",
    "notification_changed",
    "outbound_email_changed",
    "survey_expired",
    "survey_expiry_scan",
    "survey_reminder_sent",
    "survey_response_received",
    "survey_sent",
    "webhook_tenant_id",
]

NotifyChannel = Literal["email", "sms", "in_app", "push", "teams"]


# ---------------------------------------------------------------- inbound and outbound email


class InboundReply(msgspec.Struct, frozen=True, kw_only=True):
    """An inbound email matched to a conversation (``matched_by``: header, token, subject...)."""

    message_id: str
    thread_id: str
    from_address: str
    to: tuple[str, ...]
    provider: str
    matched_by: str
    ticket_id: str | None = None
    subject: str | None = None
    received_at: datetime | None = None


def inbound_email_reply_received(reply: InboundReply, ctx: PublishContext) -> list[DomainEvent]:
    """INBOUND_EMAIL_REPLY_RECEIVED. A reply without recipients is malformed (ValueError).

    Key: ``inbound_email_reply_received:<messageId>`` (the provider's Message-ID).
    """
    recipients = [t for t in reply.to if t.strip()]
    if not recipients:
        raise ValueError(f"inbound reply {reply.message_id} has no recipients")
    return [
        emit(
            InboundEmailReplyReceived(
                **envelope(ctx),
                message_id=reply.message_id,
                thread_id=reply.thread_id,
                ticket_id=opt(reply.ticket_id),
                from_=reply.from_address,
                to=recipients,
                subject=opt(reply.subject),
                received_at=iso(reply.received_at or ctx_now(ctx)),
                provider=reply.provider,
                matched_by=reply.matched_by,
            ),
            key=key("INBOUND_EMAIL_REPLY_RECEIVED", reply.message_id),
            correlation=reply.ticket_id or reply.thread_id,
        )
    ]


class OutboundEmailSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """An outgoing email through its lifecycle: queued -> sent | failed."""

    message_id: str
    status: str
    from_address: str
    to: tuple[str, ...]
    provider: str
    cc: tuple[str, ...] = ()
    subject: str | None = None
    thread_id: str | None = None
    ticket_id: str | None = None
    provider_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool | None = None


def outbound_email_changed(
    before: OutboundEmailSnapshot | None, after: OutboundEmailSnapshot, ctx: PublishContext
) -> list[DomainEvent]:
    """OUTBOUND_EMAIL_QUEUED / _SENT / _FAILED when the status enters queued, sent (needs the
    provider's message id) or failed; ``before=None`` is a new email. Same status -> ``[]``.
    Keys: ``outbound_email_queued:<messageId>``, ``outbound_email_sent:<messageId>``,
    ``outbound_email_failed:<messageId>:<occurredAt>`` (each attempt can fail).
    """
    old = "" if before is None else norm_status(before.status)
    new = norm_status(after.status)
    if old == new:
        return []
    mid = after.message_id
    at = iso(ctx_now(ctx))
    common: dict[str, Any] = {
        "message_id": mid,
        "thread_id": opt(after.thread_id),
        "ticket_id": opt(after.ticket_id),
        "provider": after.provider,
    }
    hooks: dict[str, Any] = {"correlation": after.ticket_id or mid, "from_state": old or None, "to_state": new}
    if new == "queued":
        return [
            emit(
                OutboundEmailQueued(
                    **envelope(ctx),
                    **common,
                    from_=after.from_address,
                    to=list(after.to),
                    cc=list(after.cc) if after.cc else msgspec.UNSET,
                    subject=opt(after.subject),
                    queued_at=at,
                ),
                key=key("OUTBOUND_EMAIL_QUEUED", mid),
                **hooks,
            )
        ]
    if new == "sent" and after.provider_message_id:
        return [
            emit(
                OutboundEmailSent(**envelope(ctx), **common, provider_message_id=after.provider_message_id, sent_at=at),
                key=key("OUTBOUND_EMAIL_SENT", mid),
                **hooks,
            )
        ]
    if new == "failed":
        return [
            emit(
                OutboundEmailFailed(
                    **envelope(ctx),
                    **common,
                    failed_at=at,
                    error_code=text_opt(after.error_code),
                    error_message=after.error_message or "sending failed",
                    retryable=opt(after.retryable),
                ),
                key=key("OUTBOUND_EMAIL_FAILED", mid, at),
                **hooks,
            )
        ]
    return []


# ---------------------------------------------------------------- provider webhooks (Resend/Svix format)


def _tags(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if k and v is not None}
    if isinstance(value, list):
        out: dict[str, str] = {}
        for item in value:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str) and item.get("value") is not None:
                out[item["name"]] = str(item["value"])
        return out
    return {}


def webhook_tenant_id(webhook: Mapping[str, Any]) -> str | None:
    """The tenant the platform tagged an outgoing email with (tag ``alga_tenant_id``), if any."""
    data = webhook.get("data")
    return _tags(data.get("tags") if isinstance(data, Mapping) else None).get("alga_tenant_id")


def _wire_time(value: Any) -> str | msgspec.UnsetType:
    if not isinstance(value, str) or not value:
        return msgspec.UNSET
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return msgspec.UNSET
    return iso(parsed) if parsed.tzinfo is not None else msgspec.UNSET


def email_webhook_events(
    webhook: Mapping[str, Any],
    ctx: PublishContext,
    *,
    provider: str = "resend",
    delivery_id: str | None = None,
) -> list[DomainEvent]:
    """Feedback events from an email provider webhook (Resend's format, as the reference maps it).

    ``email.delivered`` -> EMAIL_DELIVERED; ``email.bounced`` / ``email.soft_bounced`` ->
    EMAIL_BOUNCED (hard / soft, SMTP code and message when given); ``email.complained`` ->
    EMAIL_COMPLAINT_RECEIVED; ``contact.updated`` with ``unsubscribed: true`` ->
    EMAIL_UNSUBSCRIBED. Our message id comes from the tag ``alga_workflow_message_id``; a
    delivery event without it, the provider id (``email_id``) or a recipient, and every other
    type -> ``[]``. Key: ``<provider>_webhook:<deliveryId>:<type>:<outcome>``; ``delivery_id``
    is the webhook delivery id (``svix-id``), a fingerprint of the webhook when absent.
    """
    kind = webhook.get("type")
    raw = webhook.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if not isinstance(kind, str) or not kind:
        return []
    tags = _tags(data.get("tags"))
    message_id = tags.get("alga_workflow_message_id", "")
    provider_id = str(data.get("email_id") or "")
    to_value = data.get("to")
    to = str(to_value[0] if isinstance(to_value, list) and to_value else to_value or "")
    when = _wire_time(webhook.get("created_at"))
    base = f"{provider}_webhook:{delivery_id or digest(dict(webhook))}:{kind}"
    corr = tags.get("alga_correlation_id") or message_id or provider_id or None

    def one(payload: Payload, outcome: str) -> list[DomainEvent]:
        return [emit(payload, key=f"{base}:{outcome}", correlation=corr)]

    if kind == "contact.updated":
        email = str(data.get("email") or "")
        if data.get("unsubscribed") is not True or not email:
            return []
        return one(
            EmailUnsubscribed(
                **envelope(ctx),
                recipient_email=email,
                unsubscribed_at=when,
                source=provider,
                message_id=message_id or msgspec.UNSET,
            ),
            "unsubscribed",
        )
    if not (message_id and provider_id and to):
        return []
    if kind == "email.delivered":
        return one(
            EmailDelivered(
                **envelope(ctx),
                message_id=message_id,
                provider_message_id=provider_id,
                to=to,
                delivered_at=when,
                provider=provider,
            ),
            "delivered",
        )
    if kind in ("email.bounced", "email.soft_bounced"):
        return one(
            EmailBounced(
                **envelope(ctx),
                message_id=message_id,
                provider_message_id=provider_id,
                to=to,
                bounced_at=when,
                bounce_type="soft" if kind == "email.soft_bounced" else "hard",
                smtp_code=str(data["smtp_code"]) if data.get("smtp_code") else msgspec.UNSET,
                smtp_message=str(data["smtp_message"]) if data.get("smtp_message") else msgspec.UNSET,
            ),
            "bounced",
        )
    if kind == "email.complained":
        return one(
            EmailComplaintReceived(
                **envelope(ctx),
                message_id=message_id,
                provider_message_id=provider_id,
                to=to,
                complained_at=when,
                provider=provider,
                complaint_type=str(data["complaint_type"]) if data.get("complaint_type") else msgspec.UNSET,
            ),
            "complained",
        )
    return []


# ---------------------------------------------------------------- notifications


class NotificationSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A notification to one recipient on one channel: pending -> sent -> delivered -> read | failed."""

    notification_id: str
    channel: NotifyChannel
    recipient_id: str
    status: str
    template_id: str | None = None
    context_type: str | None = None
    context_id: str | None = None
    provider_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool | None = None
    read_client: str | None = None


def notification_changed(
    before: NotificationSnapshot | None, after: NotificationSnapshot, ctx: PublishContext
) -> list[DomainEvent]:
    """NOTIFICATION_SENT / _DELIVERED / _READ / _FAILED when the status enters sent, delivered,
    read or failed (``before=None``: from pending). Same status or another one -> ``[]``.
    Keys: ``<type>:<notificationId>``; failures ``notification_failed:<id>:<occurredAt>``.
    """
    old = "pending" if before is None else norm_status(before.status)
    new = norm_status(after.status)
    if old == new:
        return []
    nid = after.notification_id
    at = iso(ctx_now(ctx))
    common: dict[str, Any] = {"notification_id": nid, "channel": after.channel, "recipient_id": after.recipient_id}
    hooks: dict[str, Any] = {"correlation": after.context_id or nid, "from_state": old, "to_state": new}
    payload: NotificationSent | NotificationDelivered | NotificationRead | NotificationFailed
    if new == "sent":
        payload = NotificationSent(
            **envelope(ctx),
            **common,
            sent_at=at,
            template_id=opt(after.template_id),
            context_type=opt(after.context_type),
            context_id=opt(after.context_id),
        )
    elif new == "delivered":
        payload = NotificationDelivered(
            **envelope(ctx), **common, delivered_at=at, provider_message_id=opt(after.provider_message_id)
        )
    elif new == "read":
        payload = NotificationRead(**envelope(ctx), **common, read_at=at, client=opt(after.read_client))
    elif new == "failed":
        payload = NotificationFailed(
            **envelope(ctx),
            **common,
            failed_at=at,
            error_code=text_opt(after.error_code),
            error_message=after.error_message or "notification failed",
            retryable=opt(after.retryable),
        )
        return [emit(payload, key=key("NOTIFICATION_FAILED", nid, at), **hooks)]
    else:
        return []
    ev = emit(payload, **hooks)
    return [msgspec.structs.replace(ev, idempotency_key=key(ev.event_type, nid))]


# ---------------------------------------------------------------- surveys and CSAT


class SurveyInvite(msgspec.Struct, frozen=True, kw_only=True):
    """A survey sent to one recipient, optionally about one ticket."""

    survey_id: str
    survey_type: Literal["csat", "nps", "custom"]
    recipient_id: str
    channel: NotifyChannel
    ticket_id: str | None = None
    template_id: str | None = None


def survey_sent(invite: SurveyInvite, ctx: PublishContext) -> list[DomainEvent]:
    """SURVEY_SENT. Key: ``survey_sent:<surveyId>:<recipientId>``."""
    return [
        emit(
            SurveySent(
                **envelope(ctx),
                survey_id=invite.survey_id,
                survey_type=invite.survey_type,
                recipient_id=invite.recipient_id,
                ticket_id=opt(invite.ticket_id),
                sent_at=iso(ctx_now(ctx)),
                channel=invite.channel,
                template_id=opt(invite.template_id),
            ),
            key=key("SURVEY_SENT", invite.survey_id, invite.recipient_id),
            correlation=invite.ticket_id or invite.survey_id,
        )
    ]


def survey_reminder_sent(invite: SurveyInvite, reminder_number: int, ctx: PublishContext) -> list[DomainEvent]:
    """SURVEY_REMINDER_SENT for reminder ``reminder_number`` (1, 2, ...; anything else is a ValueError).

    Key: ``survey_reminder_sent:<surveyId>:<recipientId>:<reminderNumber>`` (each reminder once).
    """
    if isinstance(reminder_number, bool) or reminder_number < 1:
        raise ValueError(f"reminder_number must be a positive integer, got {reminder_number!r}")
    return [
        emit(
            SurveyReminderSent(
                **envelope(ctx),
                survey_id=invite.survey_id,
                recipient_id=invite.recipient_id,
                ticket_id=opt(invite.ticket_id),
                sent_at=iso(ctx_now(ctx)),
                channel=invite.channel,
                reminder_number=reminder_number,
            ),
            key=key("SURVEY_REMINDER_SENT", invite.survey_id, invite.recipient_id, reminder_number),
            correlation=invite.ticket_id or invite.survey_id,
        )
    ]


def survey_response_received(
    invite: SurveyInvite,
    response_id: str,
    score: float,
    ctx: PublishContext,
    *,
    comment: str | None = None,
    responded_at: datetime | None = None,
) -> list[DomainEvent]:
    """SURVEY_RESPONSE_RECEIVED. Key: ``survey_response_received:<responseId>``."""
    return [
        emit(
            SurveyResponseReceived(
                **envelope(ctx),
                survey_id=invite.survey_id,
                response_id=response_id,
                recipient_id=invite.recipient_id,
                ticket_id=opt(invite.ticket_id),
                responded_at=iso(responded_at or ctx_now(ctx)),
                score=float(score),
                comment=text_opt(comment),
            ),
            key=key("SURVEY_RESPONSE_RECEIVED", response_id),
            correlation=invite.ticket_id or invite.survey_id,
        )
    ]


def survey_expired(invite: SurveyInvite, ctx: PublishContext) -> list[DomainEvent]:
    """SURVEY_EXPIRED. Key: ``survey_expired:<surveyId>:<recipientId>``."""
    return [
        emit(
            SurveyExpired(
                **envelope(ctx),
                survey_id=invite.survey_id,
                recipient_id=invite.recipient_id,
                ticket_id=opt(invite.ticket_id),
                expired_at=iso(ctx_now(ctx)),
            ),
            key=key("SURVEY_EXPIRED", invite.survey_id, invite.recipient_id),
            correlation=invite.ticket_id or invite.survey_id,
        )
    ]


def survey_expiry_scan(
    invite: SurveyInvite,
    ctx: PublishContext,
    *,
    expires_at: datetime,
    last_checked_at: datetime,
    responded: bool,
) -> list[DomainEvent]:
    """Clock-driven SURVEY_EXPIRED: an unanswered survey whose ``expires_at`` falls in
    ``(last_checked_at, ctx.occurred_at]``; answered, not yet due, or already past at the last
    check -> ``[]``. Same key as :func:`survey_expired`.
    """
    now = ctx_now(ctx)
    if responded or not (as_utc(last_checked_at) < as_utc(expires_at) <= now):
        return []
    return survey_expired(invite, ctx)


def _period(window: Literal["daily", "weekly", "monthly"], now: datetime) -> str:
    if window == "daily":
        return now.date().isoformat()
    if window == "weekly":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{now.year}-{now.month:02d}"


def csat_alert(
    score: float,
    threshold: float,
    ctx: PublishContext,
    *,
    window: Literal["daily", "weekly", "monthly"],
    scope_type: Literal["agent", "team", "org"],
    scope_id: str | None = None,
    baseline: float | None = None,
) -> list[DomainEvent]:
    """CSAT_ALERT_TRIGGERED when the score is at or under ``threshold``; above it -> ``[]``.

    ``delta`` = score - baseline when a baseline is given. Key:
    ``csat_alert_triggered:<scopeType>:<scopeId|->:<window>:<period>`` where the period is the
    day, ISO week or month of ``ctx.occurred_at`` (one alert per scope and period).
    """
    if score > threshold:
        return []
    now = ctx_now(ctx)
    return [
        emit(
            CsatAlertTriggered(
                **envelope(ctx),
                window=window,
                score=float(score),
                baseline=msgspec.UNSET if baseline is None else float(baseline),
                delta=msgspec.UNSET if baseline is None else float(score) - float(baseline),
                threshold=float(threshold),
                triggered_at=iso(now),
                scope_type=scope_type,
                scope_id=opt(scope_id),
            ),
            key=key("CSAT_ALERT_TRIGGERED", scope_type, scope_id, window, _period(window, now)),
            correlation=scope_id,
        )
    ]
