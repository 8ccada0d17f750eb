"""Tenant ids: rejected before any key is built when they carry glob, hash-tag, separator,
whitespace or control characters, or are too long; the error names the id and the rule."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from bus import InvalidTenantIdError, Keys, PayloadValidationError
from bus.security import check_tenant_id, tenant_acl, tenant_prefix
from bus.testing import Recorder, fake_bus, wait_for_stats, xadd_reference

TS = "2026-01-23T10:11:12.345Z"

INVALID = [
    pytest.param("acme*", "glob", id="star"),
    pytest.param("acme?", "glob", id="question-mark"),
    pytest.param("ac[me]", "glob", id="brackets"),
    pytest.param("ac]me", "glob", id="closing-bracket"),
    pytest.param("ac\\me", "glob", id="backslash"),
    pytest.param("{acme}", "hash-tag", id="hash-tag"),
    pytest.param("ac}me", "hash-tag", id="closing-brace"),
    pytest.param("acme:eu", "separator", id="separator"),
    pytest.param("ac me", "whitespace", id="space"),
    pytest.param("acme\t", "whitespace", id="tab"),
    pytest.param("acme\n", "whitespace", id="newline"),
    pytest.param("ac\x00me", "control", id="nul"),
    pytest.param("ac\u200bme", "control", id="zero-width-space"),
    pytest.param("", "empty", id="empty"),
    pytest.param("t" * 129, "129 characters", id="too-long"),
]
VALID = [str(uuid.uuid4()), "acme", "acme-corp_eu.1", "t" * 128, "société"]


@pytest.mark.parametrize(("tenant", "rule"), INVALID)
def test_invalid_tenant_ids_are_refused_naming_the_id_and_rule(tenant: str, rule: str) -> None:
    """Each invalid id raises InvalidTenantIdError whose message shows the id (repr) and the rule."""
    with pytest.raises(InvalidTenantIdError) as info:
        check_tenant_id(tenant)
    message = str(info.value)
    assert info.value.tenant_id == tenant
    assert rule in message
    assert repr(tenant[:64])[1:-1] in message


def test_all_fifteen_kinds_of_invalid_id_are_refused_by_every_key_builder() -> None:
    """Keys (markers, notification channel), tenant_prefix and tenant_acl all refuse the 15 invalid ids."""
    refused = 0
    builders: list[Callable[[str], object]] = [
        Keys.processed_events,
        Keys.processed_handlers,
        Keys().marker_events,
        Keys().marker_handlers,
        lambda t: Keys().notification_channel(t, "user-1"),
        tenant_prefix,
        tenant_acl,
    ]
    for param in INVALID:
        tenant = str(param.values[0])
        for build in builders:
            with pytest.raises(InvalidTenantIdError):
                build(tenant)
            refused += 1
    assert refused == 15 * 7


@pytest.mark.parametrize("tenant", VALID)
def test_valid_tenant_ids_pass_unchanged(tenant: str) -> None:
    """uuids, slugs, 128 characters and non-ASCII letters are accepted as they are."""
    assert check_tenant_id(tenant) == tenant
    assert Keys.processed_events(tenant) == f"processed_events:{tenant}"
    assert Keys().marker_events(tenant) == f"alga-psa:processed:{tenant}"
    assert tenant_prefix(tenant) == f"alga-psa:tenant:{tenant}:"


def _domain_ticket(tenant: str) -> dict[str, Any]:
    return {"tenantId": tenant, "occurredAt": TS, "ticketId": str(uuid.uuid4()), "actorType": "SYSTEM"}


async def test_idempotent_publish_refuses_an_invalid_tenant_before_writing() -> None:
    """An idempotent publish (the tenant is in the marker key) with tenant 'acme*' writes nothing."""
    async with fake_bus() as bus:
        with pytest.raises(PayloadValidationError) as info:
            await bus.publish("TICKET_CREATED", _domain_ticket("acme*"), idempotency_key="k1")
        assert info.value.path == "$.payload.tenantId"
        assert "'acme*'" in str(info.value) and "glob" in str(info.value)
        with pytest.raises(PayloadValidationError) as explicit:
            await bus.publish("TICKET_CREATED", _domain_ticket("acme"), idempotency_key="k1", tenant="{acme}")
        assert explicit.value.path == "$.tenant"
        assert await bus.client.dbsize() == 0


async def test_consumer_dead_letters_an_event_with_an_invalid_tenant_without_building_its_keys() -> None:
    """An entry with tenantId 'acme*' is dead-lettered as invalid and builds no marker key; a valid one is handled."""
    async with fake_bus() as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(bus.client, "TICKET_CREATED", _domain_ticket("acme*"), keys=bus.keys)
            await xadd_reference(bus.client, "TICKET_CREATED", _domain_ticket("acme"), keys=bus.keys)
            with anyio.fail_after(5):
                stats = await wait_for_stats(bus, lambda s: s.handled + s.dead_lettered == 2)
            tg.cancel_scope.cancel()
        assert (stats.handled, stats.dead_lettered, stats.invalid) == (1, 1, 1)
        [dead] = await bus.dead_letters("TICKET_CREATED")
        assert dead.reason == "invalid"
        assert "invalid tenant id 'acme*'" in dead.last_error and "glob" in dead.last_error
        found: list[Any] = await bus.client.keys("*processed*")
        keys = sorted(k.decode() for k in found)
        assert keys == [bus.keys.marker_events("acme"), bus.keys.marker_events("acme") + ":born"]


def test_checked_tenant_ids_hold_only_ids_found_valid() -> None:
    """The cache the consume loop tests first holds an id once it passed the check, never a refused one."""
    from bus._tenant import checked_tenant_ids, tenant_id_problem

    good, bad = f"tenant-{uuid.uuid4()}", f"tenant-{uuid.uuid4()}:x"
    checked = checked_tenant_ids()
    assert good not in checked
    assert tenant_id_problem(good) is None and tenant_id_problem(bad) is not None
    assert good in checked and bad not in checked
    assert checked_tenant_ids() is checked  # the same set for the process's life
