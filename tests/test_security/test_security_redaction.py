"""Secrets never leave the process: webhook Authorization/signature headers, fields marked secret
and the Redis password appear 0 times in logs (caplog at DEBUG), exceptions, dead-letter entries
and metrics, through handler retries, a dead-letter move, a validation error and a decode error."""

from __future__ import annotations

import json
import logging
import secrets
import traceback
import uuid
from typing import Annotated, Any

import anyio
import msgspec
import pytest

from bus import AuthenticationError, BackendUnavailableError, BusSettings, Delivery, EventBus, PayloadValidationError
from bus.security import SECRET, redact, redact_labels, redact_text, register_secret, register_secrets, service_acl
from bus.testing import fast_settings, wait_for_stats, xadd_raw
from publishers import PublishContext, publish_domain_events
from publishers.builders import IntegrationRef, integration_webhook_received

from .conftest import AclServer

TS = "2026-01-23T10:11:12.345Z"


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Where a subscriber forwards webhooks; ``signing_secret`` is marked secret."""

    url: str
    signing_secret: Annotated[str, SECRET]


# ------------------------------------------------------------------ unit: the redaction rules


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        pytest.param("connecting to redis://svc:{s}@10.0.0.1:6379/0", "{s}", id="url-password"),
        pytest.param("rediss://:{s}@cache:6380", "{s}", id="url-password-no-user"),
        pytest.param("Authorization: Bearer {s}", "{s}", id="authorization-header"),
        pytest.param("headers={{'Authorization': 'Bearer {s}'}}", "{s}", id="repr-dict"),
        pytest.param('{{"x-hub-signature-256": "sha256={s}"}}', "{s}", id="json-signature"),
        pytest.param("X-Signature: sha256={s}\nX-Other: 1", "{s}", id="signature-line"),
        pytest.param("GET /hook?access_token={s}&page=2", "{s}", id="query-token"),
        pytest.param("REDIS_PASSWORD={s}", "{s}", id="env-assignment"),
        pytest.param("password: {s}", "{s}", id="password-colon"),
        pytest.param("{{b'cookie': b'sid={s}'}}", "{s}", id="bytes-repr"),
        pytest.param("auth failed for Basic dXNlcjp{s}", "{s}", id="basic-credential"),
    ],
)
def test_shapes_of_secrets_are_masked(text: str, secret: str) -> None:
    """Each shape (URL password, scheme credential, secret-named key in a header, JSON, repr, query) is masked."""
    value = secrets.token_hex(12)
    assert redact_text(text.format(s=value)).count(value) == 0


def test_known_values_are_masked_everywhere_and_messages_stay_readable() -> None:
    """A registered value is masked in any text, bytes or percent-encoded; config messages keep their words."""
    value = "p@ss/" + secrets.token_hex(8)
    register_secret(value)
    assert redact_text(f"x {value} y") == "x *** y"
    assert redact_text("redis://u:p%40ss%2F" + value[5:] + "@h:1").count(value[5:]) == 0
    assert redact(value.encode()) == b"***"
    assert redact_text("REDIS_PASSWORD: must be a string") == "REDIS_PASSWORD: must be a string"
    assert "WRONGPASS" in redact_text("the credentials: check REDIS_PASSWORD (WRONGPASS)")


def test_struct_fields_marked_secret_are_masked_and_registered() -> None:
    """redact() masks a Struct's SECRET and secret-named fields; register_secrets makes its reprs safe too."""
    endpoint = WebhookEndpoint(url="https://hooks.example/x", signing_secret=secrets.token_urlsafe(16))
    assert redact(endpoint) == {"url": "https://hooks.example/x", "signing_secret": "***"}
    register_secrets(endpoint)
    assert endpoint.signing_secret not in redact_text(repr(endpoint))
    assert redact_labels({"api_key": "k", "stream": "s" * 200}) == {"api_key": "***", "stream": "s" * 119 + "…"}


def test_settings_repr_and_dict_hide_the_password() -> None:
    """repr/str of BusSettings and redacted() show *** for the password and the URL's password."""
    password = secrets.token_urlsafe(16)
    settings = BusSettings.from_url(f"redis://svc:{password}@h:6379/0")
    for text in (repr(settings), str(settings), json.dumps(settings.redacted()), f"{settings!r}"):
        assert password not in text and "***" in text


# ------------------------------------------------------------------ end to end on a private redis-server


class Sinks:
    """Everything a secret could leak into, as texts."""

    def __init__(self) -> None:
        self.exceptions: list[str] = []
        self.dead_letters: list[str] = []
        self.metrics: list[str] = []

    def exception(self, exc: BaseException) -> None:
        """str, repr and the full formatted traceback (causes included)."""
        self.exceptions += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def _logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = [caplog.text]
    for record in caplog.records:
        out.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            out.append(repr(record.exc_info[1]))
        out.append(record.exc_text or "")
    return out


@pytest.mark.fault
async def test_secrets_appear_zero_times_in_logs_exceptions_dead_letters_and_metrics(
    acl_redis: AclServer, caplog: pytest.LogCaptureFixture
) -> None:
    """5 secrets appear 0 times in logs, exceptions, dead letters and metrics through retries and errors."""
    caplog.set_level(logging.DEBUG)
    redis_password = secrets.token_hex(16)
    bearer = secrets.token_urlsafe(24)
    signature = secrets.token_hex(32)
    endpoint = WebhookEndpoint(url="https://hooks.example/in", signing_secret=secrets.token_urlsafe(20))
    api_key = secrets.token_hex(20)
    register_secrets(endpoint)  # a service registers its config's secret fields at start
    all_secrets = {
        "redis password": redis_password,
        "authorization": bearer,
        "signature": signature,
        "secret field": endpoint.signing_secret,
        "api key": api_key,
    }
    user = service_acl("webhooks", roles=["publish", "consume", "inspect"], workflow="full")
    await acl_redis.run(*user.setuser_args(redis_password))
    settings = fast_settings(acl_redis.url(user.username, redis_password), max_deliveries=2, handler_retries=2)
    sinks = Sinks()
    raw_errors: list[str] = []

    async def forward(delivery: Delivery) -> None:
        """Forwards the webhook and fails, with everything in the message (as careless code does)."""
        headers = {"Authorization": f"Bearer {bearer}", "X-Hub-Signature-256": f"sha256={signature}"}
        message = (
            f"POST {endpoint!r} failed: 503; request headers={headers!r}; apiKey={api_key}; "
            f"state kept in {settings.redis_url}"
        )
        raw_errors.append(message)
        raise ConnectionError(message)

    async with EventBus(settings) as bus:
        bus.subscribe("INTEGRATION_WEBHOOK_RECEIVED", forward)
        bus.subscribe("TICKET_CREATED", forward)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            # A webhook arrives with its headers: the builder redacts them before anything is published.
            body = {
                "id": "wh-1",
                "headers": {"Authorization": f"Bearer {bearer}", "X-Hub-Signature-256": f"sha256={signature}"},
                "data": {"apiKey": api_key, "ticket": 42},
            }
            ctx = PublishContext(tenant_id="acme", occurred_at=TS)
            events = integration_webhook_received(
                IntegrationRef(integration_id=str(uuid.uuid4()), provider="github"), "push", body, ctx
            )
            await publish_domain_events(bus, events, ctx)

            # Validation errors: a secret put where an enum belongs is echoed by the schema error.
            for bad in (endpoint.signing_secret, f"Bearer {bearer}"):
                payload = {"tenantId": "acme", "occurredAt": TS, "ticketId": str(uuid.uuid4()), "actorType": bad}
                with pytest.raises(PayloadValidationError) as info:
                    await bus.publish("TICKET_CREATED", payload)
                sinks.exception(info.value)
                assert "actorType" in str(info.value)

            # A decode error: another producer wrote a secret into an invalid entry.
            envelope: dict[str, Any] = {"id": str(uuid.uuid4()), "eventType": "TICKET_CREATED", "timestamp": TS}
            envelope["payload"] = {"tenantId": "acme", "occurredAt": TS, "actorType": endpoint.signing_secret}
            await xadd_raw(bus.client, bus.keys.stream("global", "TICKET_CREATED"), {"event": json.dumps(envelope)})

            with anyio.fail_after(20):
                stats = await wait_for_stats(bus, lambda s: s.dead_lettered == 2)
            status = await bus.status()
            tg.cancel_scope.cancel()
        sinks.metrics += [
            msgspec.json.encode(bus.stats).decode(),
            msgspec.json.encode(status).decode(),
            json.dumps(redact_labels({"error": raw_errors[-1], "redis": settings.redis_url or ""})),
            repr(bus.settings),
            json.dumps(bus.settings.redacted()),
        ]
        for stream in ("INTEGRATION_WEBHOOK_RECEIVED", "TICKET_CREATED"):
            for dead in await bus.dead_letters(stream):
                sinks.dead_letters.append(repr(dead))
                sinks.dead_letters += [k.decode() + "=" + v.decode() for k, v in dead.fields.items()]
                sinks.dead_letters.append(dead.last_error)
        wire: Any = await bus.client.xrange(bus.keys.stream("global", "INTEGRATION_WEBHOOK_RECEIVED"))

    # Connect errors carry the URL's host, never its password.
    for url in (acl_redis.url(user.username, "wrong-" + redis_password), f"redis://svc:{redis_password}@127.0.0.1:1/0"):
        failing = EventBus(fast_settings(url, connect_timeout_s=1.0))
        with pytest.raises((AuthenticationError, BackendUnavailableError)) as refused:
            await failing.connect()
        sinks.exception(refused.value)
        await failing.aclose()

    assert (stats.failed, stats.retries, stats.dead_lettered, stats.invalid) == (2, 4, 2, 1)
    assert len(raw_errors) == 6  # 3 attempts x 2 deliveries
    raw = "\n".join(raw_errors)
    assert all(raw.count(value) >= 1 for value in all_secrets.values())  # the errors really carried them
    assert sum(str(w).count(signature) + str(w).count(bearer) for w in wire) == 0  # redacted before publishing
    logs = _logs(caplog)
    assert len(caplog.records) >= 6
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 4
    assert sum("dead-lettering" in r.getMessage() for r in caplog.records) == 1
    assert len(sinks.exceptions) == 4 * 3 and len(sinks.dead_letters) >= 2 * 3 and len(sinks.metrics) == 5
    counts = {
        (sink, name): sum(text.count(value) for text in texts)
        for sink, texts in (
            ("logs", logs),
            ("exceptions", sinks.exceptions),
            ("dead letters", sinks.dead_letters),
            ("metrics", sinks.metrics),
        )
        for name, value in all_secrets.items()
    }
    assert counts == dict.fromkeys(counts, 0)
    assert len(counts) == 4 * 5
