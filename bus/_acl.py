"""Redis ACL users for the bus: one per service or per tenant, confined to its own keys and to
the commands the bus runs.

>>> user = service_acl("email", channels=["emailservice::v7"], roles=["consume"])
>>> user.command_line()  # doctest: +ELLIPSIS
'ACL SETUSER svc-email reset on >*** resetkeys ~alga-psa:event-stream:emailservice::v7:* ...'

Key patterns, per role (``prefix`` = REDIS_PREFIX, ``head`` = prefix + REDIS_EVENT_STREAM_PREFIX):

- streams of the user's channels: ``~{head}{channel}:*`` (dead letters included), or the
  exact streams (and their dead letters) of ``event_types`` when given;
- consume: our processed markers ``~{prefix}processed:*`` and ``~{prefix}processed-handlers:*``
  and effect markers ``~{prefix}effect:*`` (never the reference's ``processed_events:*`` sets,
  which our consumers do not touch);
- publish: idempotency markers ``~{prefix}idempotency:*``;
- workflow stream: ``append`` = ``%W~workflow:events:global`` (write-only: a publish on
  ``global`` appends its workflow entry, and the user cannot read anyone's), ``full`` = read and
  write on it and its ``:dlq`` (the workflow consumer, and idempotent publishes on ``global``,
  whose Lua script declares the stream as a key, which Redis checks for read and write);
- notify: the pub/sub channels of in-app notifications (``&{prefix}internal-notifications:*``);
  everything else starts from ``resetchannels``.

A tenant-scoped deployment gives each tenant its own prefix (:func:`bus.security.tenant_prefix`:
``alga-psa:tenant:{tenant}:``), so its streams, dead letters, idempotency and processed markers and
notification channels all live under ``~{prefix}*`` and no other tenant's user matches them.
Tenant ids are checked first (:func:`bus.security.check_tenant_id`): a glob character in one would widen
these patterns to other tenants.

Passwords never appear in the rules: :meth:`AclUser.setuser_args` sends the SHA-256
(``#<hex>``), and :meth:`AclUser.command_line` prints ``>***`` unless asked for the hash.
Rotation without downtime: :func:`add_password_args`, ``bus.rotate_credentials``, then
:func:`remove_password_args`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Final, Literal

import msgspec

from ._errors import ConfigurationError
from ._keys import CHANNEL_GLOBAL, WORKFLOW_DLQ, WORKFLOW_STREAM, Keys
from ._tenant import check_tenant_id, tenant_prefix

__all__ = [
    "ACL_COMMANDS",
    "AclRole",
    "AclUser",
    "WorkflowAccess",
    "add_password_args",
    "password_hash",
    "remove_password_args",
    "service_acl",
    "tenant_acl",
]

AclRole = Literal["publish", "consume", "inspect", "notify"]
WorkflowAccess = Literal["none", "append", "full"]

#: The commands each role runs (subcommands as ``cmd|sub``). ``info`` is left out: the bus
#: tolerates its refusal at connect. ``scan`` (inspect) lists every key name, whatever the key
#: patterns: tenant users never get it.
ACL_COMMANDS: Final[dict[AclRole, tuple[str, ...]]] = {
    # MULTI/EXEC around XADDs; EVALSHA/EVAL run the idempotent publish script (GET, TYPE, XADD, SET).
    "publish": ("ping", "multi", "exec", "discard", "xadd", "evalsha", "eval", "get", "set", "type"),
    # Groups, reads, acks, reclaim, dead letters (XADD), processed markers, trimming checks.
    "consume": (
        "ping",
        "multi",
        "exec",
        "discard",
        "xgroup|create",
        "xreadgroup",
        "xack",
        "xclaim",
        "xautoclaim",
        "xpending",
        "xrange",
        "xadd",
        "xinfo|stream",
        "xinfo|groups",
        "xinfo|consumers",  # the shared-group check at start (bus.group_peers)
        "sadd",
        "smismember",
        "expire",
        # The marker script (bus.consume._markers.ADD_SCRIPT): SET NX, EXISTS, RENAME, SADD, EXPIRE.
        "eval",
        "rename",
        # redis_effect / apply_once: WATCH the effect marker, then MULTI/EXEC the effect + SET.
        "watch",
        "unwatch",
        "exists",
        "set",
    ),
    # ``bus status`` and dead-letter listing.
    "inspect": (
        "ping",
        "scan",
        "time",
        "exists",
        "xlen",
        "xrange",
        "xpending",
        "xinfo|stream",
        "xinfo|groups",
        "xinfo|consumers",
    ),
    # In-app notification push.
    "notify": ("ping", "publish"),
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def password_hash(password: str) -> str:
    """The SHA-256 hex digest Redis stores for a password (``#<hex>`` in ACL rules)."""
    return hashlib.sha256(password.encode()).hexdigest()


def add_password_args(username: str, password: str) -> list[str]:
    """``ACL SETUSER <user> #<sha256>``: the user accepts this password too (rotation step 1)."""
    return ["ACL", "SETUSER", username, "#" + password_hash(password)]


def remove_password_args(username: str, password: str) -> list[str]:
    """``ACL SETUSER <user> !<sha256>``: the user no longer accepts this password (rotation step 3)."""
    return ["ACL", "SETUSER", username, "!" + password_hash(password)]


class AclUser(msgspec.Struct, frozen=True, kw_only=True):
    """One ACL user: its name, key patterns, pub/sub channel patterns and allowed commands."""

    username: str
    keys: tuple[str, ...]
    channels: tuple[str, ...]
    commands: tuple[str, ...]

    @property
    def rules(self) -> tuple[str, ...]:
        """The ACL rules without password or state: keys, channels, then ``-@all`` and the commands."""
        return (
            "resetkeys",
            *self.keys,
            "resetchannels",
            *self.channels,
            "-@all",
            *(f"+{c}" for c in self.commands),
        )

    def setuser_args(self, password: str) -> list[str]:
        """``ACL SETUSER`` arguments creating (or resetting) the user with this password, as a hash."""
        return ["ACL", "SETUSER", self.username, "reset", "on", "#" + password_hash(password), *self.rules]

    def command_line(self, password: str | None = None) -> str:
        """The ``ACL SETUSER`` line for docs and operators: ``>***`` unless a password is given
        (then its ``#<sha256>``; the password itself is never printed)."""
        secret = "#" + password_hash(password) if password is not None else ">***"
        return " ".join(["ACL SETUSER", self.username, "reset", "on", secret, *self.rules])

    def acl_file_line(self, password: str) -> str:
        """The line for an ``aclfile`` (``user <name> on #<sha256> ...``)."""
        return " ".join(["user", self.username, "on", "#" + password_hash(password), *self.rules])


def _commands(roles: Iterable[AclRole]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for role in roles:
        if role not in ACL_COMMANDS:
            raise ConfigurationError("roles", f"unknown ACL role {role!r} (one of {', '.join(ACL_COMMANDS)})")
        out.update(dict.fromkeys(ACL_COMMANDS[role]))
    return tuple(out)


def _workflow_keys(access: WorkflowAccess) -> tuple[str, ...]:
    if access == "append":
        return (f"%W~{WORKFLOW_STREAM}",)
    if access == "full":
        return (f"~{WORKFLOW_STREAM}", f"~{WORKFLOW_DLQ}")
    if access == "none":
        return ()
    raise ConfigurationError("workflow", f"unknown workflow access {access!r} (none, append or full)")


def service_acl(
    service: str,
    *,
    channels: Sequence[str] = (CHANNEL_GLOBAL,),
    roles: Iterable[AclRole] = ("publish", "consume"),
    event_types: Sequence[str] | None = None,
    keys: Keys | None = None,
    workflow: WorkflowAccess | None = None,
    username: str | None = None,
) -> AclUser:
    """The ACL user ``svc-{service}`` of a service: its channels' streams, the markers, the commands of its roles.

    ``event_types`` narrows the streams to exactly those types (and their dead letters).
    ``workflow`` defaults to ``append`` for a publisher on ``global``, else ``none``.
    """
    if not _NAME.match(service):
        raise ConfigurationError("service", f"{service!r} is not a valid service name (letters, digits, _ . -)")
    if not channels:
        raise ConfigurationError("channels", "a service needs at least one channel")
    role_set = tuple(dict.fromkeys(roles))
    k = keys or Keys()
    head = k.prefix + k.stream_prefix
    patterns: list[str] = []
    for channel in channels:
        if not channel:
            raise ConfigurationError("channels", "channel names must not be empty")
        if event_types:
            for event_type in event_types:
                stream = _glob_escape(k.stream(channel, event_type))
                patterns.append(f"~{stream}")
                if "consume" in role_set or "inspect" in role_set:
                    patterns.append(f"~{_glob_escape(Keys.dead_letter(k.stream(channel, event_type)))}")
        else:
            patterns.append(f"~{_glob_escape(head + channel)}:*")
    if "consume" in role_set:
        own = _glob_escape(k.prefix)
        patterns += [f"~{own}processed:*", f"~{own}processed-handlers:*", f"~{own}effect:*"]
    if "publish" in role_set:
        patterns.append(f"~{_glob_escape(k.prefix)}idempotency:*")
    if workflow is None:
        workflow = "append" if "publish" in role_set and CHANNEL_GLOBAL in channels else "none"
    patterns += _workflow_keys(workflow)
    pubsub = (f"&{_glob_escape(k.prefix)}internal-notifications:*",) if "notify" in role_set else ()
    return AclUser(
        username=username or f"svc-{service}",
        keys=tuple(dict.fromkeys(patterns)),
        channels=pubsub,
        commands=_commands(role_set),
    )


def tenant_acl(
    tenant_id: str,
    *,
    roles: Iterable[AclRole] = ("publish", "consume"),
    base_prefix: str = "alga-psa:",
    workflow: WorkflowAccess | None = None,
    username: str | None = None,
) -> AclUser:
    """The ACL user ``tenant-{tenant}``: everything under the tenant's prefix, its two marker keys.

    The tenant's buses run with ``BusSettings(prefix=tenant_prefix(tenant_id))``. ``workflow``
    defaults to ``append`` for a publisher (its entries reach the shared workflow stream, which
    it cannot read), else ``none``. The ``inspect`` role leaves out SCAN (it lists every key name).
    """
    tenant = check_tenant_id(tenant_id)
    prefix = tenant_prefix(tenant, base_prefix)
    role_set = tuple(dict.fromkeys(roles))
    # Everything of the tenant's buses, their processed markers included, lives under its prefix.
    patterns = [f"~{_glob_escape(prefix)}*"]
    if workflow is None:
        workflow = "append" if "publish" in role_set else "none"
    patterns += _workflow_keys(workflow)
    pubsub = (f"&{_glob_escape(prefix)}internal-notifications:{tenant}:*",) if "notify" in role_set else ()
    commands = tuple(c for c in _commands(role_set) if c != "scan")
    return AclUser(
        username=username or f"tenant-{tenant}",
        keys=tuple(patterns),
        channels=pubsub,
        commands=commands,
    )
