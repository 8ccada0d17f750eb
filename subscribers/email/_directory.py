"""Who is who: the ``Directory`` protocol subscribers resolve recipients through, and a file-backed one.

Events carry ids, not addresses. A :class:`Directory` turns ``(tenant, id)`` into users,
contacts, tickets, projects, tasks and teams. :class:`FileDirectory` reads them from a JSON or
YAML file (demo and tests); production plugs in its database by implementing the protocol::

    class SqlDirectory:
        def __init__(self, pool: asyncpg.Pool) -> None:
            self.pool = pool

        async def get_user(self, tenant_id: str, user_id: str) -> User | None:
            row = await self.pool.fetchrow(
                "select user_id, email, first_name || ' ' || last_name as name, user_type"
                " from users where tenant = $1 and user_id = $2 and not is_inactive",
                tenant_id, user_id,
            )
            return None if row is None else User(
                id=str(row["user_id"]), email=row["email"], name=row["name"],
                is_internal=row["user_type"] == "internal",
            )
        ...  # get_contact, get_ticket, get_project, get_task, get_team likewise

Every method returns ``None`` for an unknown id; subscribers then skip that recipient.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec
import yaml

__all__ = [
    "Contact",
    "Directory",
    "DirectoryData",
    "EmailThread",
    "FileDirectory",
    "Project",
    "Task",
    "Team",
    "TenantDirectory",
    "Ticket",
    "User",
]


class User(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An account: internal staff (``is_internal``) or a client-portal user."""

    id: str
    email: str | None = None
    name: str = ""
    is_internal: bool = True
    is_active: bool = True


class Contact(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A client contact: gets customer-facing mail, never internal notes."""

    id: str
    email: str | None = None
    name: str = ""
    client_id: str | None = None
    #: The contact's portal account, if any (for in-app notifications).
    user_id: str | None = None


class EmailThread(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Mail threading facts of a ticket created from (or already answered by) email."""

    message_id: str | None = None
    references: tuple[str, ...] = ()
    thread_id: str | None = None


class Ticket(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A ticket: who it is for, who works on it, and its mail thread."""

    id: str
    title: str = ""
    number: str = ""
    status: str = ""
    priority: str = ""
    client_name: str = ""
    contact_id: str | None = None
    assigned_to: str | None = None
    additional_agents: tuple[str, ...] = ()
    url: str | None = None
    email: EmailThread | None = None


class Project(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A project: its manager (``assigned_to``) and client contact."""

    id: str
    name: str = ""
    number: str = ""
    status: str = ""
    client_name: str = ""
    contact_id: str | None = None
    assigned_to: str | None = None
    url: str | None = None


class Task(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A project task: its assignee and additional agents."""

    id: str
    project_id: str | None = None
    name: str = ""
    assigned_to: str | None = None
    additional_agents: tuple[str, ...] = ()
    url: str | None = None


class Team(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A team: assignments to a team reach its members."""

    id: str
    name: str = ""
    members: tuple[str, ...] = ()


@runtime_checkable
class Directory(Protocol):
    """Lookups by tenant and id; ``None`` when unknown. Implement it over your database."""

    async def get_user(self, tenant_id: str, user_id: str) -> User | None: ...

    async def get_contact(self, tenant_id: str, contact_id: str) -> Contact | None: ...

    async def get_ticket(self, tenant_id: str, ticket_id: str) -> Ticket | None: ...

    async def get_project(self, tenant_id: str, project_id: str) -> Project | None: ...

    async def get_task(self, tenant_id: str, task_id: str) -> Task | None: ...

    async def get_team(self, tenant_id: str, team_id: str) -> Team | None: ...


class TenantDirectory(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One tenant's records, as lists in the file."""

    users: tuple[User, ...] = ()
    contacts: tuple[Contact, ...] = ()
    tickets: tuple[Ticket, ...] = ()
    projects: tuple[Project, ...] = ()
    tasks: tuple[Task, ...] = ()
    teams: tuple[Team, ...] = ()


class DirectoryData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The file's shape: ``tenants: {<tenantId or "*">: {users: [...], tickets: [...], ...}}``.

    The ``"*"`` tenant answers for any tenant (handy for demos).
    """

    tenants: dict[str, TenantDirectory] = {}


def _index(items: Iterable[Any]) -> dict[str, Any]:
    return {item.id: item for item in items}


class FileDirectory:
    """A :class:`Directory` held in memory, loaded from JSON/YAML or built from :class:`DirectoryData`."""

    def __init__(self, data: DirectoryData) -> None:
        self.data = data
        self._tables: dict[str, dict[str, dict[str, Any]]] = {}
        for tenant, records in data.tenants.items():
            self._tables[tenant] = {
                "users": _index(records.users),
                "contacts": _index(records.contacts),
                "tickets": _index(records.tickets),
                "projects": _index(records.projects),
                "tasks": _index(records.tasks),
                "teams": _index(records.teams),
            }

    @classmethod
    def from_path(cls, path: str | Path) -> FileDirectory:
        """Load a ``.json``, ``.yaml`` or ``.yml`` file; errors name the file and the bad field."""
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        try:
            raw: Any = yaml.safe_load(text) if p.suffix.lower() in (".yaml", ".yml") else msgspec.json.decode(text)
            return cls(msgspec.convert(raw or {}, DirectoryData))
        except (msgspec.ValidationError, msgspec.DecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"directory file {p}: {exc}") from None

    @classmethod
    def from_dict(cls, raw: Any) -> FileDirectory:
        """Build from a plain mapping of the file's shape."""
        return cls(msgspec.convert(raw, DirectoryData))

    def _get(self, table: str, tenant_id: str, key: str) -> Any:
        for tenant in (tenant_id, "*"):
            found = self._tables.get(tenant, {}).get(table, {}).get(key)
            if found is not None:
                return found
        return None

    async def get_user(self, tenant_id: str, user_id: str) -> User | None:
        """The user, or None."""
        user: User | None = self._get("users", tenant_id, user_id)
        return user

    async def get_contact(self, tenant_id: str, contact_id: str) -> Contact | None:
        """The contact, or None."""
        contact: Contact | None = self._get("contacts", tenant_id, contact_id)
        return contact

    async def get_ticket(self, tenant_id: str, ticket_id: str) -> Ticket | None:
        """The ticket, or None."""
        ticket: Ticket | None = self._get("tickets", tenant_id, ticket_id)
        return ticket

    async def get_project(self, tenant_id: str, project_id: str) -> Project | None:
        """The project, or None."""
        project: Project | None = self._get("projects", tenant_id, project_id)
        return project

    async def get_task(self, tenant_id: str, task_id: str) -> Task | None:
        """The task, or None."""
        task: Task | None = self._get("tasks", tenant_id, task_id)
        return task

    async def get_team(self, tenant_id: str, team_id: str) -> Team | None:
        """The team, or None."""
        team: Team | None = self._get("teams", tenant_id, team_id)
        return team
