"""publish_workflow_event / publish_domain_events: enrichment order, hooks, one round trip."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from test_bus._support import (
    TS,
    USER,
    UUID,
    SendSpy,
    entries,
    open_bus,
    prefixed_keys,
    ticket_created,
    workflow_entries,
)

from bus import EventBus, PayloadValidationError, PublishResult
from publishers import (
    Actor,
    DomainEvent,
    PublishContext,
    enrich_payload,
    publish_domain_events,
    publish_workflow_event,
)
from schemas.events.tickets import TicketClosed, TicketCreated

CONTACT = "c0c0c0c0-1111-4222-8333-444455556666"
RUN = "d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09"
CTX_TIME = "2026-02-02T02:02:02.222Z"


def ctx(**overrides: Any) -> PublishContext:
    """A context for tenant "tenant-ctx" at CTX_TIME acting as USER."""
    fields: dict[str, Any] = {"tenant_id": "tenant-ctx", "occurred_at": CTX_TIME, "actor": Actor.user(USER)}
    fields.update(overrides)
    return PublishContext(**fields)


async def published(
    backend: aioredis.Redis, bus: EventBus, result: PublishResult
) -> tuple[dict[str, Any], dict[bytes, bytes]]:
    """The wire payload of the global copy and the workflow entry of a publish."""
    (fields,) = [
        f
        for f in await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))
        if json.loads(f[b"event"])["id"] == result.event_id
    ]
    (wf,) = await workflow_entries(backend, result.event_id)
    return json.loads(fields[b"event"])["payload"], dict(wf)


def test_enrichment_order_and_ctx_override() -> None:
    """Payload first (keys keep their place), then actor, then tenantId/occurredAt from ctx (overriding), then key."""
    bus = EventBus()
    payload = {"tenantId": "tenant-payload", "ticketId": UUID, "occurredAt": TS, "actorType": "SYSTEM", "x": 1}
    out = enrich_payload(bus, "TICKET_CREATED", payload, ctx(idempotency_key="ctx-key"))
    assert list(out.items()) == [
        ("tenantId", "tenant-ctx"),
        ("ticketId", UUID),
        ("occurredAt", CTX_TIME),
        ("actorType", "USER"),
        ("x", 1),
        ("actorUserId", USER),
        ("idempotencyKey", "ctx-key"),
    ]
    assert payload["tenantId"] == "tenant-payload"  # the caller's mapping is not modified


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        pytest.param(Actor.user(USER), {"actorType": "USER", "actorUserId": USER}, id="user"),
        pytest.param(Actor.contact(CONTACT), {"actorType": "CONTACT", "actorContactId": CONTACT}, id="contact"),
        pytest.param(Actor.system(), {"actorType": "SYSTEM"}, id="system"),
        pytest.param(None, {}, id="no-actor"),
    ],
)
def test_actor_overlay(actor: Actor | None, expected: dict[str, str]) -> None:
    """The actor adds exactly its reference fields; no actor adds none."""
    out = enrich_payload(EventBus(), "TICKET_CREATED", {"ticketId": UUID}, ctx(actor=actor))
    assert {k: v for k, v in out.items() if k.startswith("actor")} == expected


@pytest.mark.parametrize(
    ("argument", "in_ctx", "expected"),
    [
        pytest.param("arg", "ctx", "arg", id="argument-wins"),
        pytest.param(None, "ctx", "ctx", id="ctx"),
        pytest.param("arg", None, "arg", id="argument"),
        pytest.param(None, None, None, id="none"),
    ],
)
def test_idempotency_key_argument_wins(argument: str | None, in_ctx: str | None, expected: str | None) -> None:
    """idempotencyKey comes from the argument, else from ctx, else is absent."""
    out = enrich_payload(
        EventBus(), "TICKET_CREATED", {"ticketId": UUID}, ctx(idempotency_key=in_ctx), idempotency_key=argument
    )
    assert out.get("idempotencyKey") == expected and ("idempotencyKey" in out) == (expected is not None)


def test_occurred_at_defaults_to_now() -> None:
    """Without ctx.occurred_at, occurredAt is the publish time (ms precision, Z)."""
    out = enrich_payload(EventBus(), "TICKET_CREATED", {"ticketId": UUID}, ctx(occurred_at=None))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", out["occurredAt"])


def test_struct_payload_is_enriched_by_wire_name() -> None:
    """A Struct of the event's type starts the enrichment with its wire form; another type's Struct is refused."""
    payload = TicketCreated(tenant_id="old", occurred_at=TS, ticket_id=UUID)
    out = enrich_payload(EventBus(), "TICKET_CREATED", payload, ctx())
    assert out == {
        "tenantId": "tenant-ctx",
        "occurredAt": CTX_TIME,
        "ticketId": UUID,
        "actorType": "USER",
        "actorUserId": USER,
    }
    with pytest.raises(PayloadValidationError, match="TICKET_CLOSED payload"):
        enrich_payload(EventBus(), "TICKET_CREATED", TicketClosed(tenant_id="t", occurred_at=TS, ticket_id=UUID), ctx())


async def test_published_payload_and_workflow_entry(backend: aioredis.Redis, test_prefix: str) -> None:
    """The enriched payload is what goes on the wire; ctx's tenant and actor reach the workflow entry."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(tenant="p"), ctx())
            payload, wf = await published(backend, bus, result)
    assert payload["tenantId"] == "tenant-ctx" and payload["occurredAt"] == CTX_TIME
    assert (wf[b"tenant"], wf[b"user_id"], wf[b"event_name"]) == (b"tenant-ctx", USER.encode(), b"TICKET_CREATED")
    assert json.loads(wf[b"payload_json"]) == payload
    assert len(result.entries) == 4  # workflow + global + internal-notifications + emailservice::v7


HOOKS: list[Any] = [
    pytest.param({"correlation_id": RUN}, {}, b"execution_id", RUN.encode(), id="execution-id"),
    pytest.param({}, {"correlation_key": "ticket:42"}, b"workflow_correlation_key", b"ticket:42", id="correlation"),
    pytest.param({}, {"event_name": "Ticket Opened"}, b"event_name", b"Ticket Opened", id="event-name"),
    pytest.param({}, {"from_state": "new"}, b"from_state", b"new", id="from-state"),
    pytest.param({}, {"to_state": "open"}, b"to_state", b"open", id="to-state"),
]


@pytest.mark.parametrize(("ctx_fields", "kwargs", "field", "value"), HOOKS)
async def test_each_hook_shapes_only_the_workflow_entry(
    backend: aioredis.Redis,
    test_prefix: str,
    ctx_fields: dict[str, Any],
    kwargs: dict[str, Any],
    field: bytes,
    value: bytes,
) -> None:
    """A hook sets its workflow field (others stay ""/default) and leaves the per-type payload unchanged."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            plain = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx())
            hooked = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx(**ctx_fields), **kwargs)
            plain_payload, plain_wf = await published(backend, bus, plain)
            hooked_payload, hooked_wf = await published(backend, bus, hooked)
    assert hooked_wf[field] == value
    changed = {k for k in plain_wf if plain_wf[k] != hooked_wf[k]} - {b"event_id", b"timestamp"}
    assert changed == {field}
    assert plain_payload == hooked_payload


async def test_event_name_falls_back_to_the_payload(backend: aioredis.Redis, test_prefix: str) -> None:
    """Without the eventName hook, payload.eventName names the workflow event (else the event type)."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(eventName="Custom"), ctx())
            _, wf = await published(backend, bus, result)
    assert wf[b"event_name"] == b"Custom"


async def test_correlation_id_must_be_a_uuid(backend: aioredis.Redis, test_prefix: str) -> None:
    """A non-uuid ctx.correlation_id fails before anything is written."""
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            with pytest.raises(PayloadValidationError, match=r"\$\.ctx\.correlationId"):
                await publish_workflow_event(bus, "TICKET_CREATED", ticket_created(), ctx(correlation_id="run-1"))
            assert await prefixed_keys(backend, test_prefix) == []


async def test_struct_payload_is_published(backend: aioredis.Redis, test_prefix: str) -> None:
    """A payload Struct is enriched and validated like a mapping."""
    payload = TicketCreated(tenant_id="x", occurred_at=TS, ticket_id=UUID)
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            result = await publish_workflow_event(bus, "TICKET_CREATED", payload, ctx(actor=Actor.system()))
            wire, wf = await published(backend, bus, result)
    assert wire == {"tenantId": "tenant-ctx", "occurredAt": CTX_TIME, "ticketId": UUID, "actorType": "SYSTEM"}
    assert wf[b"user_id"] == b""


def domain_events() -> list[DomainEvent]:
    """Three builder-style events: two with hooks, one plain."""
    base: dict[str, Any] = {"tenant_id": "t", "occurred_at": TS}
    return [
        DomainEvent(
            event_type="TICKET_CREATED",
            payload=TicketCreated(**base, ticket_id=UUID),
            idempotency_key="ticket-created:1",
            correlation_key="ticket:1",
        ),
        DomainEvent(
            event_type="TICKET_CLOSED",
            payload=TicketClosed(**base, ticket_id=UUID),
            from_state="open",
            to_state="closed",
            event_name="Ticket Closed",
        ),
        DomainEvent(event_type="TICKET_CREATED", payload=TicketCreated(**base, ticket_id=USER)),
    ]


async def test_domain_events_in_one_round_trip(
    backend: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A builder's events (keys and hooks included) are written in ONE round trip, results in order."""
    async with open_bus(backend, test_prefix) as bus:
        spy = SendSpy(backend, monkeypatch)
        with anyio.fail_after(5):
            results = await publish_domain_events(bus, domain_events(), ctx())
            sent = [c[0] for c in spy.commands[0]] if len(spy.sends) == 1 else []
            wf = {
                dict(w)[b"event_id"].decode(): dict(w)
                for w in await workflow_entries(backend, *(r.event_id for r in results))
            }
    assert sent[0] == b"MULTI" and sent[-1] == b"EXEC"
    assert [r.ok for r in results] == [True, True, True]
    first, second, _ = (wf[r.event_id] for r in results)
    assert first[b"workflow_correlation_key"] == b"ticket:1"
    assert (second[b"from_state"], second[b"to_state"], second[b"event_name"]) == (b"open", b"closed", b"Ticket Closed")
    assert json.loads(first[b"payload_json"])["idempotencyKey"] == "ticket-created:1"


async def test_domain_events_strict_all_or_none(backend: aioredis.Redis, test_prefix: str) -> None:
    """Strict: one invalid event raises naming its index and nothing is written."""
    events = domain_events()
    events[1] = DomainEvent(
        event_type="TICKET_CLOSED", payload=TicketClosed(tenant_id="t", occurred_at=TS, ticket_id="no")
    )
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            with pytest.raises(PayloadValidationError) as info:
                await publish_domain_events(bus, events, ctx())
            assert await prefixed_keys(backend, test_prefix) == []
    assert info.value.path == "$[1].payload.ticketId"


async def test_domain_events_best_effort(backend: aioredis.Redis, test_prefix: str) -> None:
    """Best effort: the invalid event comes back failed; the others are written."""
    events = domain_events()
    events[1] = DomainEvent(
        event_type="TICKET_CLOSED", payload=TicketClosed(tenant_id="t", occurred_at=TS, ticket_id="no")
    )
    async with open_bus(backend, test_prefix) as bus:
        with anyio.fail_after(5):
            results = await publish_domain_events(bus, events, ctx(), strict=False)
            stored = await entries(backend, bus.keys.stream("global", "TICKET_CREATED"))
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, PayloadValidationError) and len(stored) == 2
