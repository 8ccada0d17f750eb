"""Tenant ids that are safe inside key names, key patterns and ACL rules.

A tenant id ends up in keys (``{prefix}processed:{tenant}``, idempotency markers, notification
channels, a tenant's key prefix) and in the ACL patterns that confine a tenant's user to those
keys (``~alga-psa:tenant:{tenant}:*``). So it must not carry:

- glob characters ``* ? [ ] \\``: ``~alga-psa:tenant:a*`` would grant every tenant starting with
  ``a``, and a SCAN ``MATCH`` would widen the same way;
- hash-tag braces ``{ }``: in Redis Cluster a tenant id ``{x}`` would decide the slot of keys
  that are not its own (and pin unrelated tenants' keys to one slot);
- the key separator ``:``: tenant ``a``'s pattern ``...:a:*`` would match tenant ``a:b``'s keys;
- whitespace or control characters (invisible in logs and ``ACL LIST``, break line-based tools);
- more than :data:`MAX_TENANT_ID_CHARS` characters.

:func:`check_tenant_id` raises :class:`InvalidTenantIdError` naming the id and the rule;
:func:`tenant_id_problem` returns the rule (or None) for callers that report instead of raise.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Final

from ._errors import InvalidTenantIdError

__all__ = ["MAX_TENANT_ID_CHARS", "check_tenant_id", "checked_tenant_ids", "tenant_id_problem", "tenant_prefix"]

MAX_TENANT_ID_CHARS: Final = 128

_GLOB = frozenset("*?[]\\")
_HASH_TAG = frozenset("{}")
#: Ids already checked (bounded): the consume path checks one per entry.
_VALID: set[str] = set()
_VALID_MAX = 4096


def tenant_id_problem(tenant_id: object) -> str | None:
    """The rule ``tenant_id`` breaks, as a sentence; None when it is valid."""
    if isinstance(tenant_id, str) and tenant_id in _VALID:
        return None
    if not isinstance(tenant_id, str):
        return f"must be a string, not {type(tenant_id).__name__}"
    if not tenant_id:
        return "must not be empty"
    if len(tenant_id) > MAX_TENANT_ID_CHARS:
        return f"is {len(tenant_id)} characters long (at most {MAX_TENANT_ID_CHARS})"
    for ch in tenant_id:
        if ch in _GLOB:
            return (
                f"contains the glob character {ch!r} (none of * ? [ ] \\ may appear: they would widen ACL key "
                "patterns and SCAN matches to other tenants' keys)"
            )
        if ch in _HASH_TAG:
            return (
                f"contains the hash-tag brace {ch!r} (no {{ or }}: in Redis Cluster a hash tag would decide "
                "the slot of keys that are not the tenant's)"
            )
        if ch == ":":
            return (
                "contains the key separator ':' (a pattern for tenant 'a' ending in ':a:*' would also match "
                "the keys of tenant 'a:b')"
            )
        if ch.isspace() or not ch.isprintable():
            return f"contains the whitespace or control character U+{ord(ch):04X} (printable characters only)"
    if len(_VALID) >= _VALID_MAX:
        _VALID.clear()
    _VALID.add(tenant_id)
    return None


def checked_tenant_ids() -> AbstractSet[str]:
    """The tenant ids :func:`tenant_id_problem` already found valid: a bounded cache, the same set
    for the life of the process, so a loop over many entries tests membership before calling it."""
    return _VALID


def check_tenant_id(tenant_id: str) -> str:
    """``tenant_id`` itself when it is safe in keys and ACL patterns; else :class:`InvalidTenantIdError`."""
    problem = tenant_id_problem(tenant_id)
    if problem is not None:
        raise InvalidTenantIdError(tenant_id, problem)
    return tenant_id


def tenant_prefix(tenant_id: str, base_prefix: str = "alga-psa:") -> str:
    """The key prefix (REDIS_PREFIX) of a tenant-scoped deployment: ``alga-psa:tenant:{tenant}:``.

    A bus with ``BusSettings(prefix=tenant_prefix(t))`` keeps its streams, dead letters,
    idempotency markers and notification channels under it, which the tenant's ACL user
    (:func:`bus.security.tenant_acl`) may touch and no other tenant's may. The ``tenant:`` segment keeps
    tenant prefixes apart from the shared ``alga-psa:event-stream:...`` keys.
    """
    return f"{base_prefix}tenant:{check_tenant_id(tenant_id)}:"
