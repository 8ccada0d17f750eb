"""Document, file and media builders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from publishers.builders import (
    MediaJobSnapshot,
    StoredFile,
    document_associated,
    document_associations_changed,
    document_deleted,
    document_detached,
    document_generated,
    document_uploaded,
    file_uploaded,
    media_processing_changed,
)

from ._factories import NOW, NOW_ISO, USER, check, make_ctx, types, uid, wire

DOC, FILE = uid("document"), uid("file")
TICKET = ("ticket", uid("ticket"))
CLIENT = ("client", uid("client"))


def make_file(**overrides: Any) -> StoredFile:
    """A 2 KiB PDF in storage."""
    fields: dict[str, Any] = {
        "id": DOC,
        "file_name": "contract.pdf",
        "content_type": "application/pdf",
        "size_bytes": 2048,
        "storage_key": "tenant/docs/contract.pdf",
    }
    fields.update(overrides)
    return StoredFile(**fields)


def test_document_and_file_uploads() -> None:
    """Uploads carry name, type, size and storage key, uploader from the actor, keyed by id."""
    doc_ev = check(document_uploaded(make_file(), make_ctx()))[0]
    assert wire(doc_ev)["sizeBytes"] == 2048 and wire(doc_ev)["uploadedByUserId"] == USER
    assert doc_ev.idempotency_key == f"document_uploaded:{DOC}"
    file_ev = check(file_uploaded(make_file(id=FILE, uploaded_at=NOW - timedelta(minutes=1)), make_ctx()))[0]
    assert wire(file_ev)["fileId"] == FILE
    assert wire(file_ev)["uploadedAt"] == "2026-03-10T11:59:00.000Z"


def test_document_deleted_and_generated() -> None:
    """Deletion and generation validate and are keyed by document id."""
    deleted = check(document_deleted(DOC, make_ctx(), reason="GDPR"))[0]
    assert wire(deleted)["reason"] == "GDPR"
    generated = check(document_generated(DOC, "invoice", uid("invoice"), "INV-1.pdf", make_ctx()))[0]
    assert (wire(generated)["sourceType"], wire(generated)["generatedAt"]) == ("invoice", NOW_ISO)
    assert generated.idempotency_key == f"document_generated:{DOC}"


def test_single_association_and_detachment() -> None:
    """Attaching and detaching name the entity."""
    attached = wire(check(document_associated(DOC, TICKET, make_ctx()))[0])
    assert (attached["entityType"], attached["entityId"]) == TICKET
    detached = wire(check(document_detached(DOC, TICKET, make_ctx(), reason="wrong ticket"))[0])
    assert detached["reason"] == "wrong ticket"


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param([], [TICKET], ["DOCUMENT_ASSOCIATED"], id="attached"),
        pytest.param([TICKET], [], ["DOCUMENT_DETACHED"], id="detached"),
        pytest.param([TICKET], [CLIENT], ["DOCUMENT_DETACHED", "DOCUMENT_ASSOCIATED"], id="moved"),
        pytest.param([TICKET, CLIENT], [CLIENT, TICKET], [], id="same-links"),
        pytest.param([], [], [], id="none"),
    ],
)
def test_document_associations_changed(
    before: list[tuple[str, str]], after: list[tuple[str, str]], expected: list[str]
) -> None:
    """Link set changes give detach then attach events; the same set gives none."""
    assert types(check(document_associations_changed(DOC, before, after, make_ctx()))) == expected


def job(**overrides: Any) -> MediaJobSnapshot:
    """A processing job on FILE."""
    fields: dict[str, Any] = {"file_id": FILE, "status": "processing", "job_id": "job-1"}
    fields.update(overrides)
    return MediaJobSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param({}, {"status": "Succeeded"}, ["MEDIA_PROCESSING_SUCCEEDED"], id="succeeded"),
        pytest.param({}, {"status": "done"}, ["MEDIA_PROCESSING_SUCCEEDED"], id="done-synonym"),
        pytest.param({}, {"status": "FAILED", "error_message": "codec"}, ["MEDIA_PROCESSING_FAILED"], id="failed"),
        pytest.param({}, {}, [], id="still-processing"),
        pytest.param({"status": "queued"}, {}, [], id="started"),
        pytest.param({"status": "succeeded"}, {"status": "completed"}, [], id="succeeded-synonym-again"),
    ],
)
def test_media_processing_changed(before: dict[str, Any], after: dict[str, Any], expected: list[str]) -> None:
    """Media events fire when a job enters success or failure, and only then."""
    assert types(check(media_processing_changed(job(**before), job(**after), make_ctx()))) == expected


def test_media_processing_payloads() -> None:
    """Success carries outputs and duration; the key names file and job."""
    after = job(
        status="succeeded",
        started_at=NOW - timedelta(seconds=3),
        finished_at=NOW,
        outputs=({"kind": "thumbnail", "key": "t.png"},),
    )
    ev = check(media_processing_changed(job(), after, make_ctx()))[0]
    assert wire(ev)["durationMs"] == 3000
    assert wire(ev)["outputs"] == [{"kind": "thumbnail", "key": "t.png"}]
    assert ev.idempotency_key == f"media_processing_succeeded:{FILE}:job-1"
