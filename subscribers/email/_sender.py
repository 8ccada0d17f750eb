"""Sending mail: the ``Sender`` protocol, an SMTP sender (aiosmtplib), and file/console senders for demos.

Failures are classified once, here, into :class:`SendError` with ``retryable``:

- retryable: SMTP 4xx replies, connection refused/reset/closed, timeouts;
- permanent: SMTP 5xx replies (unknown mailbox, relay denied, auth rejected), and anything
  else the server refuses for good.

:func:`send_with_retry` retries only the retryable ones, with exponential backoff and jitter,
a cap on attempts and on total time (tenacity); :meth:`RetryPolicy.no_wait` is the testing mode.
"""

from __future__ import annotations

import ssl
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Literal, Protocol, TextIO, runtime_checkable

import aiosmtplib
import anyio
import msgspec
from msgspec import Meta
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_none,
    wait_random,
)

__all__ = [
    "ConsoleSender",
    "FileSender",
    "RetryPolicy",
    "SendError",
    "SendResult",
    "Sender",
    "SmtpSender",
    "SmtpSettings",
    "send_with_retry",
]


class SendError(Exception):
    """A message was not accepted; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool, code: str | None = None) -> None:
        self.retryable = retryable
        self.code = code
        super().__init__(message)


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the transport said: the id it knows the message by and its reply text."""

    provider_message_id: str
    response: str = ""


@runtime_checkable
class Sender(Protocol):
    """Delivers one MIME message; raises :class:`SendError` on failure. ``provider`` names it in events."""

    provider: str

    async def send(self, message: EmailMessage) -> SendResult: ...


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How retryable send failures are retried: attempts, backoff (initial, max) and a total time cap."""

    attempts: Annotated[int, Meta(ge=1)] = 3
    backoff_s: Annotated[float, Meta(ge=0)] = 0.5
    backoff_max_s: Annotated[float, Meta(ge=0)] = 4.0
    #: Keep attempts x SMTP timeout + backoff under the bus's ``handler_timeout_s``: longer outages
    #: are retried by redelivery (the handler raises ``RetryLater``), not inside one handler call.
    total_s: Annotated[float, Meta(gt=0)] = 15.0

    @classmethod
    def no_wait(cls, attempts: int = 3) -> RetryPolicy:
        """Retries without sleeping (tests)."""
        return cls(attempts=attempts, backoff_s=0.0, backoff_max_s=0.0)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, SendError) and exc.retryable


async def send_with_retry(sender: Sender, message: EmailMessage, policy: RetryPolicy) -> SendResult:
    """Send, retrying retryable :class:`SendError` per ``policy``; the last error is re-raised."""
    wait = (
        wait_none()
        if policy.backoff_max_s == 0
        else wait_exponential(multiplier=policy.backoff_s, max=policy.backoff_max_s) + wait_random(0, policy.backoff_s)
    )
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.total_s),
        wait=wait,
        retry=retry_if_exception(_is_retryable),
        reraise=True,
        sleep=anyio.sleep,
    )
    async for attempt in retrying:
        with attempt:
            return await sender.send(message)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


class SmtpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where and how to reach the SMTP server.

    ``security``: ``"starttls"`` (upgrade a plain connection, port 587), ``"tls"`` (implicit
    TLS, port 465) or ``"none"`` (plain; local relays and tests only).
    """

    host: str = "localhost"
    port: Annotated[int, Meta(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    timeout_s: Annotated[float, Meta(gt=0)] = 10.0
    validate_certs: bool = True
    ca_file: str | None = None
    local_hostname: str | None = None


def _classify(exc: Exception) -> SendError:
    """Map an aiosmtplib/OS exception to a :class:`SendError`."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        codes = [r.code for r in exc.recipients]
        retryable = all(400 <= c < 500 for c in codes)
        text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return SendError(f"recipients refused: {text}", retryable=retryable, code=str(codes[0]))
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | aiosmtplib.SMTPTimeoutError):
        return SendError(f"SMTP connection failed: {exc}", retryable=True, code=type(exc).__name__)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendError(f"SMTP {exc.code}: {exc.message}", retryable=400 <= exc.code < 500, code=str(exc.code))
    if isinstance(exc, OSError | TimeoutError):
        return SendError(
            f"SMTP connection failed: {type(exc).__name__}: {exc}", retryable=True, code=type(exc).__name__
        )
    return SendError(f"SMTP send failed: {type(exc).__name__}: {exc}", retryable=False, code=type(exc).__name__)


class SmtpSender:
    """Sends over SMTP with aiosmtplib: STARTTLS or implicit TLS, optional AUTH; one connection per message."""

    provider = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.settings.security == "none":
            return None
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        if not self.settings.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def send(self, message: EmailMessage) -> SendResult:
        """Deliver ``message``; raises :class:`SendError` (retryable or not)."""
        s = self.settings
        try:
            errors, response = await aiosmtplib.send(
                message,
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password,
                use_tls=s.security == "tls",
                start_tls=s.security == "starttls",
                validate_certs=s.validate_certs,
                tls_context=self._tls_context(),
                timeout=s.timeout_s,
                local_hostname=s.local_hostname,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise _classify(exc) from exc
        if errors:
            refused = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in errors.items())
            retryable = all(400 <= r.code < 500 for r in errors.values())
            raise SendError(f"recipients refused: {refused}", retryable=retryable)
        return SendResult(provider_message_id=str(message["Message-ID"] or ""), response=response)


class FileSender:
    """Writes each message as ``<folder>/<Message-ID>.eml`` (demo and local development)."""

    provider = "file"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    async def send(self, message: EmailMessage) -> SendResult:
        """Write the message; an OS error is retryable."""
        message_id = str(message["Message-ID"] or "")
        name = message_id.strip("<>").replace("/", "_").replace("@", "_at_") or "message"
        path = self.folder / f"{name}.eml"
        try:
            await anyio.Path(self.folder).mkdir(parents=True, exist_ok=True)
            await anyio.Path(path).write_bytes(message.as_bytes())
        except OSError as exc:
            raise SendError(f"could not write {path}: {exc}", retryable=True) from exc
        return SendResult(provider_message_id=message_id, response=str(path))


class ConsoleSender:
    """Prints a summary and the text part of each message (demo)."""

    provider = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    async def send(self, message: EmailMessage) -> SendResult:
        """Print the message."""
        out = self.stream or sys.stdout
        body = message.get_body(("plain",))
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        out.write(f"--- mail to {message['To']}: {message['Subject']}\n{text}\n")
        out.flush()
        return SendResult(provider_message_id=str(message["Message-ID"] or ""), response="printed")
