"""``bus acl``: print the ACL user of a service or a tenant (``bus/_acl.py``), ready to apply.

Without ``--password-stdin`` the line shows ``>***``; with it, the password read from stdin
appears only as its SHA-256 (``#<hex>``). Exit 0, or 2 for a usage error (an invalid tenant id
or service name, named with the rule).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, cast

from .._acl import ACL_COMMANDS, AclRole, AclUser, WorkflowAccess, service_acl, tenant_acl
from .._errors import ConfigurationError, InvalidTenantIdError
from .._keys import Keys
from .._settings import BusSettings

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``acl`` to the CLI."""
    acl = sub.add_parser(
        "acl",
        help="print the ACL SETUSER line of a service or tenant user",
        description="Build the Redis ACL user of a service (its channels' streams) or of a tenant (its own "
        "prefix, alga-psa:tenant:{tenant}:), limited to the commands the bus runs.",
    )
    who = acl.add_mutually_exclusive_group(required=True)
    who.add_argument("--service", help="service name: user svc-{name}")
    who.add_argument("--tenant", help="tenant id: user tenant-{id}")
    acl.add_argument("--channel", action="append", help="channel (repeatable; service only; default global)")
    acl.add_argument(
        "--role",
        action="append",
        choices=tuple(ACL_COMMANDS),
        help="role (repeatable; default publish and consume)",
    )
    acl.add_argument("--event-type", action="append", help="only these event types' streams (service only)")
    acl.add_argument("--workflow", choices=("none", "append", "full"), help="access to workflow:events:global")
    acl.add_argument("--prefix", help="key prefix (REDIS_PREFIX, default alga-psa:)")
    acl.add_argument(
        "--stream-prefix", help="stream prefix (REDIS_EVENT_STREAM_PREFIX, default event-stream:; service only)"
    )
    acl.add_argument("--username", help="user name instead of svc-{name} / tenant-{id}")
    acl.add_argument(
        "--format",
        choices=("line", "aclfile"),
        default="line",
        help="an ACL SETUSER line (default) or an aclfile line (needs --password-stdin)",
    )
    acl.add_argument("--password-stdin", action="store_true", help="read the password from stdin (printed hashed)")
    acl.set_defaults(handler=_acl)


def _prefixes(args: argparse.Namespace) -> tuple[str, str]:
    """``--prefix``/``--stream-prefix`` when given, else REDIS_PREFIX/REDIS_EVENT_STREAM_PREFIX, else the defaults."""
    given = {"prefix": args.prefix, "stream_prefix": args.stream_prefix}
    env = {var: os.environ[var] for var in ("REDIS_PREFIX", "REDIS_EVENT_STREAM_PREFIX") if os.environ.get(var)}
    settings = BusSettings.from_env(env, **{k: v for k, v in given.items() if v is not None})
    return settings.prefix, settings.stream_prefix


def _acl(args: argparse.Namespace) -> int:
    roles = cast("list[AclRole]", args.role or ["publish", "consume"])
    workflow = cast("WorkflowAccess | None", args.workflow)
    try:
        prefix, stream_prefix = _prefixes(args)
        user: AclUser
        if args.tenant is not None:
            if args.channel or args.event_type:
                raise ConfigurationError(
                    "--channel", "a tenant user covers its whole prefix; drop --channel/--event-type"
                )
            user = tenant_acl(args.tenant, roles=roles, base_prefix=prefix, workflow=workflow, username=args.username)
        else:
            user = service_acl(
                args.service,
                channels=args.channel or ["global"],
                roles=roles,
                event_types=args.event_type,
                keys=Keys(prefix, stream_prefix),
                workflow=workflow,
                username=args.username,
            )
    except (ConfigurationError, InvalidTenantIdError) as exc:
        print(f"bus acl: {exc}", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
    if args.password_stdin and not password:
        print("bus acl: --password-stdin read an empty password", file=sys.stderr)
        return 2
    if args.format == "aclfile":
        if password is None:
            print("bus acl: --format aclfile needs --password-stdin", file=sys.stderr)
            return 2
        print(user.acl_file_line(password))
    else:
        print(user.command_line(password))
    return 0
