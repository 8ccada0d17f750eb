"""Integration, webhook and asset builders, and webhook payload redaction.

Idempotency keys: syncs carry integration and sync id; connection changes carry integration,
connection and ``ctx.occurred_at``; the reference's keys are kept for tokens
(``integration_token_expiring:<tenantId>:<integrationId>:<expiresAtMs>``, once per token, and
``integration_token_refresh_failed:<tenantId>:<integrationId>:<5-minute bucket>``, at most one
failure event per integration every 5 minutes); webhooks carry integration and webhook id;
assets: ``asset_created:<id>``, ownership transitions with ``ctx.occurred_at``, warranty
``asset_warranty_expiring:<assetId>:<expiry date>`` (once per warranty end).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

from schemas.events.assets import AssetAssigned, AssetCreated, AssetUnassigned, AssetUpdated, AssetWarrantyExpiring
from schemas.events.integrations import (
    ExternalMappingChanged,
    IntegrationConnected,
    IntegrationDisconnected,
    IntegrationSyncCompleted,
    IntegrationSyncCompletedSummary,
    IntegrationSyncFailed,
    IntegrationSyncStarted,
    IntegrationTokenExpiring,
    IntegrationTokenRefreshFailed,
    IntegrationWebhookReceived,
)

from .._context import DomainEvent, PublishContext
from ._util import (
    actor_user_id,
    as_utc,
    ctx_now,
    days_until,
    diff_entities,
    digest,
    emit,
    envelope,
    iso,
    iso_opt,
    json_value,
    norm_status,
    opt,
    text_opt,
    time_bucket,
    window_entered,
)
from ._util import idem_key as key

__all__ = [
    "REDACTED",
    "SENSITIVE_KEY_PATTERN",
    "TOKEN_EXPIRING_MINIMUM",
    "TOKEN_EXPIRING_WINDOW",
    "TOKEN_REFRESH_FAILED_BUCKET",
    "WARRANTY_WINDOW",
    "WEBHOOK_SNAPSHOT_MAX_BYTES",
    "AssetSnapshot",
    "IntegrationRef",
    "IntegrationWebhookReceivedPayload",
    "RedactedPayload",
    "SyncRunSnapshot",
    "asset_changed",
    "asset_warranty_scan",
    "external_mapping_changed",
    "integration_connection_changed",
    "integration_sync_changed",
    "integration_token_expiring",
    "integration_token_refresh_failed",
    "integration_webhook_received",
    "redact_webhook_payload",
]

TOKEN_EXPIRING_WINDOW: Final = timedelta(days=7)
TOKEN_EXPIRING_MINIMUM: Final = timedelta(hours=24)
TOKEN_REFRESH_FAILED_BUCKET: Final = timedelta(minutes=5)
WARRANTY_WINDOW: Final = timedelta(days=30)
WEBHOOK_SNAPSHOT_MAX_BYTES: Final = 10_000

#: Keys whose values never leave the process: matched anywhere in the key, in any case.
SENSITIVE_KEY_PATTERN: Final = re.compile(
    r"secret|token|passw(or)?d|api[_\-\s]?key|authori[sz]ation|signature|credential|private[_\-\s]?key|cookie",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(r"^\s*(bearer|basic|token)\s+\S+", re.IGNORECASE)
REDACTED: Final = "***"
_MAX_DEPTH = 64


# ---------------------------------------------------------------- redaction


class RedactedPayload(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook body safe to publish: secrets replaced, and replaced whole by a marker
    ``{"truncated": true, "size": <bytes>, "max": <limit>}`` when it is too large."""

    snapshot: Any
    truncated: bool
    original_size: int
    max_bytes: int


def _document(raw: Any) -> Any:
    """A JSON text or bytes body parsed; anything else as given (unparseable text stays text)."""
    if isinstance(raw, bytes | bytearray | str):
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    return raw


def _redact(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return "[TOO DEEP]"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            name = str(k)
            out[name] = REDACTED if SENSITIVE_KEY_PATTERN.search(name) else _redact(v, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, str):
        return REDACTED if _SECRET_VALUE.match(value) else value
    if value is None or isinstance(value, bool | int | float):
        return value
    try:
        return _redact(json_value(value), depth + 1)
    except TypeError:
        return "[UNSERIALIZABLE]"


def redact_webhook_payload(raw: Any, *, max_bytes: int = WEBHOOK_SNAPSHOT_MAX_BYTES) -> RedactedPayload:
    """Redact a webhook body for publishing.

    Every value under a key matching :data:`SENSITIVE_KEY_PATTERN` (token, secret, password,
    apiKey/api_key/api-key, authorization, signature, credential, private key, cookie; any
    case, any depth, inside lists too) becomes ``"***"``, as do string values that carry a
    scheme credential (``Bearer ...``, ``Basic ...``). A JSON text or bytes body is parsed
    first (unparseable text is kept as a string). When the redacted body's compact JSON is
    larger than ``max_bytes`` the snapshot is only the truncation marker with the size.
    """
    redacted = _redact(_document(raw), 0)
    size = len(msgspec.json.encode(redacted))
    if size <= max_bytes:
        return RedactedPayload(snapshot=redacted, truncated=False, original_size=size, max_bytes=max_bytes)
    marker = {"truncated": True, "size": size, "max": max_bytes}
    return RedactedPayload(snapshot=marker, truncated=True, original_size=size, max_bytes=max_bytes)


# ---------------------------------------------------------------- integrations


class IntegrationRef(msgspec.Struct, frozen=True, kw_only=True):
    """Which integration (and which connection of it) an event is about."""

    integration_id: str
    provider: str
    connection_id: str | None = None


class IntegrationWebhookReceivedPayload(IntegrationWebhookReceived, frozen=True, kw_only=True):
    """INTEGRATION_WEBHOOK_RECEIVED plus ``rawPayload``: the redacted, size-capped body.

    The catalog shape only has ``rawPayloadRef``; validation strips ``rawPayload`` from the
    typed view, the wire (and the workflow entry's payload_json) keeps it.
    """

    raw_payload: Any = msgspec.field(default=UNSET, name="rawPayload")


def _webhook_id(body: Any) -> str:
    raw = _document(body)
    if isinstance(raw, Mapping):
        for field in ("id", "webhookId", "activityId", "eventId"):
            value = raw.get(field)
            if value is not None and str(value):
                return str(value)
    try:
        data = msgspec.json.encode(raw, order="sorted")
    except (TypeError, ValueError):
        data = repr(raw).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()[:24]


def integration_webhook_received(
    integration: IntegrationRef,
    event_name: str,
    raw_payload: Any,
    ctx: PublishContext,
    *,
    webhook_id: str | None = None,
    max_bytes: int = WEBHOOK_SNAPSHOT_MAX_BYTES,
) -> list[DomainEvent]:
    """INTEGRATION_WEBHOOK_RECEIVED with the body redacted and capped (:func:`redact_webhook_payload`).

    ``webhookId``: the argument, else the body's ``id``/``webhookId``/``activityId``/``eventId``,
    else ``sha256:<24 hex>`` of the body; ``rawPayloadRef`` = ``integration-webhook:<webhookId>``.
    Key: ``integration_webhook_received:<integrationId>:<webhookId>``.
    """
    wid = webhook_id or _webhook_id(raw_payload)
    snapshot = redact_webhook_payload(raw_payload, max_bytes=max_bytes)
    return [
        emit(
            IntegrationWebhookReceivedPayload(
                **envelope(ctx),
                integration_id=integration.integration_id,
                provider=integration.provider,
                connection_id=opt(integration.connection_id),
                webhook_id=wid,
                event_name=event_name,
                received_at=iso(ctx_now(ctx)),
                raw_payload_ref=f"integration-webhook:{wid}",
                raw_payload=snapshot.snapshot,
            ),
            key=key("INTEGRATION_WEBHOOK_RECEIVED", integration.integration_id, wid),
            correlation=integration.integration_id,
        )
    ]


class SyncRunSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One sync run of an integration: pending -> running -> completed | failed."""

    sync_id: str
    status: str
    scope: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created: int | None = None
    updated: int | None = None
    deleted: int | None = None
    skipped: int | None = None
    warnings: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool | None = None


def integration_sync_changed(
    integration: IntegrationRef, before: SyncRunSnapshot | None, after: SyncRunSnapshot, ctx: PublishContext
) -> list[DomainEvent]:
    """INTEGRATION_SYNC_STARTED / _COMPLETED / _FAILED when the run enters running, completed
    or failed (``before=None``: from pending; hooks from/to). ``durationMs`` from the run's
    start and finish when both are known. Same status -> ``[]``.
    Keys: ``<type>:<integrationId>:<syncId>``.
    """
    old = "pending" if before is None else norm_status(before.status)
    new = norm_status(after.status)
    if old == new:
        return []
    at = iso(ctx_now(ctx))
    common: dict[str, Any] = {
        "integration_id": integration.integration_id,
        "provider": integration.provider,
        "connection_id": opt(integration.connection_id),
        "sync_id": after.sync_id,
    }
    started = iso_opt(after.started_at)
    finished = iso_opt(after.finished_at) or at
    duration: int | UnsetType = UNSET
    if after.started_at is not None:
        end = after.finished_at or ctx_now(ctx)
        duration = max(0, int((as_utc(end) - as_utc(after.started_at)).total_seconds() * 1000))
    payload: IntegrationSyncStarted | IntegrationSyncCompleted | IntegrationSyncFailed
    if new == "running":
        payload = IntegrationSyncStarted(
            **envelope(ctx),
            **common,
            scope=text_opt(after.scope),
            initiated_by_user_id=actor_user_id(ctx),
            started_at=started or at,
        )
    elif new == "completed":
        counts = {k: getattr(after, k) for k in ("created", "updated", "deleted", "skipped")}
        summary = (
            IntegrationSyncCompletedSummary(**{k: opt(v) for k, v in counts.items()})
            if any(v is not None for v in counts.values())
            else UNSET
        )
        payload = IntegrationSyncCompleted(
            **envelope(ctx),
            **common,
            started_at=started,
            completed_at=finished,
            duration_ms=duration,
            summary=summary,
            warnings=list(after.warnings) if after.warnings else UNSET,
        )
    elif new == "failed":
        payload = IntegrationSyncFailed(
            **envelope(ctx),
            **common,
            started_at=started,
            failed_at=finished,
            duration_ms=duration,
            error_code=text_opt(after.error_code),
            error_message=after.error_message or "sync failed",
            retryable=opt(after.retryable),
        )
    else:
        return []
    ev = emit(payload, correlation=integration.integration_id, from_state=old, to_state=new)
    return [msgspec.structs.replace(ev, idempotency_key=key(ev.event_type, integration.integration_id, after.sync_id))]


def integration_connection_changed(
    integration: IntegrationRef,
    was_connected: bool,
    is_connected: bool,
    ctx: PublishContext,
    *,
    reason: str | None = None,
) -> list[DomainEvent]:
    """INTEGRATION_CONNECTED / _DISCONNECTED when the connected flag flips (a connection id
    is required); no flip -> ``[]``. Key: ``<type>:<integrationId>:<connectionId>:<occurredAt>``.
    """
    if was_connected == is_connected:
        return []
    if not integration.connection_id:
        raise ValueError(f"integration {integration.integration_id}: connection events need a connection_id")
    at = iso(ctx_now(ctx))
    iid, conn = integration.integration_id, integration.connection_id
    if is_connected:
        payload: IntegrationConnected | IntegrationDisconnected = IntegrationConnected(
            **envelope(ctx),
            integration_id=iid,
            provider=integration.provider,
            connection_id=conn,
            connected_at=at,
            connected_by_user_id=actor_user_id(ctx),
        )
    else:
        payload = IntegrationDisconnected(
            **envelope(ctx),
            integration_id=iid,
            provider=integration.provider,
            connection_id=conn,
            disconnected_at=at,
            disconnected_by_user_id=actor_user_id(ctx),
            reason=text_opt(reason),
        )
    ev = emit(
        payload,
        correlation=iid,
        from_state="connected" if was_connected else "disconnected",
        to_state="connected" if is_connected else "disconnected",
    )
    return [msgspec.structs.replace(ev, idempotency_key=key(ev.event_type, iid, conn, at))]


def integration_token_expiring(
    integration: IntegrationRef,
    expires_at: datetime,
    ctx: PublishContext,
    *,
    window: timedelta = TOKEN_EXPIRING_WINDOW,
    minimum: timedelta = TOKEN_EXPIRING_MINIMUM,
) -> list[DomainEvent]:
    """INTEGRATION_TOKEN_EXPIRING when the token expires within ``window`` (7 days) but not
    under ``minimum`` (24 h: too late to act, the refresh path owns it); expired, under 24 h
    or further than 7 days -> ``[]``. ``daysUntilExpiry`` is rounded up.
    Key (the reference's, once per token): ``integration_token_expiring:<tenantId>:<integrationId>:<expiresAtMs>``.
    """
    now = ctx_now(ctx)
    remaining = as_utc(expires_at) - now
    if remaining <= timedelta(0) or remaining < minimum or remaining > window:
        return []
    expires_ms = int(as_utc(expires_at).timestamp() * 1000)
    return [
        emit(
            IntegrationTokenExpiring(
                **envelope(ctx),
                integration_id=integration.integration_id,
                provider=integration.provider,
                connection_id=integration.connection_id or integration.integration_id,
                expires_at=iso(expires_at),
                days_until_expiry=days_until(expires_at, now),
                notified_at=iso(now),
            ),
            key=f"integration_token_expiring:{ctx.tenant_id}:{integration.integration_id}:{expires_ms}",
            correlation=integration.integration_id,
        )
    ]


def integration_token_refresh_failed(
    integration: IntegrationRef,
    ctx: PublishContext,
    *,
    error_message: str,
    error_code: str | None = None,
    retryable: bool | None = None,
) -> list[DomainEvent]:
    """INTEGRATION_TOKEN_REFRESH_FAILED, deduplicated in 5-minute buckets of ``ctx.occurred_at``.

    Key (the reference's): ``integration_token_refresh_failed:<tenantId>:<integrationId>:<bucket>``
    with bucket = epoch ms // 300000, so a refresh loop failing every second publishes one
    event per integration per 5 minutes. Without a connection id the integration id stands in.
    """
    now = ctx_now(ctx)
    bucket = time_bucket(now, TOKEN_REFRESH_FAILED_BUCKET)
    return [
        emit(
            IntegrationTokenRefreshFailed(
                **envelope(ctx),
                integration_id=integration.integration_id,
                provider=integration.provider,
                connection_id=integration.connection_id or integration.integration_id,
                failed_at=iso(now),
                error_code=text_opt(error_code),
                error_message=error_message or "token refresh failed",
                retryable=opt(retryable),
            ),
            key=f"integration_token_refresh_failed:{ctx.tenant_id}:{integration.integration_id}:{bucket}",
            correlation=integration.integration_id,
        )
    ]


def external_mapping_changed(
    provider: str,
    mapping_type: str,
    mapping_id: str,
    previous_value: Any,
    new_value: Any,
    ctx: PublishContext,
) -> list[DomainEvent]:
    """EXTERNAL_MAPPING_CHANGED when the mapped value differs (compared in JSON form; ``None``
    means unmapped); same value -> ``[]``.
    Key: ``external_mapping_changed:<provider>:<mappingType>:<mappingId>:<fingerprint>:<occurredAt>``.
    """
    prev, new = json_value(previous_value), json_value(new_value)
    if prev == new:
        return []
    at = iso(ctx_now(ctx))
    return [
        emit(
            ExternalMappingChanged(
                **envelope(ctx),
                provider=provider,
                mapping_type=mapping_type,
                mapping_id=mapping_id,
                changed_at=at,
                previous_value=UNSET if prev is None else prev,
                new_value=UNSET if new is None else new,
            ),
            key=key("EXTERNAL_MAPPING_CHANGED", provider, mapping_type, mapping_id, digest(prev, new), at),
            correlation=mapping_id,
        )
    ]


# ---------------------------------------------------------------- assets


class AssetSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """An asset; ``owner_type``/``owner_id`` say whom it is assigned to (user, contact, client...)."""

    asset_id: str
    client_id: str | None = None
    name: str | None = None
    asset_type: str | None = None
    serial_number: str | None = None
    status: str | None = None
    owner_type: str | None = None
    owner_id: str | None = None
    warranty_expires_at: datetime | None = None
    custom_fields: dict[str, Any] = {}


def _warranty(asset: AssetSnapshot, ctx: PublishContext) -> DomainEvent:
    assert asset.warranty_expires_at is not None
    expires = iso(asset.warranty_expires_at)
    return emit(
        AssetWarrantyExpiring(
            **envelope(ctx),
            asset_id=asset.asset_id,
            expires_at=expires,
            days_until_expiry=days_until(asset.warranty_expires_at, ctx_now(ctx)),
            client_id=opt(asset.client_id),
        ),
        key=key("ASSET_WARRANTY_EXPIRING", asset.asset_id, expires[:10]),
        correlation=asset.asset_id,
    )


def _owner(a: AssetSnapshot | None) -> tuple[str, str] | None:
    if a is None or not a.owner_id or not a.owner_type:
        return None
    return a.owner_type, a.owner_id


def asset_changed(
    before: AssetSnapshot | None,
    after: AssetSnapshot,
    ctx: PublishContext,
    *,
    window: timedelta = WARRANTY_WINDOW,
    reason: str | None = None,
) -> list[DomainEvent]:
    """Events of an asset change; ``before=None`` is a creation.

    ASSET_CREATED (creation) or ASSET_UPDATED (``updatedFields``/``changes``);
    ASSET_ASSIGNED (new owner, with the previous one) / ASSET_UNASSIGNED (owner removed);
    ASSET_WARRANTY_EXPIRING when the warranty end enters the next ``window`` (30 days) because
    it was set or moved; an end already inside it, past, or further -> no warranty event.
    """
    aid = after.asset_id
    now = ctx_now(ctx)
    at = iso(now)
    events: list[DomainEvent] = []
    if before is None:
        events.append(
            emit(
                AssetCreated(
                    **envelope(ctx),
                    asset_id=aid,
                    client_id=opt(after.client_id),
                    created_by_user_id=actor_user_id(ctx),
                    created_at=at,
                    asset_type=text_opt(after.asset_type),
                    serial_number=text_opt(after.serial_number),
                ),
                key=key("ASSET_CREATED", aid),
                correlation=aid,
            )
        )
    else:
        if before.asset_id != aid:
            raise ValueError(f"before and after are different assets ({before.asset_id} != {aid})")
        diff = diff_entities(before, after, ignore=("asset_id",))
        if diff:
            events.append(
                emit(
                    AssetUpdated(
                        **envelope(ctx),
                        asset_id=aid,
                        updated_by_user_id=actor_user_id(ctx),
                        updated_at=at,
                        updated_fields=diff.updated_fields,
                        changes=diff.changes,
                    ),
                    key=key("ASSET_UPDATED", aid, digest(diff.changes), at),
                    correlation=aid,
                )
            )
    old, new = _owner(before), _owner(after)
    transition = f"{old[1] if old else 'none'}->{new[1] if new else 'none'}"
    if new is not None and new != old:
        events.append(
            emit(
                AssetAssigned(
                    **envelope(ctx),
                    asset_id=aid,
                    previous_owner_type=old[0] if old else UNSET,
                    previous_owner_id=old[1] if old else UNSET,
                    new_owner_type=new[0],
                    new_owner_id=new[1],
                    assigned_at=at,
                ),
                key=key("ASSET_ASSIGNED", aid, transition, at),
                correlation=aid,
            )
        )
    elif new is None and old is not None:
        events.append(
            emit(
                AssetUnassigned(
                    **envelope(ctx),
                    asset_id=aid,
                    previous_owner_type=old[0],
                    previous_owner_id=old[1],
                    unassigned_at=at,
                    reason=text_opt(reason),
                ),
                key=key("ASSET_UNASSIGNED", aid, transition, at),
                correlation=aid,
            )
        )
    if window_entered(
        target_before=None if before is None else before.warranty_expires_at,
        target_after=after.warranty_expires_at,
        now_before=now,
        now_after=now,
        window=window,
    ):
        events.append(_warranty(after, ctx))
    return events


def asset_warranty_scan(
    asset: AssetSnapshot, ctx: PublishContext, *, last_checked_at: datetime, window: timedelta = WARRANTY_WINDOW
) -> list[DomainEvent]:
    """Clock-driven ASSET_WARRANTY_EXPIRING: the warranty end is inside the window now and
    was not at ``last_checked_at`` (time moved it in). Same key as :func:`asset_changed`'s.
    """
    if not window_entered(
        target_before=asset.warranty_expires_at,
        target_after=asset.warranty_expires_at,
        now_before=last_checked_at,
        now_after=ctx_now(ctx),
        window=window,
    ):
        return []
    return [_warranty(asset, ctx)]
