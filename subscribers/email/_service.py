"""The email subscriber: turns ticket and project events on ``emailservice::v7`` into mail.

For each event it resolves the audience (see :mod:`subscribers.email._audience`), renders one
message per recipient from the templates, sends it with retries, and reports each message on
the bus as ``OUTBOUND_EMAIL_QUEUED`` then ``OUTBOUND_EMAIL_SENT`` or ``OUTBOUND_EMAIL_FAILED``.

Redelivery is safe: every message has a deterministic id (uuid5 of event id and address), and
messages already sent or permanently refused are recorded in Redis, so a redelivered event only
retries the recipients whose send failed retryably. When a retryable failure outlasts the retry
policy the handler raises :class:`bus.RetryLater` after finishing the other recipients, so the
bus delivers the event again later.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import msgspec
from msgspec import Meta

from bus import CHANNEL_EMAIL, EventBus, RetryLater, routing
from publishers import Actor, PublishContext
from schemas import EMAIL_PATTERN, is_uuid, utc_now_iso

from .._emit import emit
from .._groups import check_group
from .._keys import SubscriberKeys
from .._payload import get_str
from ._audience import Audience, Party, resolve_audience
from ._directory import Directory
from ._sender import RetryPolicy, Sender, SendError, send_with_retry
from ._templates import EmailTemplates, normalize_changes

if TYPE_CHECKING:
    from bus import Delivery

__all__ = [
    "EMAIL_EVENT_TYPES",
    "NOT_MAILED_EVENT_TYPES",
    "OFF_ROUTE_EVENT_TYPES",
    "EmailOutcome",
    "EmailSettings",
    "EmailSubscriber",
    "SentEmail",
]

log = logging.getLogger("subscribers.email")

#: Routed to ``emailservice::v7`` by the fan-out but not mailed here: appointment requests have
#: no email templates (the reference's own email service keeps handling them).
NOT_MAILED_EVENT_TYPES: frozenset[str] = frozenset(t for t in routing.EMAIL_EVENT_TYPES if t.startswith("APPOINTMENT_"))
#: Mailed here although the fan-out never copies them to ``emailservice::v7``: they arrive only
#: when published there explicitly (``channel="emailservice::v7"``).
OFF_ROUTE_EVENT_TYPES: frozenset[str] = frozenset({"TASK_COMMENT_ADDED"})

#: The types the email subscriber takes: the fan-out's email set, less the ones not mailed, plus
#: the off-route ones (sorted; each has a template).
EMAIL_EVENT_TYPES: tuple[str, ...] = tuple(
    sorted((routing.EMAIL_EVENT_TYPES - NOT_MAILED_EVENT_TYPES) | OFF_ROUTE_EVENT_TYPES)
)

_NAMESPACE = uuid.UUID("6f1c7a2e-4d0b-5b7e-9a51-3c2d8e0f4a17")


class EmailSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Sender identity, links, retry policy and which events the subscriber takes."""

    from_address: Annotated[str, Meta(pattern=EMAIL_PATTERN)] = "noreply@psa.localhost"
    from_name: str = "PSA"
    product_name: str = "PSA"
    #: Links in mail: ``{base_url}/msp/tickets/{id}`` etc. when the record has no ``url``.
    base_url: str | None = None
    #: Right-hand side of generated Message-IDs; defaults to the from-address domain.
    message_id_domain: str | None = None
    retry: RetryPolicy = RetryPolicy()
    handled_ttl_s: Annotated[int, Meta(gt=0)] = 3 * 24 * 3600
    channel: str = CHANNEL_EMAIL
    subscriber_id: str = "email-subscriber"
    event_types: tuple[str, ...] = EMAIL_EVENT_TYPES

    @property
    def domain(self) -> str:
        """The Message-ID domain."""
        return self.message_id_domain or self.from_address.rpartition("@")[2] or "localhost"


class SentEmail(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one message of an event."""

    message_id: str
    to: str
    subject: str
    status: Literal["sent", "failed", "skipped"]
    error: str | None = None
    retryable: bool = False


class EmailOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The messages one event produced."""

    event_id: str
    event_type: str
    emails: tuple[SentEmail, ...] = ()


def _angle(message_id: str) -> str:
    value = message_id.strip()
    return value if value.startswith("<") else f"<{value}>"


class EmailSubscriber:
    """Service object: ``await EmailSubscriber(directory, sender).run(bus)`` mails on ``emailservice::v7`` events."""

    #: Service name (the runner derives consumer names from it).
    name = "email"

    def __init__(
        self,
        directory: Directory,
        sender: Sender,
        *,
        settings: EmailSettings | None = None,
        templates: EmailTemplates | None = None,
    ) -> None:
        self.directory = directory
        self.sender = sender
        self.settings = settings or EmailSettings()
        self.templates = templates or EmailTemplates()

    # --- rendering ---------------------------------------------------------------------------
    def _link(self, audience: Audience) -> str | None:
        base = (self.settings.base_url or "").rstrip("/")
        if audience.ticket is not None:
            return audience.ticket.url or (f"{base}/msp/tickets/{audience.ticket.id}" if base else None)
        if audience.task is not None and audience.task.url:
            return audience.task.url
        if audience.project is not None:
            return audience.project.url or (f"{base}/msp/projects/{audience.project.id}" if base else None)
        return None

    def _details(self, audience: Audience) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        if (t := audience.ticket) is not None:
            rows += [("Ticket", f"#{t.number}" if t.number else ""), ("Title", t.title), ("Status", t.status)]
            rows += [("Priority", t.priority), ("Client", t.client_name)]
        elif (p := audience.project) is not None:
            rows += [("Project", p.name), ("Number", p.number), ("Status", p.status), ("Client", p.client_name)]
            if audience.task is not None:
                rows.append(("Task", audience.task.name))
        return [(label, value) for label, value in rows if value]

    def context(self, audience: Audience, party: Party, payload: Mapping[str, Any], event_id: str) -> dict[str, Any]:
        """The template context for one recipient (public so custom templates can be previewed)."""
        changes = payload.get("changes")
        fields = payload.get("updatedFields")
        return {
            "event_type": audience.event_type,
            "event_id": event_id,
            "tenant_id": audience.tenant_id,
            "recipient": party,
            "actor": audience.actor,
            "actor_name": (audience.actor.name if audience.actor and audience.actor.name else "Someone"),
            "ticket": audience.ticket,
            "project": audience.project,
            "task": audience.task,
            "comment": audience.comment,
            "payload": payload,
            "changes": normalize_changes(changes, fields if isinstance(fields, list) else None),
            "details": self._details(audience),
            "link": self._link(audience),
            "product_name": self.settings.product_name,
        }

    def build_message(
        self, audience: Audience, party: Party, payload: Mapping[str, Any], event_id: str, message_id: str
    ) -> EmailMessage:
        """The MIME message (text + HTML alternative) with threading headers when the ticket has a thread."""
        rendered = self.templates.render(audience.event_type, self.context(audience, party, payload, event_id))
        msg = EmailMessage()
        msg["From"] = formataddr((self.settings.from_name, self.settings.from_address))
        msg["To"] = formataddr((party.name, party.email or ""))
        msg["Subject"] = rendered.subject
        msg["Message-ID"] = f"<{message_id}@{self.settings.domain}>"
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-PSA-Event-Id"] = event_id
        msg["X-PSA-Event-Type"] = audience.event_type
        thread = audience.ticket.email if audience.ticket is not None else None
        if thread is not None and thread.message_id:
            parent = _angle(thread.message_id)
            refs = [_angle(r) for r in thread.references if r.strip()]
            if parent not in refs:
                refs.append(parent)
            msg["In-Reply-To"] = parent
            msg["References"] = " ".join(refs)
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        return msg

    # --- handling ----------------------------------------------------------------------------
    async def handle(self, bus: EventBus, event_type: str, event_id: str, payload: Mapping[str, Any]) -> EmailOutcome:
        """Mail everyone the event concerns; raises :class:`bus.RetryLater` if a retryable failure remains."""
        if not self.templates.has(event_type):
            log.warning("no email template for %s (event %s); skipped", event_type, event_id)
            return EmailOutcome(event_id=event_id, event_type=event_type)
        audience = await resolve_audience(self.directory, event_type, payload)
        keys = SubscriberKeys(bus.keys.prefix)
        handled_key = keys.email_sent(event_id)
        handled = {m.decode() if isinstance(m, bytes) else str(m) for m in await bus.client.smembers(handled_key)}
        results: list[SentEmail] = []
        pending_retry: list[str] = []
        for party in audience.parties:
            if not party.email:
                continue
            message_id = str(uuid.uuid5(_NAMESPACE, f"{event_id}:{party.email.lower()}"))
            if message_id in handled:
                results.append(SentEmail(message_id=message_id, to=party.email, subject="", status="skipped"))
                continue
            result = await self._deliver(bus, audience, party, payload, event_id, message_id)
            results.append(result)
            if result.status == "failed" and result.retryable:
                pending_retry.append(party.email)
            else:
                async with bus.client.pipeline(transaction=True) as pipe:
                    pipe.sadd(handled_key, message_id)
                    pipe.expire(handled_key, self.settings.handled_ttl_s)
                    await pipe.execute()
        outcome = EmailOutcome(event_id=event_id, event_type=event_type, emails=tuple(results))
        if pending_retry:
            raise RetryLater(f"{event_type} {event_id}: mail to {', '.join(pending_retry)} failed retryably")
        return outcome

    async def _deliver(
        self,
        bus: EventBus,
        audience: Audience,
        party: Party,
        payload: Mapping[str, Any],
        event_id: str,
        message_id: str,
    ) -> SentEmail:
        assert party.email is not None
        msg = self.build_message(audience, party, payload, event_id, message_id)
        subject = str(msg["Subject"])
        ctx = PublishContext(tenant_id=audience.tenant_id, actor=Actor.system())
        common: dict[str, Any] = {"messageId": message_id, "provider": self.sender.provider}
        if ticket_id := get_str(payload, "ticketId"):
            common["ticketId"] = ticket_id
        thread = audience.ticket.email if audience.ticket is not None else None
        if thread is not None and thread.thread_id and is_uuid(thread.thread_id):
            common["threadId"] = thread.thread_id
        queued = {**common, "from": self.settings.from_address, "to": [party.email], "subject": subject}
        await emit(bus, "OUTBOUND_EMAIL_QUEUED", {**queued, "queuedAt": utc_now_iso()}, ctx)
        try:
            sent = await send_with_retry(self.sender, msg, self.settings.retry)
        except SendError as exc:
            log.warning(
                "mail %s of %s %s failed (retryable=%s): %s",
                message_id,
                audience.event_type,
                event_id,
                exc.retryable,
                exc,
                extra={"event_type": audience.event_type, "event_id": event_id, "message_id": message_id},
            )
            failed = {**common, "failedAt": utc_now_iso(), "errorMessage": str(exc) or "send failed"}
            failed["retryable"] = exc.retryable
            if exc.code:
                failed["errorCode"] = exc.code
            await emit(bus, "OUTBOUND_EMAIL_FAILED", failed, ctx)
            return SentEmail(
                message_id=message_id,
                to=party.email,
                subject=subject,
                status="failed",
                error=str(exc),
                retryable=exc.retryable,
            )
        provider_id = sent.provider_message_id or str(msg["Message-ID"])
        recipients = len(getaddresses(msg.get_all("To", []) + msg.get_all("Cc", [])))
        log.info(
            "mail %s of %s %s sent to %d recipient(s)",
            message_id,
            audience.event_type,
            event_id,
            recipients,
            extra={
                "event_type": audience.event_type,
                "event_id": event_id,
                "tenant": audience.tenant_id,
                "message_id": message_id,
                "recipients": recipients,
            },
        )
        await emit(
            bus, "OUTBOUND_EMAIL_SENT", {**common, "providerMessageId": provider_id, "sentAt": utc_now_iso()}, ctx
        )
        return SentEmail(message_id=message_id, to=party.email, subject=subject, status="sent")

    # --- service -----------------------------------------------------------------------------
    def subscribe(self, bus: EventBus) -> None:
        """Register the handler for every configured type on the email channel (before ``bus.run``)."""

        async def on_delivery(delivery: Delivery) -> None:
            await self.handle(bus, delivery.event_type, delivery.event_id, delivery.payload_dict())

        for event_type in self.settings.event_types:
            bus.subscribe(
                event_type, on_delivery, channel=self.settings.channel, subscriber_id=self.settings.subscriber_id
            )

    async def run(self, bus: EventBus, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, then run the bus consume loop until cancelled (``task_status`` once the groups exist)."""
        self.subscribe(bus)
        await check_group(bus, self.name, shared_by_design=True)  # the reference's group, on purpose
        await bus.run(task_status=task_status)
