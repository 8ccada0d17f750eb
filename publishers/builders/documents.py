"""Document, file and media builders.

Idempotency keys: uploads, generation and deletion carry the document/file id (each happens
once); associations carry document, entity type, entity id and ``ctx.occurred_at`` (a link
can be made, removed and made again); media processing carries the file id and the job id
(or ``ctx.occurred_at`` without one).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from schemas.events.documents import (
    DocumentAssociated,
    DocumentDeleted,
    DocumentDetached,
    DocumentGenerated,
    DocumentUploaded,
)
from schemas.events.media import FileUploaded, MediaProcessingFailed, MediaProcessingSucceeded

from .._context import DomainEvent, PublishContext
from ._util import actor_user_id, ctx_now, emit, envelope, iso, iso_opt, json_value, norm_status, opt, text_opt
from ._util import idem_key as key

__all__ = [
    "EntityRef",
    "MediaJobSnapshot",
    "StoredFile",
    "document_associated",
    "document_associations_changed",
    "document_deleted",
    "document_detached",
    "document_generated",
    "document_uploaded",
    "file_uploaded",
    "media_processing_changed",
]

#: ``(entity_type, entity_id)``: what a document is attached to (``("ticket", "<uuid>")``).
EntityRef = tuple[str, str]


class StoredFile(msgspec.Struct, frozen=True, kw_only=True):
    """An uploaded blob: a document's file or a media file."""

    id: str
    file_name: str
    content_type: str
    size_bytes: int
    storage_key: str
    uploaded_at: datetime | None = None


def document_uploaded(document: StoredFile, ctx: PublishContext) -> list[DomainEvent]:
    """DOCUMENT_UPLOADED. Key: ``document_uploaded:<documentId>``."""
    return [
        emit(
            DocumentUploaded(
                **envelope(ctx),
                document_id=document.id,
                uploaded_by_user_id=actor_user_id(ctx),
                uploaded_at=iso(document.uploaded_at or ctx_now(ctx)),
                file_name=document.file_name,
                content_type=document.content_type,
                size_bytes=document.size_bytes,
                storage_key=document.storage_key,
            ),
            key=key("DOCUMENT_UPLOADED", document.id),
            correlation=document.id,
        )
    ]


def file_uploaded(file: StoredFile, ctx: PublishContext) -> list[DomainEvent]:
    """FILE_UPLOADED (a media/file-store upload). Key: ``file_uploaded:<fileId>``."""
    return [
        emit(
            FileUploaded(
                **envelope(ctx),
                file_id=file.id,
                uploaded_by_user_id=actor_user_id(ctx),
                uploaded_at=iso(file.uploaded_at or ctx_now(ctx)),
                file_name=file.file_name,
                content_type=file.content_type,
                size_bytes=file.size_bytes,
                storage_key=file.storage_key,
            ),
            key=key("FILE_UPLOADED", file.id),
            correlation=file.id,
        )
    ]


def document_deleted(document_id: str, ctx: PublishContext, *, reason: str | None = None) -> list[DomainEvent]:
    """DOCUMENT_DELETED. Key: ``document_deleted:<documentId>``."""
    return [
        emit(
            DocumentDeleted(
                **envelope(ctx),
                document_id=document_id,
                deleted_by_user_id=actor_user_id(ctx),
                deleted_at=iso(ctx_now(ctx)),
                reason=text_opt(reason),
            ),
            key=key("DOCUMENT_DELETED", document_id),
            correlation=document_id,
        )
    ]


def document_generated(
    document_id: str, source_type: str, source_id: str, file_name: str, ctx: PublishContext
) -> list[DomainEvent]:
    """DOCUMENT_GENERATED (rendered from an invoice, a template...). Key: ``document_generated:<documentId>``."""
    return [
        emit(
            DocumentGenerated(
                **envelope(ctx),
                document_id=document_id,
                source_type=source_type,
                source_id=source_id,
                generated_by_user_id=actor_user_id(ctx),
                generated_at=iso(ctx_now(ctx)),
                file_name=file_name,
            ),
            key=key("DOCUMENT_GENERATED", document_id),
            correlation=source_id,
        )
    ]


def document_associated(document_id: str, entity: EntityRef, ctx: PublishContext) -> list[DomainEvent]:
    """DOCUMENT_ASSOCIATED. Key: ``document_associated:<documentId>:<entityType>:<entityId>:<occurredAt>``."""
    entity_type, entity_id = entity
    at = iso(ctx_now(ctx))
    return [
        emit(
            DocumentAssociated(
                **envelope(ctx),
                document_id=document_id,
                entity_type=entity_type,
                entity_id=entity_id,
                associated_by_user_id=actor_user_id(ctx),
                associated_at=at,
            ),
            key=key("DOCUMENT_ASSOCIATED", document_id, entity_type, entity_id, at),
            correlation=entity_id,
        )
    ]


def document_detached(
    document_id: str, entity: EntityRef, ctx: PublishContext, *, reason: str | None = None
) -> list[DomainEvent]:
    """DOCUMENT_DETACHED. Key: ``document_detached:<documentId>:<entityType>:<entityId>:<occurredAt>``."""
    entity_type, entity_id = entity
    at = iso(ctx_now(ctx))
    return [
        emit(
            DocumentDetached(
                **envelope(ctx),
                document_id=document_id,
                entity_type=entity_type,
                entity_id=entity_id,
                detached_by_user_id=actor_user_id(ctx),
                detached_at=at,
                reason=text_opt(reason),
            ),
            key=key("DOCUMENT_DETACHED", document_id, entity_type, entity_id, at),
            correlation=entity_id,
        )
    ]


def document_associations_changed(
    document_id: str, before: Iterable[EntityRef], after: Iterable[EntityRef], ctx: PublishContext
) -> list[DomainEvent]:
    """DOCUMENT_DETACHED for each link removed, then DOCUMENT_ASSOCIATED for each link added
    (sorted); the same links in another order -> ``[]``.
    """
    old, new = set(before), set(after)
    events: list[DomainEvent] = []
    for ref in sorted(old - new):
        events.extend(document_detached(document_id, ref, ctx))
    for ref in sorted(new - old):
        events.extend(document_associated(document_id, ref, ctx))
    return events


class MediaJobSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A media processing job (thumbnails, transcoding...) on one file."""

    file_id: str
    status: str
    job_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: tuple[Any, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool | None = None


_SUCCEEDED = {"succeeded", "success", "completed", "done"}
_FAILED = {"failed", "error", "errored"}


def media_processing_changed(
    before: MediaJobSnapshot | None, after: MediaJobSnapshot, ctx: PublishContext
) -> list[DomainEvent]:
    """MEDIA_PROCESSING_SUCCEEDED / _FAILED when the job status enters a terminal state
    (succeeded|success|completed|done, failed|error; any case). Else ``[]``.
    ``durationMs`` = finished - started when both are known.
    Keys: ``<type>:<fileId>:<jobId|occurredAt>``.
    """
    old = "" if before is None else norm_status(before.status)
    new = norm_status(after.status)
    if old == new:
        return []
    at = iso(ctx_now(ctx))
    done = iso_opt(after.finished_at) or at
    duration: int | msgspec.UnsetType = msgspec.UNSET
    if after.started_at is not None and after.finished_at is not None:
        duration = max(0, int((after.finished_at - after.started_at).total_seconds() * 1000))
    ident = after.job_id or at
    if new in _SUCCEEDED and old not in _SUCCEEDED:
        return [
            emit(
                MediaProcessingSucceeded(
                    **envelope(ctx),
                    file_id=after.file_id,
                    processed_at=done,
                    outputs=json_value(list(after.outputs)) if after.outputs else msgspec.UNSET,
                    duration_ms=duration,
                ),
                key=key("MEDIA_PROCESSING_SUCCEEDED", after.file_id, ident),
                correlation=after.file_id,
                from_state=old or None,
                to_state=new,
            )
        ]
    if new in _FAILED and old not in _FAILED:
        return [
            emit(
                MediaProcessingFailed(
                    **envelope(ctx),
                    file_id=after.file_id,
                    failed_at=done,
                    error_code=text_opt(after.error_code),
                    error_message=after.error_message or "media processing failed",
                    retryable=opt(after.retryable),
                ),
                key=key("MEDIA_PROCESSING_FAILED", after.file_id, ident),
                correlation=after.file_id,
                from_state=old or None,
                to_state=new,
            )
        ]
    return []
