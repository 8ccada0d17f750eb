"""Email building blocks: changes normalisation, value formatting, the file directory, template overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from subscribers.email import EmailTemplates, FileDirectory, format_money, normalize_changes

from ._data import ALICE, TENANT, TICKET


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"status": {"previous": "Open", "new": "Closed"}}, [("Status", "Open", "Closed")], id="previous-new"
        ),
        pytest.param({"priority_id": {"from": "Low", "to": "High"}}, [("Priority", "Low", "High")], id="from-to"),
        pytest.param({"assignedTo": None}, [("Assigned to", None, "—")], id="plain-null"),
        pytest.param({"tags": ["a", "b"]}, [("Tags", None, "a, b")], id="plain-list"),
        pytest.param({"attributes.due": {"previous": None, "new": True}}, [("Attributes due", "—", "yes")], id="bool"),
        pytest.param({"meta": {"x": 1}}, [("Meta", None, '{"x":1}')], id="plain-object"),
    ],
)
def test_normalize_changes(changes: dict[str, Any], expected: list[tuple[str, str | None, str]]) -> None:
    """The changes box accepts {previous, new}, {from, to} and plain values."""
    assert [(r.label, r.previous, r.new) for r in normalize_changes(changes)] == expected


def test_updated_fields_without_changes() -> None:
    """With only updatedFields, each field is listed as updated."""
    assert [r.label for r in normalize_changes(None, ["status", "dueDate"])] == ["Status", "Due date"]


@pytest.mark.parametrize(
    ("cents", "text"),
    [(0, "0.00"), (5, "0.05"), (123456, "1,234.56"), (-250, "-2.50"), ("n/a", "n/a")],
)
def test_format_money(cents: Any, text: str) -> None:
    """Integer minor units render as amounts with two decimals."""
    assert format_money(cents) == text


def test_file_directory_from_yaml(tmp_path: Path) -> None:
    """A YAML directory loads; the '*' tenant answers for any tenant."""
    path = tmp_path / "dir.yaml"
    path.write_text(f"tenants:\n  '*':\n    users:\n      - {{id: {ALICE}, email: a@x.example, name: Alice}}\n")
    directory = FileDirectory.from_path(path)
    assert directory.data.tenants["*"].users[0].email == "a@x.example"


async def test_file_directory_lookups() -> None:
    """Unknown ids and tenants give None."""
    directory = FileDirectory.from_dict({"tenants": {TENANT: {"tickets": [{"id": TICKET, "title": "T"}]}}})
    ticket = await directory.get_ticket(TENANT, TICKET)
    assert ticket is not None and ticket.title == "T"
    assert await directory.get_ticket("other", TICKET) is None
    assert await directory.get_user(TENANT, ALICE) is None


def test_file_directory_errors_name_file_and_field(tmp_path: Path) -> None:
    """A typo in the file fails with the file name and the field path."""
    path = tmp_path / "dir.json"
    path.write_text('{"tenants": {"t": {"users": [{"id": "u", "emial": "x"}]}}}')
    with pytest.raises(ValueError, match=r"dir\.json.*emial"):
        FileDirectory.from_path(path)


def test_template_override_directory(tmp_path: Path) -> None:
    """A template in a search-path directory replaces the packaged one; subjects stay one line."""
    (tmp_path / "ticket_created.j2").write_text(
        "{% extends layout %}{% block subject %}Custom\n{{ ticket.title }}{% endblock %}"
        "{% block headline %}H{% endblock %}{% block intro %}I{% endblock %}"
    )
    rendered = EmailTemplates([tmp_path]).render(
        "TICKET_CREATED", {"ticket": {"title": "<b>x</b>"}, "recipient": {"role": "assignee"}, "product_name": "P"}
    )
    assert rendered.subject == "Custom <b>x</b>"
    assert "<title>Custom &lt;b&gt;x&lt;/b&gt;</title>" in rendered.html
