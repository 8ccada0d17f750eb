"""Project builders: project updates/status, tasks, blocking dependencies."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from publishers.builders import (
    ProjectSnapshot,
    TaskDependency,
    TaskSnapshot,
    project_changed,
    task_changed,
    task_dependencies_changed,
    task_dependency_added,
    task_dependency_removed,
)

from ._factories import USER, check, make_ctx, only, types, uid, wire

PROJECT, TASK, OTHER = uid("project"), uid("task"), uid("other-task")


def make_project(**overrides: Any) -> ProjectSnapshot:
    """An active project."""
    fields: dict[str, Any] = {"project_id": PROJECT, "status": "active", "name": "Migration"}
    fields.update(overrides)
    return ProjectSnapshot(**fields)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param({}, [], id="nothing-changed"),
        pytest.param({"status": "on_hold"}, ["PROJECT_STATUS_CHANGED", "PROJECT_UPDATED"], id="status"),
        pytest.param({"end_date": date(2026, 6, 30)}, ["PROJECT_UPDATED"], id="end-date"),
        pytest.param({"custom_fields": {"tier": "gold"}}, ["PROJECT_UPDATED"], id="custom-field"),
    ],
)
def test_project_changed(after: dict[str, Any], expected: list[str]) -> None:
    """Status changes and field updates each give their event; no change gives none."""
    assert types(check(project_changed(make_project(), make_project(**after), make_ctx()))) == expected


def test_project_update_payload() -> None:
    """PROJECT_UPDATED lists the changed paths; the status event carries hooks."""
    events = check(project_changed(make_project(), make_project(status="closed", name="Done"), make_ctx()))
    status = only(events, "PROJECT_STATUS_CHANGED")
    assert (status.from_state, status.to_state, status.correlation_key) == ("active", "closed", PROJECT)
    assert wire(only(events, "PROJECT_UPDATED"))["updatedFields"] == ["status", "name"]


def make_task(**overrides: Any) -> TaskSnapshot:
    """An open, unassigned task."""
    fields: dict[str, Any] = {"task_id": TASK, "project_id": PROJECT, "title": "Cut over", "status": "To Do"}
    fields.update(overrides)
    return TaskSnapshot(**fields)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, {}, ["PROJECT_TASK_CREATED"], id="created"),
        pytest.param(
            None,
            {"assignee_id": uid("agent")},
            ["PROJECT_TASK_CREATED", "PROJECT_TASK_ASSIGNED"],
            id="created-assigned",
        ),
        pytest.param(
            None,
            {"status": "Done", "is_completed": True},
            ["PROJECT_TASK_CREATED", "PROJECT_TASK_COMPLETED"],
            id="created-done",
        ),
        pytest.param({}, {}, [], id="nothing-changed"),
        pytest.param({}, {"status": "Doing"}, ["PROJECT_TASK_STATUS_CHANGED"], id="status"),
        pytest.param({}, {"status": "to do"}, [], id="same-status-other-case"),
        pytest.param(
            {},
            {"status": "Done", "is_completed": True},
            ["PROJECT_TASK_STATUS_CHANGED", "PROJECT_TASK_COMPLETED"],
            id="completed",
        ),
        pytest.param(
            {"status": "Done", "is_completed": True},
            {"status": "Closed", "is_completed": True},
            ["PROJECT_TASK_STATUS_CHANGED"],
            id="done-to-done-not-completed-again",
        ),
        pytest.param({}, {"assignee_id": uid("agent")}, ["PROJECT_TASK_ASSIGNED"], id="assigned"),
        pytest.param({"assignee_id": uid("agent")}, {}, [], id="unassigned-has-no-event"),
    ],
)
def test_task_changed(before: dict[str, Any] | None, after: dict[str, Any], expected: list[str]) -> None:
    """Task creation, status, completion and assignment each give their event, once."""
    prev = None if before is None else make_task(**before)
    assert types(check(task_changed(prev, make_task(**after), make_ctx()))) == expected


def test_task_assigned_payload() -> None:
    """PROJECT_TASK_ASSIGNED names the assignee, the assigner and their display name."""
    after = make_task(assignee_id=uid("team"), assignee_type="team")
    doc = wire(check(task_changed(make_task(), after, make_ctx(), assigned_by_name="Ada"))[0])
    assert (doc["assignedToId"], doc["assignedToType"], doc["assignedByUserId"], doc["assignedByName"]) == (
        uid("team"),
        "team",
        USER,
        "Ada",
    )


@pytest.mark.parametrize(
    ("kind", "predecessor", "successor", "blocked", "blocker"),
    [
        pytest.param("blocks", OTHER, TASK, TASK, OTHER, id="blocks-successor-blocked"),
        pytest.param("BLOCKED_BY", TASK, OTHER, TASK, OTHER, id="blocked_by-predecessor-blocked"),
        pytest.param("blocked-by", TASK, OTHER, TASK, OTHER, id="blocked-by-spelling"),
    ],
)
def test_blocking_dependencies(kind: str, predecessor: str, successor: str, blocked: str, blocker: str) -> None:
    """Adding a blocking dependency blocks the right task; removing it unblocks the same one."""
    dep = TaskDependency(predecessor_task_id=predecessor, successor_task_id=successor, dependency_type=kind)
    added = check(task_dependency_added(dep, make_ctx(), project_id=PROJECT))
    assert (wire(added[0])["taskId"], wire(added[0])["blockedByTaskId"]) == (blocked, blocker)
    removed = check(task_dependency_removed(dep, make_ctx(), project_id=PROJECT))
    assert (wire(removed[0])["taskId"], wire(removed[0])["unblockedByTaskId"]) == (blocked, blocker)


@pytest.mark.parametrize("kind", [pytest.param("related_to", id="related"), pytest.param("duplicates", id="other")])
def test_non_blocking_dependencies_emit_nothing(kind: str) -> None:
    """Only blocking relationships produce dependency events."""
    dep = TaskDependency(predecessor_task_id=OTHER, successor_task_id=TASK, dependency_type=kind)
    assert task_dependency_added(dep, make_ctx(), project_id=PROJECT) == []
    assert task_dependency_removed(dep, make_ctx(), project_id=PROJECT) == []


def test_dependency_set_changes() -> None:
    """Set diffs unblock removed pairs, block new ones, and ignore restatements and non-blocking links."""
    a_blocks_b = TaskDependency(predecessor_task_id=OTHER, successor_task_id=TASK, dependency_type="blocks")
    b_blocked_by_a = TaskDependency(predecessor_task_id=TASK, successor_task_id=OTHER, dependency_type="blocked_by")
    related = TaskDependency(predecessor_task_id=uid("x"), successor_task_id=TASK, dependency_type="related_to")
    third = TaskDependency(predecessor_task_id=uid("y"), successor_task_id=TASK, dependency_type="blocks")
    ctx = make_ctx()
    assert task_dependencies_changed([a_blocks_b], [b_blocked_by_a, related], ctx, project_id=PROJECT) == []
    events = check(task_dependencies_changed([a_blocks_b], [third], ctx, project_id=PROJECT))
    assert types(events) == ["PROJECT_TASK_DEPENDENCY_UNBLOCKED", "PROJECT_TASK_DEPENDENCY_BLOCKED"]
