"""CRM and tag builders: clients, contacts, interactions, notes, tag definitions, tagging."""

from __future__ import annotations

from typing import Any

import pytest

from publishers._context import Actor
from publishers.builders import (
    NOTE_PREVIEW_CHARS,
    ClientSnapshot,
    ContactSnapshot,
    Interaction,
    TagDefinitionSnapshot,
    client_changed,
    contact_changed,
    contact_primary_set,
    interaction_logged,
    note_created,
    tag_definition_changed,
    tags_changed,
)

from ._factories import USER, check, make_ctx, only, types, uid, wire

CLIENT, CONTACT, OWNER = uid("client"), uid("contact"), uid("owner")


def make_client(**overrides: Any) -> ClientSnapshot:
    """An active client without owner."""
    fields: dict[str, Any] = {"client_id": CLIENT, "client_name": "Acme", "status": "active"}
    fields.update(overrides)
    return ClientSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {}, ["CLIENT_CREATED"], id="created"),
        pytest.param({}, {}, [], id="nothing-changed"),
        pytest.param({}, {"status": "inactive"}, ["CLIENT_STATUS_CHANGED", "CLIENT_UPDATED"], id="status"),
        pytest.param({}, {"owner_user_id": OWNER}, ["CLIENT_OWNER_ASSIGNED", "CLIENT_UPDATED"], id="owner"),
        pytest.param({"owner_user_id": OWNER}, {}, ["CLIENT_UPDATED"], id="owner-removed"),
        pytest.param(
            {}, {"primary_contact_id": CONTACT}, ["CONTACT_PRIMARY_SET", "CLIENT_UPDATED"], id="primary-contact"
        ),
        pytest.param({}, {"is_archived": True}, ["CLIENT_ARCHIVED", "CLIENT_UPDATED"], id="archived"),
        pytest.param({"is_archived": True}, {}, ["CLIENT_UPDATED"], id="unarchived"),
        pytest.param({}, {"custom_fields": {"segment": "smb"}}, ["CLIENT_UPDATED"], id="custom-field"),
    ],
)
def test_client_changed(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """Each client transition gives its event, then CLIENT_UPDATED with the changed paths."""
    prev = None if before is None else make_client(**before)
    assert types(check(client_changed(prev, make_client(**after), make_ctx()))) == expected


def test_client_owner_and_primary_payloads() -> None:
    """Owner assignment and primary contact carry previous and new values."""
    before = make_client(owner_user_id=uid("old-owner"), primary_contact_id=uid("old-contact"))
    after = make_client(owner_user_id=OWNER, primary_contact_id=CONTACT)
    events = check(client_changed(before, after, make_ctx()))
    owner = wire(only(events, "CLIENT_OWNER_ASSIGNED"))
    assert (owner["previousOwnerUserId"], owner["newOwnerUserId"], owner["assignedByUserId"]) == (
        uid("old-owner"),
        OWNER,
        USER,
    )
    primary = wire(only(events, "CONTACT_PRIMARY_SET"))
    assert (primary["previousPrimaryContactId"], primary["contactId"]) == (uid("old-contact"), CONTACT)


def test_contact_primary_set_to_the_same_contact_is_nothing() -> None:
    """Re-setting the current primary contact emits nothing."""
    assert contact_primary_set(CLIENT, CONTACT, make_ctx(), previous_primary_contact_id=CONTACT) == []


def make_contact(**overrides: Any) -> ContactSnapshot:
    """A contact at the client."""
    fields: dict[str, Any] = {"contact_id": CONTACT, "full_name": "Jane Doe", "client_id": CLIENT}
    fields.update(overrides)
    return ContactSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {"email": "jane@acme.example"}, ["CONTACT_CREATED"], id="created"),
        pytest.param({}, {}, [], id="nothing-changed"),
        pytest.param({}, {"phone": "+49 30 1234"}, ["CONTACT_UPDATED"], id="phone"),
        pytest.param({}, {"is_archived": True}, ["CONTACT_ARCHIVED", "CONTACT_UPDATED"], id="archived"),
    ],
)
def test_contact_changed(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """Contact creation, archiving and updates each give their event."""
    prev = None if before is None else make_contact(**before)
    events = check(contact_changed(prev, make_contact(**after), make_ctx()))
    assert types(events) == expected
    assert all(e.correlation_key == CLIENT for e in events)


def test_interaction_logged() -> None:
    """An interaction names client, contact, type, channel and the logging user."""
    interaction = Interaction(
        interaction_id=uid("call"),
        client_id=CLIENT,
        contact_id=CONTACT,
        interaction_type="call",
        channel="phone",
        subject="Renewal",
    )
    doc = wire(check(interaction_logged(interaction, make_ctx()))[0])
    assert (doc["interactionType"], doc["channel"], doc["loggedByUserId"], doc["subject"]) == (
        "call",
        "phone",
        USER,
        "Renewal",
    )


@pytest.mark.parametrize(
    ("body", "preview"),
    [
        pytest.param("  Called   about\n renewal ", "Called about renewal", id="whitespace-collapsed"),
        pytest.param(None, None, id="no-body"),
        pytest.param("   ", None, id="blank-body"),
    ],
)
def test_note_created_preview(body: str | None, preview: str | None) -> None:
    """The note preview collapses whitespace and is omitted when empty."""
    ev = check(note_created(uid("note"), "client", CLIENT, make_ctx(), body=body, visibility="internal"))[0]
    assert wire(ev).get("bodyPreview") == preview
    assert ev.idempotency_key == f"note_created:{uid('note')}"


def test_note_preview_is_capped() -> None:
    """A long note body is cut to the preview length with an ellipsis."""
    doc = wire(note_created(uid("note"), "contact", CONTACT, make_ctx(), body="word " * 200)[0])
    assert len(doc["bodyPreview"]) == NOTE_PREVIEW_CHARS
    assert doc["bodyPreview"].endswith("…")


def make_tag(**overrides: Any) -> TagDefinitionSnapshot:
    """A tag called VIP."""
    fields: dict[str, Any] = {"tag_id": uid("tag"), "tag_name": "VIP"}
    fields.update(overrides)
    return TagDefinitionSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected", "names"),
    [
        pytest.param(None, {}, ["TAG_DEFINITION_CREATED"], None, id="created"),
        pytest.param({}, {"tag_name": "Gold"}, ["TAG_DEFINITION_UPDATED"], ("VIP", "Gold"), id="renamed"),
        pytest.param({}, {"color": "#ff0"}, ["TAG_DEFINITION_UPDATED"], (None, None), id="recoloured"),
        pytest.param({}, {}, [], None, id="nothing-changed"),
    ],
)
def test_tag_definition_changed(
    before: dict[str, Any] | None, after: dict[str, Any], expected: list[str], names: tuple[Any, Any] | None
) -> None:
    """Tag definitions emit on creation and on any change; names only when renamed."""
    prev = None if before is None else make_tag(**before)
    events = check(tag_definition_changed(prev, make_tag(**after), make_ctx()))
    assert types(events) == expected
    if names is not None:
        doc = wire(events[0])
        assert (doc.get("previousName"), doc.get("newName")) == names


def test_tags_changed_applies_and_removes() -> None:
    """Removed tags come first, then applied ones, each sorted; reordering alone is no change."""
    ctx = make_ctx(actor=Actor.system())
    a, b, c = sorted([uid("a"), uid("b"), uid("c")])
    events = check(tags_changed("ticket", uid("ticket"), [a, b], [c, b], ctx), ctx)
    assert [(e.event_type, wire(e)["tagId"]) for e in events] == [("TAG_REMOVED", a), ("TAG_APPLIED", c)]
    assert "appliedByUserId" not in wire(events[1])
    assert tags_changed("ticket", uid("ticket"), [a, b], [b, a], ctx) == []
