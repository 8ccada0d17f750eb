"""Integration, webhook (redaction and size cap) and asset builders."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from publishers._context import Actor
from publishers.builders import (
    REDACTED,
    AssetSnapshot,
    IntegrationRef,
    SyncRunSnapshot,
    asset_changed,
    asset_warranty_scan,
    external_mapping_changed,
    integration_connection_changed,
    integration_sync_changed,
    integration_token_expiring,
    integration_token_refresh_failed,
    integration_webhook_received,
    redact_webhook_payload,
)
from schemas import REGISTRY

from ._factories import NOW, TENANT, check, ctx_at, later, make_ctx, only, types, uid, wire

SYSTEM = make_ctx(actor=Actor.system())
NINJA = IntegrationRef(integration_id=uid("integration"), provider="ninjaone", connection_id=uid("connection"))

SECRETS = ["s3cr3t-1", "s3cr3t-2", "s3cr3t-3", "s3cr3t-4", "s3cr3t-5", "s3cr3t-6", "s3cr3t-7", "s3cr3t-8"]


def nested_webhook() -> dict[str, Any]:
    """A webhook body with secrets under many key spellings, at several depths, in lists too."""
    return {
        "id": "evt-42",
        "activityType": "NODE_UPDATED",
        "Authorization": SECRETS[0],
        "device": {
            "name": "srv-01",
            "credentials": {"apiKey": SECRETS[1], "API_KEY": SECRETS[2], "user": "admin"},
            "tags": [{"X-Api-Key": SECRETS[3], "keep": 1}, {"nested": [{"PassWord": SECRETS[4]}]}],
        },
        "meta": {"Signature": SECRETS[5], "client_secret": SECRETS[6], "refreshToken": SECRETS[7]},
        "headers": [["authorization-header", "Bearer " + "abc.def"], "Bearer xyz"],
    }


def test_redaction_removes_every_secret_at_any_depth_and_case() -> None:
    """No secret value survives redaction; keys stay, values become the marker; other data is kept."""
    result = redact_webhook_payload(nested_webhook())
    text = msgspec.json.encode(result.snapshot).decode()
    for secret in [*SECRETS, "abc.def", "xyz"]:
        assert secret not in text, secret
    snap = result.snapshot
    assert snap["Authorization"] == REDACTED
    assert snap["device"]["credentials"] == REDACTED
    assert snap["device"]["tags"][0] == {"X-Api-Key": REDACTED, "keep": 1}
    assert snap["device"]["tags"][1]["nested"][0]["PassWord"] == REDACTED
    assert snap["meta"] == {"Signature": REDACTED, "client_secret": REDACTED, "refreshToken": REDACTED}
    assert (snap["device"]["name"], snap["activityType"]) == ("srv-01", "NODE_UPDATED")
    assert not result.truncated


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("token", id="token"),
        pytest.param("ACCESS_TOKEN", id="ACCESS_TOKEN"),
        pytest.param("Secret", id="Secret"),
        pytest.param("password", id="password"),
        pytest.param("passwd", id="passwd"),
        pytest.param("apiKey", id="apiKey"),
        pytest.param("api_key", id="api_key"),
        pytest.param("api-key", id="api-key"),
        pytest.param("AUTHORIZATION", id="AUTHORIZATION"),
        pytest.param("x-hub-signature-256", id="signature-header"),
        pytest.param("$secret", id="dollar-secret"),
        pytest.param("secretRef", id="secretRef"),
    ],
)
def test_each_sensitive_key_spelling_is_redacted(key: str) -> None:
    """Every spelling of a sensitive key is redacted, even deep down."""
    snap = redact_webhook_payload({"a": [{"b": {key: "leak"}}]}).snapshot
    assert snap == {"a": [{"b": {key: REDACTED}}]}


def test_redaction_accepts_json_text_and_bytes() -> None:
    """A raw JSON body (text or bytes) is parsed, then redacted."""
    for raw in ('{"token": "leak", "ok": 1}', b'{"token": "leak", "ok": 1}'):
        assert redact_webhook_payload(raw).snapshot == {"token": REDACTED, "ok": 1}
    assert redact_webhook_payload("not json").snapshot == "not json"


def test_oversized_payload_is_capped_with_a_marker() -> None:
    """A body over the limit is replaced by a marker saying it was truncated and its original size."""
    raw = {"big": "x" * 5000, "token": "leak"}
    result = redact_webhook_payload(raw, max_bytes=100)
    size = len(msgspec.json.encode({"big": "x" * 5000, "token": REDACTED}))
    assert result.truncated and result.original_size == size
    assert result.snapshot == {"truncated": True, "size": size, "max": 100}
    assert "leak" not in msgspec.json.encode(result.snapshot).decode()


def test_webhook_received_event_carries_the_redacted_capped_body() -> None:
    """INTEGRATION_WEBHOOK_RECEIVED publishes the redacted body under rawPayload, with a ref and id."""
    ev = check(integration_webhook_received(NINJA, "NODE_UPDATED", nested_webhook(), SYSTEM), SYSTEM)[0]
    doc = wire(ev)
    text = msgspec.json.encode(ev.payload).decode()
    assert not any(secret in text for secret in SECRETS)
    assert (doc["webhookId"], doc["rawPayloadRef"], doc["eventName"]) == (
        "evt-42",
        "integration-webhook:evt-42",
        "NODE_UPDATED",
    )
    assert doc["rawPayload"]["device"]["name"] == "srv-01"
    assert ev.idempotency_key == f"integration_webhook_received:{NINJA.integration_id}:evt-42"
    big = integration_webhook_received(NINJA, "X", {"blob": "y" * 20_000}, SYSTEM)[0]
    assert wire(big)["rawPayload"]["truncated"] is True
    assert len(msgspec.json.encode(big.payload)) < 2_000


def test_webhook_id_falls_back_to_a_fingerprint() -> None:
    """Without an id in the body, the webhook id is a stable sha256 fingerprint of it."""
    first = integration_webhook_received(NINJA, "X", {"a": 1, "b": 2}, SYSTEM)[0]
    again = integration_webhook_received(NINJA, "X", {"b": 2, "a": 1}, SYSTEM)[0]
    assert wire(first)["webhookId"].startswith("sha256:")
    assert first.idempotency_key == again.idempotency_key


def sync(**overrides: Any) -> SyncRunSnapshot:
    """A sync run that started a minute ago."""
    fields: dict[str, Any] = {"sync_id": "sync-1", "status": "running", "started_at": NOW - timedelta(minutes=1)}
    fields.update(overrides)
    return SyncRunSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {}, ["INTEGRATION_SYNC_STARTED"], id="started"),
        pytest.param({}, {"status": "completed", "created": 3}, ["INTEGRATION_SYNC_COMPLETED"], id="completed"),
        pytest.param({}, {"status": "failed", "error_message": "401"}, ["INTEGRATION_SYNC_FAILED"], id="failed"),
        pytest.param({}, {}, [], id="still-running"),
        pytest.param(None, {"status": "pending"}, [], id="still-pending"),
    ],
)
def test_integration_sync_changed(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """Sync lifecycle events fire on entering running, completed or failed."""
    prev = None if before is None else sync(**before)
    events = check(integration_sync_changed(NINJA, prev, sync(**after), SYSTEM), SYSTEM)
    assert types(events) == expected


def test_sync_completed_summary_and_duration() -> None:
    """Completion carries the counts given and the duration since start."""
    after = sync(status="completed", finished_at=NOW, created=3, skipped=1)
    doc = wire(integration_sync_changed(NINJA, sync(), after, SYSTEM)[0])
    assert doc["summary"] == {"created": 3, "skipped": 1}
    assert doc["durationMs"] == 60_000


@pytest.mark.parametrize(
    ("was", "now", "expected"),
    [
        pytest.param(False, True, ["INTEGRATION_CONNECTED"], id="connected"),
        pytest.param(True, False, ["INTEGRATION_DISCONNECTED"], id="disconnected"),
        pytest.param(True, True, [], id="still-connected"),
        pytest.param(False, False, [], id="still-disconnected"),
    ],
)
def test_integration_connection_changed(was: bool, now: bool, expected: list[str]) -> None:
    """Connection events fire when the connected flag flips."""
    assert types(check(integration_connection_changed(NINJA, was, now, make_ctx()))) == expected


@pytest.mark.parametrize(
    ("remaining", "days"),
    [
        pytest.param(timedelta(days=7), 7, id="exactly-7-days"),
        pytest.param(timedelta(days=3, hours=2), 4, id="3-days-rounded-up"),
        pytest.param(timedelta(hours=24), 1, id="exactly-24h"),
        pytest.param(timedelta(days=7, seconds=1), None, id="just-over-7-days"),
        pytest.param(timedelta(hours=23, minutes=59), None, id="under-24h"),
        pytest.param(timedelta(0), None, id="expiring-now"),
        pytest.param(-timedelta(hours=1), None, id="expired"),
    ],
)
def test_token_expiring_window(remaining: timedelta, days: int | None) -> None:
    """Token expiry is announced within 7 days, never with less than 24 hours left."""
    events = check(integration_token_expiring(NINJA, NOW + remaining, SYSTEM), SYSTEM)
    assert [wire(e)["daysUntilExpiry"] for e in events] == ([] if days is None else [days])


def test_token_expiring_key_is_once_per_token() -> None:
    """The expiring key names tenant, integration and the expiry instant (the reference's)."""
    expires = NOW + timedelta(days=3)
    first = integration_token_expiring(NINJA, expires, SYSTEM)[0]
    next_day = integration_token_expiring(NINJA, expires, ctx_at(later(days=1), actor=Actor.system()))[0]
    ms = int(expires.timestamp() * 1000)
    assert (
        first.idempotency_key
        == next_day.idempotency_key
        == (f"integration_token_expiring:{TENANT}:{NINJA.integration_id}:{ms}")
    )


@pytest.mark.parametrize(
    ("offset", "same_bucket"),
    [
        pytest.param(timedelta(seconds=1), True, id="1s-later"),
        pytest.param(timedelta(minutes=4, seconds=59), True, id="4m59s-later"),
        pytest.param(timedelta(minutes=5), False, id="5m-later"),
        pytest.param(timedelta(hours=1), False, id="1h-later"),
    ],
)
def test_token_refresh_failures_dedupe_in_5_minute_buckets(offset: timedelta, same_bucket: bool) -> None:
    """Refresh failures in the same 5-minute bucket share a key; later ones get a new key."""
    first = check(integration_token_refresh_failed(NINJA, SYSTEM, error_message="invalid_grant"), SYSTEM)[0]
    ctx = ctx_at(NOW + offset, actor=Actor.system())
    second = check(integration_token_refresh_failed(NINJA, ctx, error_message="invalid_grant"), ctx)[0]
    assert (first.idempotency_key == second.idempotency_key) is same_bucket
    assert first.idempotency_key is not None
    assert first.idempotency_key.startswith(f"integration_token_refresh_failed:{TENANT}:{NINJA.integration_id}:")


@pytest.mark.parametrize(
    ("previous", "new", "count"),
    [
        pytest.param("site-1", "site-2", 1, id="remapped"),
        pytest.param(None, {"id": 7}, 1, id="first-mapping"),
        pytest.param({"id": 7}, None, 1, id="unmapped"),
        pytest.param({"id": 7}, {"id": 7}, 0, id="same"),
    ],
)
def test_external_mapping_changed(previous: Any, new: Any, count: int) -> None:
    """A mapping change emits only when the mapped value differs."""
    events = check(external_mapping_changed("ninjaone", "organization", "org-1", previous, new, make_ctx()))
    assert len(events) == count


def make_asset(**overrides: Any) -> AssetSnapshot:
    """A laptop with a warranty ending in a year."""
    fields: dict[str, Any] = {
        "asset_id": uid("asset"),
        "client_id": uid("client"),
        "name": "LT-001",
        "asset_type": "workstation",
        "serial_number": "SN1",
        "warranty_expires_at": NOW + timedelta(days=365),
    }
    fields.update(overrides)
    return AssetSnapshot(**fields)


USER_OWNER: dict[str, Any] = {"owner_type": "user", "owner_id": uid("owner")}


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {}, ["ASSET_CREATED"], id="created"),
        pytest.param(
            None,
            {"warranty_expires_at": NOW + timedelta(days=10)},
            ["ASSET_CREATED", "ASSET_WARRANTY_EXPIRING"],
            id="created-warranty-ending",
        ),
        pytest.param({}, {}, [], id="nothing-changed"),
        pytest.param({}, {"name": "LT-002"}, ["ASSET_UPDATED"], id="renamed"),
        pytest.param({}, USER_OWNER, ["ASSET_UPDATED", "ASSET_ASSIGNED"], id="assigned"),
        pytest.param(
            USER_OWNER,
            {"owner_type": "user", "owner_id": uid("other")},
            ["ASSET_UPDATED", "ASSET_ASSIGNED"],
            id="reassigned",
        ),
        pytest.param(USER_OWNER, {}, ["ASSET_UPDATED", "ASSET_UNASSIGNED"], id="unassigned"),
        pytest.param(
            {},
            {"warranty_expires_at": NOW + timedelta(days=30)},
            ["ASSET_UPDATED", "ASSET_WARRANTY_EXPIRING"],
            id="warranty-moved-to-day-30",
        ),
        pytest.param(
            {}, {"warranty_expires_at": NOW + timedelta(days=31)}, ["ASSET_UPDATED"], id="warranty-moved-to-day-31"
        ),
        pytest.param(
            {"warranty_expires_at": NOW + timedelta(days=20)},
            {"warranty_expires_at": NOW + timedelta(days=10)},
            ["ASSET_UPDATED"],
            id="warranty-moved-within-window",
        ),
        pytest.param(
            {}, {"warranty_expires_at": NOW - timedelta(days=1)}, ["ASSET_UPDATED"], id="warranty-in-the-past"
        ),
    ],
)
def test_asset_changed(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """Asset events, with warranty expiring only when the end date enters the 30-day window."""
    prev = None if before is None else make_asset(**before)
    assert types(check(asset_changed(prev, make_asset(**after), make_ctx()))) == expected


def test_asset_assignment_payloads() -> None:
    """Assignment names previous and new owner; unassignment the previous one."""
    other = {"owner_type": "contact", "owner_id": uid("contact")}
    doc = wire(only(asset_changed(make_asset(**USER_OWNER), make_asset(**other), make_ctx()), "ASSET_ASSIGNED"))
    assert (doc["previousOwnerId"], doc["newOwnerType"], doc["newOwnerId"]) == (uid("owner"), "contact", uid("contact"))
    doc = wire(only(asset_changed(make_asset(**USER_OWNER), make_asset(), make_ctx()), "ASSET_UNASSIGNED"))
    assert (doc["previousOwnerType"], doc["previousOwnerId"]) == ("user", uid("owner"))


@pytest.mark.parametrize(
    ("expires", "last_checked", "count"),
    [
        pytest.param(NOW + timedelta(days=29, hours=23), NOW - timedelta(days=1), 1, id="entered-since-last-scan"),
        pytest.param(NOW + timedelta(days=20), NOW - timedelta(days=1), 0, id="already-inside"),
        pytest.param(NOW + timedelta(days=45), NOW - timedelta(days=1), 0, id="still-outside"),
        pytest.param(NOW - timedelta(days=1), NOW - timedelta(days=2), 0, id="expired"),
    ],
)
def test_asset_warranty_scan_needs_a_crossing(expires: datetime, last_checked: datetime, count: int) -> None:
    """The warranty scan announces an expiry once, when time moves it into the window."""
    events = check(
        asset_warranty_scan(make_asset(warranty_expires_at=expires), make_ctx(), last_checked_at=last_checked)
    )
    assert len(events) == count
    if events:
        assert wire(events[0])["daysUntilExpiry"] == 30


def test_warranty_key_is_shared_by_both_paths() -> None:
    """Change-driven and scan-driven warranty events dedupe on one key per warranty end."""
    end = NOW + timedelta(days=29, hours=23)
    by_change = only(
        asset_changed(make_asset(), make_asset(warranty_expires_at=end), make_ctx()), "ASSET_WARRANTY_EXPIRING"
    )
    by_scan = asset_warranty_scan(
        make_asset(warranty_expires_at=end), make_ctx(), last_checked_at=NOW - timedelta(days=1)
    )
    assert by_change.idempotency_key == by_scan[0].idempotency_key


def test_webhook_payload_passes_the_catalog_without_raw_payload() -> None:
    """The workflow side's catalog view of the webhook event drops the extra rawPayload key."""
    ev = integration_webhook_received(NINJA, "X", {"ok": 1}, SYSTEM)[0]
    typed = REGISTRY.decode_catalog_payload(ev.event_type, msgspec.json.encode(ev.payload))
    assert not hasattr(typed, "raw_payload")


def test_webhook_id_is_read_from_a_json_text_body() -> None:
    """A raw JSON body gives the same webhook id and redaction as the parsed one."""
    ev = integration_webhook_received(NINJA, "X", b'{"id": "evt-7", "Token": "leak"}', SYSTEM)[0]
    assert wire(ev)["webhookId"] == "evt-7"
    assert wire(ev)["rawPayload"] == {"id": "evt-7", "Token": REDACTED}
