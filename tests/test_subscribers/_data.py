"""Shared test data: a directory of one tenant, and payload factories for every handled type."""

from __future__ import annotations

from typing import Any

from subscribers.email import FileDirectory

TENANT = "11111111-1111-4111-8111-111111111111"
ALICE = "aaaaaaaa-0000-4000-8000-000000000001"  # ticket/task assignee
BOB = "bbbbbbbb-0000-4000-8000-000000000002"  # additional agent
MARY = "cccccccc-0000-4000-8000-000000000003"  # project manager
URSULA = "dddddddd-0000-4000-8000-000000000004"  # the acting user
PORTAL = "eeeeeeee-0000-4000-8000-000000000005"  # the contact's portal account
CONTACT = "ffffffff-0000-4000-8000-000000000006"
TICKET = "12121212-0000-4000-8000-000000000007"
PROJECT = "13131313-0000-4000-8000-000000000008"
TASK = "14141414-0000-4000-8000-000000000009"
TEAM = "15151515-0000-4000-8000-00000000000a"
THREAD = "16161616-0000-4000-8000-00000000000b"
COMMENT = "17171717-0000-4000-8000-00000000000c"
INVOICE = "18181818-0000-4000-8000-00000000000d"
ENTRY = "19191919-0000-4000-8000-00000000000e"
NOW = "2026-03-01T10:00:00.000Z"

EMAILS = {
    ALICE: "alice@msp.example",
    BOB: "bob@msp.example",
    MARY: "mary@msp.example",
    URSULA: "ursula@msp.example",
    CONTACT: "carol@client.example",
}


def make_directory() -> FileDirectory:
    """One tenant: a ticket with a mail thread, a project with a task, a team, five people."""
    return FileDirectory.from_dict(
        {
            "tenants": {
                TENANT: {
                    "users": [
                        {"id": ALICE, "email": EMAILS[ALICE], "name": "Alice Agent"},
                        {"id": BOB, "email": EMAILS[BOB], "name": "Bob Backup"},
                        {"id": MARY, "email": EMAILS[MARY], "name": "Mary Manager"},
                        {"id": URSULA, "email": EMAILS[URSULA], "name": "Ursula Updater"},
                        {"id": PORTAL, "email": EMAILS[CONTACT], "name": "Carol Client", "is_internal": False},
                    ],
                    "contacts": [{"id": CONTACT, "email": EMAILS[CONTACT], "name": "Carol Client", "user_id": PORTAL}],
                    "tickets": [
                        {
                            "id": TICKET,
                            "title": "Printer <on> fire",
                            "number": "1001",
                            "status": "Open",
                            "priority": "High",
                            "client_name": "Client & Co",
                            "contact_id": CONTACT,
                            "assigned_to": ALICE,
                            "additional_agents": [BOB],
                            "email": {
                                "message_id": "<orig-1@mail.client.example>",
                                "references": ["<r0@mail.client.example>"],
                                "thread_id": THREAD,
                            },
                        }
                    ],
                    "projects": [
                        {
                            "id": PROJECT,
                            "name": "Office move",
                            "number": "PRJ-7",
                            "status": "Active",
                            "contact_id": CONTACT,
                            "assigned_to": MARY,
                        }
                    ],
                    "tasks": [
                        {
                            "id": TASK,
                            "project_id": PROJECT,
                            "name": "Pack servers",
                            "assigned_to": ALICE,
                            "additional_agents": [BOB],
                        }
                    ],
                    "teams": [{"id": TEAM, "name": "Field", "members": [ALICE, BOB]}],
                }
            }
        }
    )


def domain(**fields: Any) -> dict[str, Any]:
    """A v2 domain payload: tenantId and occurredAt plus ``fields``."""
    return {"tenantId": TENANT, "occurredAt": NOW, **fields}


def legacy(**fields: Any) -> dict[str, Any]:
    """A legacy payload: uuid tenantId plus ``fields``."""
    return {"tenantId": TENANT, **fields}


#: event type -> (payload, expected recipients, subject fragment)
EMAIL_CASES: dict[str, tuple[dict[str, Any], set[str], str]] = {
    "TICKET_CREATED": (
        domain(ticketId=TICKET, createdByUserId=URSULA),
        {CONTACT, ALICE},
        "New ticket: Printer <on> fire",
    ),
    "TICKET_UPDATED": (
        domain(
            ticketId=TICKET,
            updatedByUserId=URSULA,
            updatedFields=["status"],
            changes={"status": {"previous": "Open", "new": "In progress"}},
        ),
        {CONTACT, ALICE, BOB},
        "[Ticket #1001] Updated",
    ),
    "TICKET_CLOSED": (legacy(ticketId=TICKET, userId=URSULA), {CONTACT, ALICE, BOB}, "Closed: Printer"),
    "TICKET_ASSIGNED": (
        domain(ticketId=TICKET, newAssigneeId=ALICE, newAssigneeType="user", assignedByUserId=URSULA),
        {ALICE},
        "Assigned to you",
    ),
    "TICKET_ADDITIONAL_AGENT_ASSIGNED": (
        legacy(ticketId=TICKET, primaryAgentId=ALICE, additionalAgentId=BOB, assignedByUserId=URSULA),
        {BOB},
        "Added as agent",
    ),
    "TICKET_COMMENT_ADDED": (
        legacy(
            ticketId=TICKET,
            userId=ALICE,
            comment={"id": COMMENT, "content": "Replaced the toner.", "author": "Alice Agent", "isInternal": False},
        ),
        {CONTACT, BOB},
        "New comment",
    ),
    "PROJECT_CREATED": (domain(projectId=PROJECT, createdByUserId=URSULA), {MARY, CONTACT}, "New project: Office move"),
    "PROJECT_UPDATED": (
        legacy(projectId=PROJECT, userId=URSULA, changes={"status": "on hold"}),
        {MARY, CONTACT},
        "Updated: Office move",
    ),
    "PROJECT_CLOSED": (
        legacy(projectId=PROJECT, userId=URSULA, changes={"status": {"is_closed": True}}),
        {MARY, CONTACT},
        "Closed: Office move",
    ),
    "PROJECT_ASSIGNED": (legacy(projectId=PROJECT, userId=URSULA, assignedTo=ALICE), {ALICE}, "Assigned to you"),
    "PROJECT_TASK_ASSIGNED": (
        domain(taskId=TASK, projectId=PROJECT, assignedToId=TEAM, assignedToType="team", assignedByUserId=URSULA),
        {ALICE, BOB},
        "Task assigned to you: Pack servers",
    ),
    "PROJECT_TASK_ADDITIONAL_AGENT_ASSIGNED": (
        legacy(taskId=TASK, projectId=PROJECT, primaryAgentId=ALICE, additionalAgentId=BOB, assignedByUserId=URSULA),
        {BOB},
        "Added to task: Pack servers",
    ),
    "TASK_COMMENT_ADDED": (
        legacy(
            taskId=TASK,
            projectId=PROJECT,
            userId=ALICE,
            taskCommentId=COMMENT,
            taskName="Pack servers",
            commentContent="Two racks done.",
        ),
        {BOB, MARY},
        "New comment on task: Pack servers",
    ),
    "PROJECT_MILESTONE_READY": (
        legacy(projectId=PROJECT, entryId=ENTRY, description="Phase 1", computedAmount=150000, trigger="phase"),
        {MARY},
        "Milestone ready to bill: Phase 1",
    ),
    "PROJECT_BUDGET_THRESHOLD_REACHED": (
        domain(projectId=PROJECT, threshold=80, billed=800000, cap=1000000),
        {MARY},
        "Budget 80% reached",
    ),
    "PROJECT_BUDGET_EXCEEDED": (
        domain(projectId=PROJECT, invoiceId=INVOICE, billed=1000000, attempted=50000, cap=1000000, writtenDown=50000),
        {MARY},
        "Budget exceeded",
    ),
}
