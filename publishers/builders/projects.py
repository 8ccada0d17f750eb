"""Project builders: project updates and status, tasks, and blocking dependencies.

Idempotency keys: creation carries the task id (``project_task_created:<taskId>``);
transitions carry entity, transition and ``ctx.occurred_at``; dependencies carry the blocked
task, the blocking task and ``ctx.occurred_at``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, Literal

import msgspec
from msgspec import UNSET

from schemas.events.projects import (
    ProjectStatusChanged,
    ProjectTaskAssigned,
    ProjectTaskCompleted,
    ProjectTaskCreated,
    ProjectTaskDependencyBlocked,
    ProjectTaskDependencyUnblocked,
    ProjectTaskStatusChanged,
    ProjectUpdated,
)

from .._context import DomainEvent, PublishContext
from ._util import actor_user_id, ctx_now, diff_entities, digest, emit, envelope, iso, norm_status, text_opt
from ._util import idem_key as key

__all__ = [
    "ProjectSnapshot",
    "TaskDependency",
    "TaskSnapshot",
    "project_changed",
    "task_changed",
    "task_dependencies_changed",
    "task_dependency_added",
    "task_dependency_removed",
]

AssigneeType = Literal["user", "team"]


class ProjectSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A project as builders compare it; ``status`` is the status name."""

    project_id: str
    status: str
    name: str | None = None
    description: str | None = None
    client_id: str | None = None
    manager_user_id: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    budgeted_hours: float | None = None
    custom_fields: dict[str, Any] = {}


def project_changed(before: ProjectSnapshot, after: ProjectSnapshot, ctx: PublishContext) -> list[DomainEvent]:
    """PROJECT_STATUS_CHANGED when the status changes (hooks from/to = statuses), then
    PROJECT_UPDATED with ``updatedFields``/``changes`` when anything differs; else ``[]``.

    Keys: ``project_status_changed:<projectId>:<from>-><to>:<occurredAt>``,
    ``project_updated:<projectId>:<fingerprint of changes>:<occurredAt>``.
    """
    if before.project_id != after.project_id:
        raise ValueError(f"before and after are different projects ({before.project_id} != {after.project_id})")
    pid = after.project_id
    at = iso(ctx_now(ctx))
    events: list[DomainEvent] = []
    if before.status != after.status and before.status and after.status:
        events.append(
            emit(
                ProjectStatusChanged(
                    **envelope(ctx),
                    project_id=pid,
                    previous_status=before.status,
                    new_status=after.status,
                    changed_at=at,
                ),
                key=key("PROJECT_STATUS_CHANGED", pid, f"{before.status}->{after.status}", at),
                correlation=pid,
                from_state=before.status,
                to_state=after.status,
            )
        )
    diff = diff_entities(before, after, ignore=("project_id",))
    if diff:
        events.append(
            emit(
                ProjectUpdated(
                    **envelope(ctx),
                    project_id=pid,
                    updated_at=at,
                    updated_fields=diff.updated_fields,
                    changes=diff.changes,
                ),
                key=key("PROJECT_UPDATED", pid, digest(diff.changes), at),
                correlation=pid,
            )
        )
    return events


class TaskSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A project task; ``is_completed`` is the closed flag of its status."""

    task_id: str
    project_id: str
    title: str
    status: str
    is_completed: bool = False
    assignee_id: str | None = None
    assignee_type: AssigneeType = "user"
    due_date: date | datetime | None = None


def _due(value: date | datetime | None) -> str | msgspec.UnsetType:
    if value is None:
        return UNSET
    return iso(value) if isinstance(value, datetime) else value.isoformat()


def _assigned(task: TaskSnapshot, ctx: PublishContext, at: str, by_name: str | None, prev: str | None) -> DomainEvent:
    assert task.assignee_id is not None
    return emit(
        ProjectTaskAssigned(
            **envelope(ctx),
            task_id=task.task_id,
            project_id=task.project_id,
            assigned_to_id=task.assignee_id,
            assigned_to_type=task.assignee_type,
            assigned_by_user_id=actor_user_id(ctx),
            assigned_by_name=text_opt(by_name),
            assigned_at=at,
        ),
        key=key("PROJECT_TASK_ASSIGNED", task.task_id, f"{prev or 'none'}->{task.assignee_id}", at),
        correlation=task.project_id,
    )


def task_changed(
    before: TaskSnapshot | None,
    after: TaskSnapshot,
    ctx: PublishContext,
    *,
    assigned_by_name: str | None = None,
) -> list[DomainEvent]:
    """Events of a task change; ``before=None`` is a creation.

    PROJECT_TASK_CREATED (creation); PROJECT_TASK_STATUS_CHANGED (status name changed, hooks
    from/to); PROJECT_TASK_COMPLETED (completed flag raised, or created completed);
    PROJECT_TASK_ASSIGNED (a new assignee, including on creation). Nothing changed -> ``[]``.
    Keys: ``project_task_created:<taskId>``, others ``<type>:<taskId>:<transition>:<occurredAt>``.
    """
    tid, pid = after.task_id, after.project_id
    at = iso(ctx_now(ctx))
    events: list[DomainEvent] = []
    if before is None:
        events.append(
            emit(
                ProjectTaskCreated(
                    **envelope(ctx),
                    task_id=tid,
                    project_id=pid,
                    created_by_user_id=actor_user_id(ctx),
                    created_at=at,
                    title=after.title,
                    due_date=_due(after.due_date),
                    status=after.status,
                ),
                key=key("PROJECT_TASK_CREATED", tid),
                correlation=pid,
            )
        )
    else:
        if before.task_id != tid:
            raise ValueError(f"before and after are different tasks ({before.task_id} != {tid})")
        if norm_status(before.status) != norm_status(after.status) and before.status and after.status:
            events.append(
                emit(
                    ProjectTaskStatusChanged(
                        **envelope(ctx),
                        task_id=tid,
                        project_id=pid,
                        previous_status=before.status,
                        new_status=after.status,
                        changed_at=at,
                    ),
                    key=key("PROJECT_TASK_STATUS_CHANGED", tid, f"{before.status}->{after.status}", at),
                    correlation=pid,
                    from_state=before.status,
                    to_state=after.status,
                )
            )
    if after.is_completed and (before is None or not before.is_completed):
        events.append(
            emit(
                ProjectTaskCompleted(
                    **envelope(ctx),
                    task_id=tid,
                    project_id=pid,
                    completed_by_user_id=actor_user_id(ctx),
                    completed_at=at,
                ),
                key=key("PROJECT_TASK_COMPLETED", tid, at),
                correlation=pid,
            )
        )
    prev = None if before is None else (before.assignee_id, before.assignee_type)
    if after.assignee_id and prev != (after.assignee_id, after.assignee_type):
        events.append(_assigned(after, ctx, at, assigned_by_name, before.assignee_id if before else None))
    return events


class TaskDependency(msgspec.Struct, frozen=True, kw_only=True):
    """A dependency between two tasks. Only ``blocks`` / ``blocked_by`` block anything."""

    predecessor_task_id: str
    successor_task_id: str
    dependency_type: str


def _blocking(dep: TaskDependency) -> tuple[str, str] | None:
    """(blocked task, blocking task), or None for a non-blocking relationship."""
    kind = norm_status(dep.dependency_type)
    if kind == "blocks":
        return dep.successor_task_id, dep.predecessor_task_id
    if kind == "blocked_by":
        return dep.predecessor_task_id, dep.successor_task_id
    return None


def task_dependency_added(dep: TaskDependency, ctx: PublishContext, *, project_id: str) -> list[DomainEvent]:
    """PROJECT_TASK_DEPENDENCY_BLOCKED for a ``blocks`` (successor blocked by predecessor) or
    ``blocked_by`` (predecessor blocked by successor) dependency; other kinds -> ``[]``.
    ``project_id`` is the blocked task's project. Key: ``<type>:<blocked>:<blocker>:<occurredAt>``.
    """
    pair = _blocking(dep)
    if pair is None:
        return []
    blocked, blocker = pair
    at = iso(ctx_now(ctx))
    return [
        emit(
            ProjectTaskDependencyBlocked(
                **envelope(ctx), task_id=blocked, project_id=project_id, blocked_by_task_id=blocker, blocked_at=at
            ),
            key=key("PROJECT_TASK_DEPENDENCY_BLOCKED", blocked, blocker, at),
            correlation=project_id,
        )
    ]


def task_dependency_removed(dep: TaskDependency, ctx: PublishContext, *, project_id: str) -> list[DomainEvent]:
    """PROJECT_TASK_DEPENDENCY_UNBLOCKED when a blocking dependency is removed; others -> ``[]``.

    Key: ``<type>:<blocked>:<blocker>:<occurredAt>``.
    """
    pair = _blocking(dep)
    if pair is None:
        return []
    blocked, blocker = pair
    at = iso(ctx_now(ctx))
    return [
        emit(
            ProjectTaskDependencyUnblocked(
                **envelope(ctx), task_id=blocked, project_id=project_id, unblocked_by_task_id=blocker, unblocked_at=at
            ),
            key=key("PROJECT_TASK_DEPENDENCY_UNBLOCKED", blocked, blocker, at),
            correlation=project_id,
        )
    ]


def task_dependencies_changed(
    before: Iterable[TaskDependency], after: Iterable[TaskDependency], ctx: PublishContext, *, project_id: str
) -> list[DomainEvent]:
    """Blocked/unblocked events for the blocking pairs that appear/disappear between two sets.

    Re-expressing the same block the other way round (``A blocks B`` -> ``B blocked_by A``)
    is no change. Unblocks come first, then blocks, each sorted for a stable order.
    """
    old = {p for p in map(_blocking, before) if p is not None}
    new = {p for p in map(_blocking, after) if p is not None}
    events: list[DomainEvent] = []
    for blocked, blocker in sorted(old - new):
        dep = TaskDependency(predecessor_task_id=blocker, successor_task_id=blocked, dependency_type="blocks")
        events.extend(task_dependency_removed(dep, ctx, project_id=project_id))
    for blocked, blocker in sorted(new - old):
        dep = TaskDependency(predecessor_task_id=blocker, successor_task_id=blocked, dependency_type="blocks")
        events.extend(task_dependency_added(dep, ctx, project_id=project_id))
    return events
