"""Reading the facts a subscriber needs from a raw payload, whatever its shape (legacy or domain).

Handlers get the raw payload dict (unknown keys kept) and the typed variant; both shapes of the
15 union types carry the same ids under the same wire names, so subscribers read the raw dict
through these helpers and use the typed value only for validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import is_uuid

__all__ = ["ACTOR_FIELDS", "USER_ID_IS_RECIPIENT", "actor_user_id", "get_bool", "get_str", "tenant_of"]

#: Where the acting user is found, in order: the type-specific field, then the domain
#: ``actorUserId``, then the legacy ``userId``.
ACTOR_FIELDS = ("createdByUserId", "updatedByUserId", "assignedByUserId", "closedByUserId", "actorUserId", "userId")


def get_str(payload: Mapping[str, Any], *names: str) -> str | None:
    """The first non-empty string value among ``names``."""
    for name in names:
        value = payload.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def get_bool(payload: Mapping[str, Any], name: str) -> bool:
    """A boolean flag; absent or non-boolean means False."""
    return payload.get(name) is True


#: Types whose legacy ``userId`` names the recipient, not the actor (the mentioned user, the
#: user an asynchronously generated invoice is for).
USER_ID_IS_RECIPIENT = frozenset({"USER_MENTIONED_IN_DOCUMENT", "INVOICE_GENERATED"})


def actor_user_id(payload: Mapping[str, Any], event_type: str | None = None) -> str | None:
    """The user who caused the event (a uuid), from the first of :data:`ACTOR_FIELDS` present.

    For :data:`USER_ID_IS_RECIPIENT` types ``userId`` is not considered.
    """
    fields = ACTOR_FIELDS[:-1] if event_type in USER_ID_IS_RECIPIENT else ACTOR_FIELDS
    value = get_str(payload, *fields)
    return value if value is not None and is_uuid(value) else None


def tenant_of(payload: Mapping[str, Any]) -> str:
    """``tenantId``, else ``tenant``, else ``""`` (as the reference derives the workflow tenant)."""
    return get_str(payload, "tenantId", "tenant") or ""
