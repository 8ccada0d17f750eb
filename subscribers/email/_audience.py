"""Who an event concerns: one resolver shared by the email and in-app notification subscribers.

:func:`resolve_audience` reads the ids in a raw payload (legacy or domain shape), looks them
up in a :class:`~subscribers.email.Directory`, and returns the event's subject records
(ticket, project, task, actor) and its candidate recipients (:class:`Party`), each with a
role. Suppression flags, the comment author and duplicates are applied here, once, so both
subscribers agree on who hears about what.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from bus import routing

from .._payload import actor_user_id, get_bool, get_str, tenant_of
from ._directory import Contact, Directory, Project, Task, Ticket, User

__all__ = ["Audience", "CommentInfo", "Party", "resolve_audience"]

Kind = Literal["internal", "contact"]


class Party(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate recipient: an internal user or a client contact, and why they are told."""

    kind: Kind
    role: str
    user_id: str | None = None
    contact_id: str | None = None
    email: str | None = None
    name: str = ""


class CommentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A comment carried by the event (ticket or task)."""

    id: str | None = None
    content: str = ""
    author_name: str = ""
    author_user_id: str | None = None
    author_contact_id: str | None = None
    is_internal: bool = False


class Audience(msgspec.Struct, frozen=True, kw_only=True):
    """The records an event is about and who should hear about it (already filtered and deduped)."""

    event_type: str
    tenant_id: str
    actor_user_id: str | None = None
    actor: User | None = None
    ticket: Ticket | None = None
    project: Project | None = None
    task: Task | None = None
    comment: CommentInfo | None = None
    parties: tuple[Party, ...] = ()


#: The events the subscribers take (both fan-out sets), by their subject: a ticket's events go to
#: the ticket's people, a project's or task's to the project's; the rest have their own rules.
_ROUTED = routing.EMAIL_EVENT_TYPES | routing.NOTIFICATION_EVENT_TYPES
TICKET_AUDIENCE_TYPES: frozenset[str] = frozenset(t for t in _ROUTED if t.startswith("TICKET_"))
PROJECT_AUDIENCE_TYPES: frozenset[str] = frozenset(t for t in _ROUTED if t.startswith(("PROJECT_", "TASK_")))


class _Collector:
    """Collects parties in order, resolving ids through the directory."""

    def __init__(self, directory: Directory, tenant_id: str) -> None:
        self.directory = directory
        self.tenant_id = tenant_id
        self.parties: list[Party] = []

    async def user(self, user_id: str | None, role: str) -> None:
        if not user_id:
            return
        user = await self.directory.get_user(self.tenant_id, user_id)
        if user is None or not user.is_active:
            return
        kind: Kind = "internal" if user.is_internal else "contact"
        self.parties.append(Party(kind=kind, role=role, user_id=user.id, email=user.email, name=user.name))

    async def users(self, user_ids: tuple[str, ...] | list[str], role: str) -> None:
        for user_id in user_ids:
            await self.user(user_id, role)

    async def team_or_user(self, assignee_id: str | None, assignee_type: str | None, role: str) -> None:
        if not assignee_id:
            return
        if assignee_type == "team":
            team = await self.directory.get_team(self.tenant_id, assignee_id)
            if team is not None:
                await self.users(team.members, role)
            return
        await self.user(assignee_id, role)

    async def contact(self, contact_id: str | None, role: str) -> Contact | None:
        if not contact_id:
            return None
        contact = await self.directory.get_contact(self.tenant_id, contact_id)
        if contact is not None:
            self.parties.append(
                Party(
                    kind="contact",
                    role=role,
                    contact_id=contact.id,
                    user_id=contact.user_id,
                    email=contact.email,
                    name=contact.name,
                )
            )
        return contact


def _comment(event_type: str, payload: Mapping[str, Any], actor: str | None) -> CommentInfo | None:
    if event_type == "TASK_COMMENT_ADDED":
        return CommentInfo(
            id=get_str(payload, "taskCommentId"),
            content=get_str(payload, "commentContent") or "",
            author_user_id=actor,
            is_internal=True,
        )
    if event_type != "TICKET_COMMENT_ADDED":
        return None
    raw = payload.get("comment")
    comment: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    author_type = get_str(comment, "authorType") or get_str(payload, "authorType")
    author_id = get_str(payload, "authorId")
    is_client = author_type in ("client", "contact")
    visibility = get_str(payload, "visibility")
    return CommentInfo(
        id=get_str(comment, "id") or get_str(payload, "commentId"),
        content=get_str(comment, "content") or "",
        author_name=get_str(comment, "author") or "",
        author_user_id=None if is_client and author_id else (author_id or actor),
        author_contact_id=author_id if is_client else None,
        is_internal=get_bool(comment, "isInternal") or visibility == "internal",
    )


async def _ticket_parties(c: _Collector, event_type: str, payload: Mapping[str, Any], ticket: Ticket | None) -> None:
    contact_id = ticket.contact_id if ticket else None
    assignee = ticket.assigned_to if ticket else None
    agents = ticket.additional_agents if ticket else ()
    if event_type == "TICKET_ASSIGNED":
        new_id = get_str(payload, "newAssigneeId", "assignedToUserId")
        if (
            new_id is None
            and payload.get("assignedByUserId")
            and payload.get("userId") != payload.get("assignedByUserId")
        ):
            new_id = get_str(payload, "userId")  # legacy shape: userId is the assignee when an assigner is named
        await c.team_or_user(new_id or assignee, get_str(payload, "newAssigneeType"), "assignee")
        return
    if event_type == "TICKET_ADDITIONAL_AGENT_ASSIGNED":
        await c.user(get_str(payload, "additionalAgentId"), "additional_agent")
        return
    await c.contact(contact_id, "contact")
    await c.user(assignee, "assignee")
    if event_type != "TICKET_CREATED":
        await c.users(agents, "additional_agent")


async def _project_parties(
    c: _Collector, event_type: str, payload: Mapping[str, Any], project: Project | None, task: Task | None
) -> None:
    manager = (project.assigned_to if project else None) or get_str(payload, "assignedTo")
    if event_type in ("PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_CLOSED"):
        await c.user(manager, "manager")
        await c.contact(project.contact_id if project else None, "contact")
    elif event_type == "PROJECT_ASSIGNED":
        assignee = get_str(payload, "assignedToId", "assignedTo") or manager
        await c.team_or_user(assignee, get_str(payload, "assignedToType"), "manager")
    elif event_type == "PROJECT_TASK_ASSIGNED":
        await c.team_or_user(get_str(payload, "assignedToId"), get_str(payload, "assignedToType"), "assignee")
    elif event_type == "PROJECT_TASK_ADDITIONAL_AGENT_ASSIGNED":
        await c.user(get_str(payload, "additionalAgentId"), "additional_agent")
    elif event_type == "TASK_COMMENT_ADDED":
        await c.user(task.assigned_to if task else None, "assignee")
        await c.users(task.additional_agents if task else (), "additional_agent")
        await c.user(manager, "manager")
    else:  # milestone and budget events go to the project manager
        await c.user(manager, "manager")


async def _other_parties(c: _Collector, event_type: str, payload: Mapping[str, Any]) -> None:
    if event_type == "INVOICE_GENERATED":
        await c.user(get_str(payload, "userId"), "recipient")
    elif event_type == "MESSAGE_SENT":
        await c.user(get_str(payload, "recipientId"), "recipient")
    elif event_type == "USER_MENTIONED_IN_DOCUMENT":
        await c.user(get_str(payload, "userId"), "mentioned")
    elif event_type == "APPOINTMENT_REQUEST_CREATED":
        await c.user(get_str(payload, "preferredAssignedUserId", "assignedUserId"), "assignee")
    elif event_type == "APPOINTMENT_REQUEST_APPROVED":
        await c.user(get_str(payload, "clientUserId"), "requester")
        await c.user(get_str(payload, "assignedUserId"), "assignee")
    elif event_type.startswith("APPOINTMENT_REQUEST_"):
        await c.user(get_str(payload, "clientUserId"), "requester")


def _filter(
    parties: list[Party], payload: Mapping[str, Any], comment: CommentInfo | None, *, exclude_actor: str | None
) -> tuple[Party, ...]:
    suppress_contact = get_bool(payload, "suppressContactNotifications")
    suppress_internal = get_bool(payload, "suppressInternalNotifications")
    out: list[Party] = []
    seen: set[str] = set()
    for party in parties:
        if party.kind == "contact" and suppress_contact:
            continue
        if party.kind == "internal" and suppress_internal:
            continue
        if comment is not None:
            if party.kind == "contact" and comment.is_internal:
                continue  # internal notes never reach clients
            if comment.author_user_id and party.user_id == comment.author_user_id:
                continue
            if comment.author_contact_id and party.contact_id == comment.author_contact_id:
                continue
            author = comment.author_name.lower()
            if author and author in ((party.email or "").lower(), (party.user_id or "").lower()):
                continue  # legacy ``comment.author`` may hold an email or a user id
        if exclude_actor and party.user_id == exclude_actor:
            continue
        key = party.user_id or party.contact_id or (party.email or "").lower()
        email_key = (party.email or "").lower()
        if key in seen or (email_key and email_key in seen):
            continue
        seen.update(k for k in (key, email_key) if k)
        out.append(party)
    return tuple(out)


async def resolve_audience(
    directory: Directory, event_type: str, payload: Mapping[str, Any], *, exclude_actor: bool = False
) -> Audience:
    """Look up the event's records and recipients; suppression, comment author and duplicates applied.

    ``exclude_actor`` also drops the user who caused the event (in-app notifications do; email
    only drops a comment's author).
    """
    tenant = tenant_of(payload)
    actor = actor_user_id(payload, event_type)
    c = _Collector(directory, tenant)
    ticket = project = task = None
    if ticket_id := get_str(payload, "ticketId"):
        ticket = await directory.get_ticket(tenant, ticket_id)
    if project_id := get_str(payload, "projectId"):
        project = await directory.get_project(tenant, project_id)
    if task_id := get_str(payload, "taskId"):
        task = await directory.get_task(tenant, task_id)
    comment = _comment(event_type, payload, actor)
    if event_type in TICKET_AUDIENCE_TYPES:
        await _ticket_parties(c, event_type, payload, ticket)
    elif event_type in PROJECT_AUDIENCE_TYPES:
        await _project_parties(c, event_type, payload, project, task)
    else:
        await _other_parties(c, event_type, payload)
    return Audience(
        event_type=event_type,
        tenant_id=tenant,
        actor_user_id=actor,
        actor=await directory.get_user(tenant, actor) if actor else None,
        ticket=ticket,
        project=project,
        task=task,
        comment=comment,
        parties=_filter(c.parties, payload, comment, exclude_actor=actor if exclude_actor else None),
    )
