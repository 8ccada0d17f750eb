"""CRM and tag builders: clients, contacts, interactions, notes, tag definitions, tagging.

Idempotency keys: creations and one-off records carry their id (``client_created:<id>``,
``interaction_logged:<id>``, ``note_created:<id>``); transitions carry entity, transition
and ``ctx.occurred_at``; tagging carries tag, entity type, entity id and ``ctx.occurred_at``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import msgspec

from schemas.events.crm import (
    ClientArchived,
    ClientCreated,
    ClientOwnerAssigned,
    ClientStatusChanged,
    ClientUpdated,
    ContactArchived,
    ContactCreated,
    ContactPrimarySet,
    ContactUpdated,
    InteractionLogged,
    NoteCreated,
)
from schemas.events.tags import TagApplied, TagDefinitionCreated, TagDefinitionUpdated, TagRemoved

from .._context import DomainEvent, PublishContext
from ._util import actor_user_id, ctx_now, diff_entities, digest, emit, envelope, iso, iso_opt, opt, text_opt
from ._util import idem_key as key

__all__ = [
    "NOTE_PREVIEW_CHARS",
    "ClientSnapshot",
    "ContactSnapshot",
    "Interaction",
    "TagDefinitionSnapshot",
    "client_changed",
    "contact_changed",
    "contact_primary_set",
    "interaction_logged",
    "note_created",
    "tag_definition_changed",
    "tags_changed",
]

NOTE_PREVIEW_CHARS = 200


# ---------------------------------------------------------------- clients


class ClientSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A client (company) as builders compare it."""

    client_id: str
    client_name: str
    status: str | None = None
    is_archived: bool = False
    owner_user_id: str | None = None
    primary_contact_id: str | None = None
    email: str | None = None
    phone: str | None = None
    url: str | None = None
    custom_fields: dict[str, Any] = {}


def contact_primary_set(
    client_id: str, contact_id: str, ctx: PublishContext, *, previous_primary_contact_id: str | None = None
) -> list[DomainEvent]:
    """CONTACT_PRIMARY_SET; setting the contact that already is primary -> ``[]``.

    Key: ``contact_primary_set:<clientId>:<previous|->-><contactId>:<occurredAt>``.
    """
    if contact_id == previous_primary_contact_id:
        return []
    at = iso(ctx_now(ctx))
    return [
        emit(
            ContactPrimarySet(
                **envelope(ctx),
                client_id=client_id,
                contact_id=contact_id,
                previous_primary_contact_id=opt(previous_primary_contact_id),
                set_by_user_id=actor_user_id(ctx),
                set_at=at,
            ),
            key=key("CONTACT_PRIMARY_SET", client_id, f"{previous_primary_contact_id or 'none'}->{contact_id}", at),
            correlation=client_id,
        )
    ]


def client_changed(
    before: ClientSnapshot | None, after: ClientSnapshot, ctx: PublishContext, *, reason: str | None = None
) -> list[DomainEvent]:
    """Events of a client change; ``before=None`` is a creation (CLIENT_CREATED only).

    Otherwise: CLIENT_STATUS_CHANGED (both statuses set; hooks from/to); CLIENT_OWNER_ASSIGNED
    (a new owner); CONTACT_PRIMARY_SET (a new primary contact); CLIENT_ARCHIVED (archived flag
    raised); CLIENT_UPDATED (``updatedFields``/``changes`` of everything that differs).
    Keys: ``client_created:<id>``; others ``<type>:<clientId>:<transition|fingerprint>:<occurredAt>``.
    """
    cid = after.client_id
    at = iso(ctx_now(ctx))
    if before is None:
        return [
            emit(
                ClientCreated(
                    **envelope(ctx),
                    client_id=cid,
                    client_name=after.client_name,
                    created_by_user_id=actor_user_id(ctx),
                    created_at=at,
                    status=text_opt(after.status),
                ),
                key=key("CLIENT_CREATED", cid),
                correlation=cid,
            )
        ]
    if before.client_id != cid:
        raise ValueError(f"before and after are different clients ({before.client_id} != {cid})")
    events: list[DomainEvent] = []
    if before.status != after.status and before.status and after.status:
        events.append(
            emit(
                ClientStatusChanged(
                    **envelope(ctx),
                    client_id=cid,
                    previous_status=before.status,
                    new_status=after.status,
                    changed_at=at,
                ),
                key=key("CLIENT_STATUS_CHANGED", cid, f"{before.status}->{after.status}", at),
                correlation=cid,
                from_state=before.status,
                to_state=after.status,
            )
        )
    if after.owner_user_id and after.owner_user_id != before.owner_user_id:
        events.append(
            emit(
                ClientOwnerAssigned(
                    **envelope(ctx),
                    client_id=cid,
                    previous_owner_user_id=opt(before.owner_user_id),
                    new_owner_user_id=after.owner_user_id,
                    assigned_by_user_id=actor_user_id(ctx),
                    assigned_at=at,
                ),
                key=key("CLIENT_OWNER_ASSIGNED", cid, f"{before.owner_user_id or 'none'}->{after.owner_user_id}", at),
                correlation=cid,
            )
        )
    if after.primary_contact_id and after.primary_contact_id != before.primary_contact_id:
        events.extend(
            contact_primary_set(
                cid, after.primary_contact_id, ctx, previous_primary_contact_id=before.primary_contact_id
            )
        )
    if after.is_archived and not before.is_archived:
        events.append(
            emit(
                ClientArchived(
                    **envelope(ctx),
                    client_id=cid,
                    archived_by_user_id=actor_user_id(ctx),
                    archived_at=at,
                    reason=text_opt(reason),
                ),
                key=key("CLIENT_ARCHIVED", cid, at),
                correlation=cid,
            )
        )
    diff = diff_entities(before, after, ignore=("client_id",))
    if diff:
        events.append(
            emit(
                ClientUpdated(
                    **envelope(ctx),
                    client_id=cid,
                    updated_by_user_id=actor_user_id(ctx),
                    updated_at=at,
                    updated_fields=diff.updated_fields,
                    changes=diff.changes,
                ),
                key=key("CLIENT_UPDATED", cid, digest(diff.changes), at),
                correlation=cid,
            )
        )
    return events


# ---------------------------------------------------------------- contacts


class ContactSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A client contact (person)."""

    contact_id: str
    full_name: str
    client_id: str | None = None
    email: str | None = None
    phone: str | None = None
    role: str | None = None
    is_archived: bool = False
    custom_fields: dict[str, Any] = {}


def contact_changed(
    before: ContactSnapshot | None, after: ContactSnapshot, ctx: PublishContext, *, reason: str | None = None
) -> list[DomainEvent]:
    """CONTACT_CREATED on creation (``before=None``); otherwise CONTACT_ARCHIVED (archived flag
    raised) and CONTACT_UPDATED (``updatedFields``/``changes``). Nothing changed -> ``[]``.
    Keys: ``contact_created:<id>``; others ``<type>:<contactId>:<fingerprint|->:<occurredAt>``.
    """
    cid = after.contact_id
    at = iso(ctx_now(ctx))
    corr = after.client_id or cid
    if before is None:
        return [
            emit(
                ContactCreated(
                    **envelope(ctx),
                    contact_id=cid,
                    client_id=opt(after.client_id),
                    full_name=after.full_name,
                    email=text_opt(after.email),
                    default_phone_number=text_opt(after.phone),
                    created_by_user_id=actor_user_id(ctx),
                    created_at=at,
                ),
                key=key("CONTACT_CREATED", cid),
                correlation=corr,
            )
        ]
    if before.contact_id != cid:
        raise ValueError(f"before and after are different contacts ({before.contact_id} != {cid})")
    events: list[DomainEvent] = []
    if after.is_archived and not before.is_archived:
        events.append(
            emit(
                ContactArchived(
                    **envelope(ctx),
                    contact_id=cid,
                    client_id=opt(after.client_id),
                    archived_by_user_id=actor_user_id(ctx),
                    archived_at=at,
                    reason=text_opt(reason),
                ),
                key=key("CONTACT_ARCHIVED", cid, at),
                correlation=corr,
            )
        )
    diff = diff_entities(before, after, ignore=("contact_id",))
    if diff:
        events.append(
            emit(
                ContactUpdated(
                    **envelope(ctx),
                    contact_id=cid,
                    client_id=opt(after.client_id),
                    updated_by_user_id=actor_user_id(ctx),
                    updated_at=at,
                    updated_fields=diff.updated_fields,
                    changes=diff.changes,
                ),
                key=key("CONTACT_UPDATED", cid, digest(diff.changes), at),
                correlation=corr,
            )
        )
    return events


# ---------------------------------------------------------------- interactions and notes


class Interaction(msgspec.Struct, frozen=True, kw_only=True):
    """A logged CRM interaction (call, meeting, email...)."""

    interaction_id: str
    client_id: str
    interaction_type: str
    channel: str
    contact_id: str | None = None
    subject: str | None = None
    outcome: str | None = None


def interaction_logged(interaction: Interaction, ctx: PublishContext) -> list[DomainEvent]:
    """INTERACTION_LOGGED. Key: ``interaction_logged:<interactionId>``."""
    return [
        emit(
            InteractionLogged(
                **envelope(ctx),
                interaction_id=interaction.interaction_id,
                client_id=interaction.client_id,
                contact_id=opt(interaction.contact_id),
                interaction_type=interaction.interaction_type,
                channel=interaction.channel,
                logged_by_user_id=actor_user_id(ctx),
                subject=text_opt(interaction.subject),
                outcome=text_opt(interaction.outcome),
            ),
            key=key("INTERACTION_LOGGED", interaction.interaction_id),
            correlation=interaction.client_id,
        )
    ]


def _preview(body: str | None) -> str | msgspec.UnsetType:
    text = re.sub(r"\s+", " ", body or "").strip()
    if not text:
        return msgspec.UNSET
    return text if len(text) <= NOTE_PREVIEW_CHARS else text[: NOTE_PREVIEW_CHARS - 1].rstrip() + "…"


def note_created(
    note_id: str,
    entity_type: Literal["client", "contact"],
    entity_id: str,
    ctx: PublishContext,
    *,
    body: str | None = None,
    visibility: Literal["public", "internal"] | None = None,
    created_at: datetime | None = None,
) -> list[DomainEvent]:
    """NOTE_CREATED on a client or contact, with a whitespace-collapsed preview of at most
    ``NOTE_PREVIEW_CHARS`` characters (ellipsis when cut). Key: ``note_created:<noteId>``.
    """
    return [
        emit(
            NoteCreated(
                **envelope(ctx),
                note_id=note_id,
                entity_type=entity_type,
                entity_id=entity_id,
                created_by_user_id=actor_user_id(ctx),
                created_at=iso_opt(created_at) or iso(ctx_now(ctx)),
                visibility=opt(visibility),
                body_preview=_preview(body),
            ),
            key=key("NOTE_CREATED", note_id),
            correlation=entity_id,
        )
    ]


# ---------------------------------------------------------------- tags


class TagDefinitionSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A tag as defined in the tag catalogue."""

    tag_id: str
    tag_name: str
    color: str | None = None
    tagged_type: str | None = None


def tag_definition_changed(
    before: TagDefinitionSnapshot | None, after: TagDefinitionSnapshot, ctx: PublishContext
) -> list[DomainEvent]:
    """TAG_DEFINITION_CREATED on creation; TAG_DEFINITION_UPDATED when anything differs
    (previous/new name only when the name changed). Nothing changed -> ``[]``.
    Keys: ``tag_definition_created:<tagId>``, ``tag_definition_updated:<tagId>:<fingerprint>:<occurredAt>``.
    """
    tid = after.tag_id
    at = iso(ctx_now(ctx))
    if before is None:
        return [
            emit(
                TagDefinitionCreated(
                    **envelope(ctx),
                    tag_id=tid,
                    tag_name=after.tag_name,
                    created_by_user_id=actor_user_id(ctx),
                    created_at=at,
                ),
                key=key("TAG_DEFINITION_CREATED", tid),
                correlation=tid,
            )
        ]
    diff = diff_entities(before, after, ignore=("tag_id",))
    if not diff:
        return []
    renamed = before.tag_name != after.tag_name
    return [
        emit(
            TagDefinitionUpdated(
                **envelope(ctx),
                tag_id=tid,
                previous_name=before.tag_name if renamed else msgspec.UNSET,
                new_name=after.tag_name if renamed else msgspec.UNSET,
                updated_by_user_id=actor_user_id(ctx),
                updated_at=at,
            ),
            key=key("TAG_DEFINITION_UPDATED", tid, digest(diff.changes), at),
            correlation=tid,
        )
    ]


def tags_changed(
    entity_type: str,
    entity_id: str,
    before_tag_ids: Iterable[str],
    after_tag_ids: Iterable[str],
    ctx: PublishContext,
) -> list[DomainEvent]:
    """TAG_REMOVED for each tag gone, then TAG_APPLIED for each tag added (sorted by tag id);
    the same set in another order -> ``[]``.
    Keys: ``<type>:<tagId>:<entityType>:<entityId>:<occurredAt>``.
    """
    old, new = set(before_tag_ids), set(after_tag_ids)
    at = iso(ctx_now(ctx))
    events: list[DomainEvent] = []
    for tag in sorted(old - new):
        events.append(
            emit(
                TagRemoved(
                    **envelope(ctx),
                    tag_id=tag,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    removed_by_user_id=actor_user_id(ctx),
                    removed_at=at,
                ),
                key=key("TAG_REMOVED", tag, entity_type, entity_id, at),
                correlation=entity_id,
            )
        )
    for tag in sorted(new - old):
        events.append(
            emit(
                TagApplied(
                    **envelope(ctx),
                    tag_id=tag,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    applied_by_user_id=actor_user_id(ctx),
                    applied_at=at,
                ),
                key=key("TAG_APPLIED", tag, entity_type, entity_id, at),
                correlation=entity_id,
            )
        )
    return events
