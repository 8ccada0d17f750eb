"""The built-in apps of ``bus run`` and :class:`App` for your own handlers.

``bus run email|notifications|workflow|all`` loads ``subscribers.app:email`` (and so on), found
through the ``psa_event_bus.services`` entry points in ``pyproject.toml``: each is a factory
``(environ) -> list[Service]`` that reads its configuration from the environment (the CLI's
flags, when given, are written into that environment first, so a given flag wins)::

    BUS_DIRECTORY_FILE      directory of users, contacts, tickets... (JSON/YAML, see FileDirectory)
    BUS_EMAIL_SENDER        smtp | file | console (default: smtp with SMTP_HOST, file with BUS_EMAIL_OUTBOX)
    BUS_EMAIL_OUTBOX        folder for .eml files (file sender)
    BUS_EMAIL_TEMPLATES     folders searched before the built-in templates (os.pathsep-separated)
    BUS_EMAIL_FROM, BUS_EMAIL_FROM_NAME, BUS_EMAIL_PRODUCT_NAME, BUS_EMAIL_BASE_URL
    SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, SMTP_SECURITY (starttls|tls|none),
    SMTP_TIMEOUT_S, SMTP_CA_FILE, SMTP_VALIDATE_CERTS
    BUS_WORKFLOW_TRIGGERS   TYPE=module:function,...  (``*`` for every type)
    BUS_WORKFLOW_STREAM, BUS_WORKFLOW_GROUP, BUS_WORKFLOW_DLQ   (reference defaults)
    BUS_WORKFLOW_START      where a NEW workflow group starts: 0 (retained entries, default) or $ (new only)
    BUS_WORKFLOW_CONVERTER  1: also run the converter (global events without a workflow entry get one)
    BUS_CONVERTER_EVENT_TYPES   comma-separated types the converter reads (default: all known)

``workflow`` runs the workflow consumer only when triggers are configured: a consumer without
triggers in the reference's group ``workflow-runtime-v2`` would take entries away from the
reference's workflow runtime. ``all`` runs email and notifications, plus whatever of the
workflow side is configured.

Your own handlers, for ``bus run myapp:app`` (consumer group ``billing``: its own)::

    app = App("billing")

    @app.subscribe("INVOICE_SENT")
    async def remember(delivery: Delivery) -> None: ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, overload

import anyio
import anyio.abc
import msgspec

from bus import (
    CHANNEL_GLOBAL,
    WORKFLOW_DLQ,
    WORKFLOW_GROUP,
    WORKFLOW_STREAM,
    ConfigurationError,
    EventBus,
    Handler,
    Service,
)
from bus.loader import ImportStringError, load_object
from schemas import REGISTRY, SchemaError

from ._groups import check_group
from .email import (
    ConsoleSender,
    EmailSettings,
    EmailSubscriber,
    EmailTemplates,
    FileDirectory,
    FileSender,
    SmtpSender,
    SmtpSettings,
)
from .notifications import NotificationSubscriber
from .workflow import (
    ConverterSettings,
    WorkflowConsumer,
    WorkflowConsumerSettings,
    WorkflowConverter,
    WorkflowInvocation,
    WorkflowTrigger,
)

if TYPE_CHECKING:
    from .email import Directory, Sender

__all__ = ["App", "AppSettings", "all_services", "email", "log_trigger", "notifications", "parse_triggers", "workflow"]

log = logging.getLogger("subscribers.app")

H = TypeVar("H", bound=Handler)


class AppSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the built-in apps read from the environment (see the module docstring for the names)."""

    directory_file: str | None = None
    email_sender: Literal["smtp", "file", "console"] | None = None
    email_outbox: str | None = None
    email_templates: str | None = None
    email_from: str | None = None
    email_from_name: str | None = None
    email_product_name: str | None = None
    email_base_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_timeout_s: float = 10.0
    smtp_ca_file: str | None = None
    smtp_validate_certs: bool = True
    workflow_triggers: str | None = None
    workflow_stream: str = WORKFLOW_STREAM
    workflow_group: str = WORKFLOW_GROUP
    workflow_dlq: str = WORKFLOW_DLQ
    workflow_start: str = "0"
    workflow_converter: bool = False
    converter_event_types: str | None = None

    ENV: ClassVar[dict[str, str]] = {
        "BUS_DIRECTORY_FILE": "directory_file",
        "BUS_EMAIL_SENDER": "email_sender",
        "BUS_EMAIL_OUTBOX": "email_outbox",
        "BUS_EMAIL_TEMPLATES": "email_templates",
        "BUS_EMAIL_FROM": "email_from",
        "BUS_EMAIL_FROM_NAME": "email_from_name",
        "BUS_EMAIL_PRODUCT_NAME": "email_product_name",
        "BUS_EMAIL_BASE_URL": "email_base_url",
        "SMTP_HOST": "smtp_host",
        "SMTP_PORT": "smtp_port",
        "SMTP_USERNAME": "smtp_username",
        "SMTP_PASSWORD": "smtp_password",
        "SMTP_SECURITY": "smtp_security",
        "SMTP_TIMEOUT_S": "smtp_timeout_s",
        "SMTP_CA_FILE": "smtp_ca_file",
        "SMTP_VALIDATE_CERTS": "smtp_validate_certs",
        "BUS_WORKFLOW_TRIGGERS": "workflow_triggers",
        "BUS_WORKFLOW_STREAM": "workflow_stream",
        "BUS_WORKFLOW_GROUP": "workflow_group",
        "BUS_WORKFLOW_DLQ": "workflow_dlq",
        "BUS_WORKFLOW_START": "workflow_start",
        "BUS_WORKFLOW_CONVERTER": "workflow_converter",
        "BUS_CONVERTER_EVENT_TYPES": "converter_event_types",
    }
    #: One line per variable for the docs' table (docs/environment.md) (checked by ``tests/test_docs``).
    DOCS: ClassVar[dict[str, tuple[str, str]]] = {
        "BUS_DIRECTORY_FILE": ("services", "JSON/YAML directory of users and contacts (email and notifications)"),
        "BUS_EMAIL_SENDER": (
            "services",
            "`smtp`, `file` or `console` (default: smtp with a host, file with an outbox)",
        ),
        "BUS_EMAIL_OUTBOX": ("services", "folder the `file` sender writes .eml files to"),
        "BUS_EMAIL_TEMPLATES": ("services", "folder of Jinja2 templates overriding the built-in ones"),
        "BUS_EMAIL_FROM": ("services", "From address of the mails"),
        "BUS_EMAIL_FROM_NAME": ("services", "From display name"),
        "BUS_EMAIL_PRODUCT_NAME": ("services", "product name the templates show"),
        "BUS_EMAIL_BASE_URL": ("services", "base URL of links in mails"),
        "SMTP_HOST": ("services", "SMTP server"),
        "SMTP_PORT": ("services", "SMTP port"),
        "SMTP_USERNAME": ("services", "SMTP user"),
        "SMTP_PASSWORD": ("services", "SMTP password; never logged"),
        "SMTP_SECURITY": ("services", "`starttls` (default), `tls` or `none`"),
        "SMTP_TIMEOUT_S": ("services", "SMTP timeout"),
        "SMTP_CA_FILE": ("services", "CA bundle of the SMTP server's certificate"),
        "SMTP_VALIDATE_CERTS": ("services", "verify the SMTP server's certificate (default true)"),
        "BUS_WORKFLOW_TRIGGERS": ("services", "`TYPE=module:function` pairs, comma-separated (`*`: every type)"),
        "BUS_WORKFLOW_STREAM": ("services", "the workflow stream (default `workflow:events:global`)"),
        "BUS_WORKFLOW_GROUP": ("services", "the workflow consumer's group (default `workflow-runtime-v2`)"),
        "BUS_WORKFLOW_DLQ": ("services", "the workflow dead-letter stream"),
        "BUS_WORKFLOW_START": ("services", "where a new workflow group starts: `0` (retained entries) or `$`"),
        "BUS_WORKFLOW_CONVERTER": (
            "services",
            "also run the converter (workflow entries for events published without)",
        ),
        "BUS_CONVERTER_EVENT_TYPES": ("services", "event types the converter reads (default all)"),
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AppSettings:
        """Read the variables (empty means unset); a bad value raises ``ConfigurationError`` naming it."""
        env = os.environ if environ is None else environ
        values = {name: env[var] for var, name in cls.ENV.items() if env.get(var)}
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            text = str(exc)
            field = text.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in text else ""
            variable = next((k for k, v in cls.ENV.items() if v == field), "settings")
            raise ConfigurationError(variable, text.split(" - at ")[0]) from None


# --- building blocks -------------------------------------------------------------------------


def _load(spec: str, variable: str) -> Any:
    """``module:attr`` (attr may be dotted) imported at runtime, through :mod:`bus.loader`."""
    try:
        return load_object(spec)
    except ImportStringError as exc:
        raise ConfigurationError(variable, str(exc)) from None


def parse_triggers(spec: str | None) -> list[tuple[str, WorkflowTrigger]]:
    """``TYPE=module:function,...`` -> ``[(event type, trigger)]``; ``*`` means every type."""
    out: list[tuple[str, WorkflowTrigger]] = []
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        event_type, sep, target = item.partition("=")
        event_type, target = event_type.strip(), target.strip()
        if not sep or not event_type or not target:
            raise ConfigurationError("BUS_WORKFLOW_TRIGGERS", f"{item!r} is not TYPE=module:function")
        if event_type != "*":
            try:
                REGISTRY.get(event_type)
            except SchemaError as exc:
                raise ConfigurationError("BUS_WORKFLOW_TRIGGERS", str(exc)) from None
        trigger = _load(target, "BUS_WORKFLOW_TRIGGERS")
        if not callable(trigger):
            raise ConfigurationError("BUS_WORKFLOW_TRIGGERS", f"{target!r} is not callable")
        out.append((event_type, trigger))
    return out


async def log_trigger(invocation: WorkflowInvocation) -> None:
    """A workflow trigger that logs what it receives (``--trigger '*=subscribers.app:log_trigger'``)."""
    event = invocation.event
    log.info(
        "workflow trigger: %s %s (tenant %s, correlation %s)",
        event.event_type,
        event.event_id,
        event.tenant or "-",
        invocation.correlation_key or "-",
        extra={
            "event_type": event.event_type,
            "event_id": event.event_id,
            "tenant": event.tenant,
            "correlation_key": invocation.correlation_key,
            "delivery_count": invocation.delivery_count,
        },
    )


def _directory(cfg: AppSettings, service: str) -> FileDirectory:
    if not cfg.directory_file:
        raise ConfigurationError(
            "BUS_DIRECTORY_FILE",
            f"{service} needs a directory of users, contacts, tickets and projects: "
            "pass --directory FILE (JSON or YAML, see subscribers/email/_directory.py)",
        )
    try:
        return FileDirectory.from_path(cfg.directory_file)
    except OSError as exc:
        raise ConfigurationError("BUS_DIRECTORY_FILE", f"cannot read {cfg.directory_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigurationError("BUS_DIRECTORY_FILE", str(exc)) from None


def _sender(cfg: AppSettings) -> Sender:
    kind = cfg.email_sender or ("smtp" if cfg.smtp_host else "file" if cfg.email_outbox else None)
    if kind is None:
        raise ConfigurationError(
            "BUS_EMAIL_SENDER",
            "email needs a way to send: --smtp-host HOST (SMTP), --outbox DIR (.eml files) or --email-sender console",
        )
    if kind == "console":
        return ConsoleSender()
    if kind == "file":
        if not cfg.email_outbox:
            raise ConfigurationError("BUS_EMAIL_OUTBOX", "the file sender needs a folder: --outbox DIR")
        return FileSender(cfg.email_outbox)
    if not cfg.smtp_host:
        raise ConfigurationError("SMTP_HOST", "the SMTP sender needs a host: --smtp-host HOST")
    port = cfg.smtp_port or {"starttls": 587, "tls": 465, "none": 25}[cfg.smtp_security]
    values: dict[str, Any] = {
        "host": cfg.smtp_host,
        "port": port,
        "security": cfg.smtp_security,
        "username": cfg.smtp_username,
        "password": cfg.smtp_password,
        "timeout_s": cfg.smtp_timeout_s,
        "validate_certs": cfg.smtp_validate_certs,
        "ca_file": cfg.smtp_ca_file,
    }
    try:
        return SmtpSender(msgspec.convert(values, SmtpSettings))
    except msgspec.ValidationError as exc:
        raise ConfigurationError("SMTP_*", str(exc)) from None


def _email_subscriber(cfg: AppSettings, directory: Directory) -> EmailSubscriber:
    values = {
        "from_address": cfg.email_from,
        "from_name": cfg.email_from_name,
        "product_name": cfg.email_product_name,
        "base_url": cfg.email_base_url,
    }
    try:
        settings = msgspec.convert({k: v for k, v in values.items() if v is not None}, EmailSettings)
    except msgspec.ValidationError as exc:
        raise ConfigurationError("BUS_EMAIL_FROM", str(exc)) from None
    folders = [p for p in (cfg.email_templates or "").split(os.pathsep) if p]
    for folder in folders:
        if not Path(folder).is_dir():
            raise ConfigurationError("BUS_EMAIL_TEMPLATES", f"{folder} is not a folder")
    return EmailSubscriber(directory, _sender(cfg), settings=settings, templates=EmailTemplates(folders))


def _workflow_services(cfg: AppSettings) -> list[Service]:
    services: list[Service] = []
    triggers = parse_triggers(cfg.workflow_triggers)
    if triggers:
        consumer = WorkflowConsumer(
            WorkflowConsumerSettings(
                stream=cfg.workflow_stream,
                dlq=cfg.workflow_dlq,
                group=cfg.workflow_group,
                start_id=cfg.workflow_start,
            )
        )
        for event_type, trigger in triggers:
            consumer.register(event_type, trigger)
        services.append(consumer)
    if cfg.workflow_converter:
        types = tuple(t.strip() for t in (cfg.converter_event_types or "").split(",") if t.strip()) or None
        try:
            converter = WorkflowConverter(ConverterSettings(event_types=types, workflow_stream=cfg.workflow_stream))
        except SchemaError as exc:
            raise ConfigurationError("BUS_CONVERTER_EVENT_TYPES", str(exc)) from None
        services.append(converter)
    return services


# --- the built-in apps -----------------------------------------------------------------------


def email(environ: Mapping[str, str] | None = None) -> list[Service]:
    """The email subscriber (``emailservice::v7``): directory, sender, templates from the environment."""
    cfg = AppSettings.from_env(environ)
    return [_email_subscriber(cfg, _directory(cfg, "email"))]


def notifications(environ: Mapping[str, str] | None = None) -> list[Service]:
    """The in-app notification subscriber (``internal-notifications``)."""
    cfg = AppSettings.from_env(environ)
    return [NotificationSubscriber(_directory(cfg, "notifications"))]


def workflow(environ: Mapping[str, str] | None = None) -> list[Service]:
    """The workflow consumer (with the configured triggers) and/or the converter."""
    cfg = AppSettings.from_env(environ)
    services = _workflow_services(cfg)
    if not services:
        raise ConfigurationError(
            "BUS_WORKFLOW_TRIGGERS",
            "workflow has nothing to run: register triggers (--trigger TYPE=module:function) "
            "or enable the converter (--converter)",
        )
    return services


def all_services(environ: Mapping[str, str] | None = None) -> list[Service]:
    """Email and notifications (one directory), plus the workflow consumer/converter when configured."""
    cfg = AppSettings.from_env(environ)
    directory = _directory(cfg, "email and notifications")
    services: list[Service] = [_email_subscriber(cfg, directory), NotificationSubscriber(directory)]
    extra = _workflow_services(cfg)
    if not extra:
        log.info("workflow: no triggers and no converter configured; not started")
    return services + extra


class App:
    """Your own handlers as one service: ``bus run myapp:app`` subscribes them and runs the consume loop.

    It consumes in its own consumer group, ``group`` (default: the app's ``name``), so it sees
    every event of its streams and never takes entries from another service (a group splits
    the entries between its consumers; ``REDIS_EVENT_CONSUMER_GROUP`` is for the built-in
    services). Name a shared group only to split the work on purpose, e.g. between replicas.
    At start it logs a warning when other running consumers are found in its group.
    """

    def __init__(self, name: str = "app", *, group: str | None = None) -> None:
        self.name = name
        self.group = group or name
        self._subscriptions: list[tuple[str, Handler, str, str | None]] = []

    @overload
    def subscribe(self, event_type: str, handler: H, *, channel: str = ..., subscriber_id: str | None = ...) -> H: ...

    @overload
    def subscribe(
        self, event_type: str, handler: None = ..., *, channel: str = ..., subscriber_id: str | None = ...
    ) -> Callable[[H], H]: ...

    def subscribe(
        self,
        event_type: str,
        handler: Handler | None = None,
        *,
        channel: str = CHANNEL_GLOBAL,
        subscriber_id: str | None = None,
    ) -> Handler | Callable[[H], H]:
        """Register ``async def handler(delivery)`` for a type on a channel; without ``handler``, a decorator."""
        REGISTRY.get(event_type)  # unknown types fail here, with suggestions

        def add(fn: H) -> H:
            self._subscriptions.append((event_type, fn, channel, subscriber_id))
            return fn

        if handler is not None:
            return add(handler)
        return add

    async def run(self, bus: EventBus, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe every handler on ``bus`` and consume in the app's group until cancelled."""
        for event_type, handler, channel, subscriber_id in self._subscriptions:
            bus.subscribe(event_type, handler, channel=channel, subscriber_id=subscriber_id)
        if bus.settings.consumer_group != self.group:
            # The group is a bus setting today: this bus is the app's own (the runner gives each service one).
            bus.settings = msgspec.structs.replace(bus.settings, consumer_group=self.group)
        await check_group(bus, self.name)
        await bus.run(task_status=task_status)


#: ``bus run all`` (a module attribute named like the command).
all = all_services
