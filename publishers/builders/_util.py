"""Helpers every builder shares: the ctx envelope, diffs, idempotency keys, crossings.

Builders are pure: they read their arguments and nothing else. The only clock is
``ctx.occurred_at`` (required), which is also "now" for window and bucket arithmetic, so the
same inputs always give the same events and the same idempotency keys.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from schemas import REGISTRY, FieldChange, Payload, parse_iso, to_iso

from .._context import DomainEvent, PublishContext

__all__ = [
    "DAY",
    "Diff",
    "actor_user_id",
    "as_utc",
    "camel",
    "ctx_now",
    "date_window_entered",
    "days_until",
    "diff_entities",
    "digest",
    "emit",
    "envelope",
    "idem_key",
    "iso",
    "iso_opt",
    "json_value",
    "money",
    "norm_status",
    "opt",
    "text_opt",
    "threshold_crossed",
    "time_bucket",
    "window_entered",
]

T = TypeVar("T")

DAY: Final = timedelta(days=1)


# ---------------------------------------------------------------- context and envelope


def ctx_now(ctx: PublishContext) -> datetime:
    """The builder's "now": ``ctx.occurred_at`` parsed; builders never read the clock."""
    if ctx.occurred_at is None:
        raise ValueError(
            "builders are pure and need ctx.occurred_at; set it with ctx.with_time(datetime.now(UTC)) "
            "before calling a builder"
        )
    return parse_iso(ctx.occurred_at)


def envelope(ctx: PublishContext) -> dict[str, Any]:
    """tenantId, occurredAt and the actor overlay, as Struct keyword arguments."""
    ctx_now(ctx)  # validates presence and format
    fields: dict[str, Any] = {"tenant_id": ctx.tenant_id, "occurred_at": ctx.occurred_at}
    actor = ctx.actor
    if actor is not None:
        fields["actor_type"] = actor.type
        if actor.type == "USER" and actor.user_id is not None:
            fields["actor_user_id"] = actor.user_id
        elif actor.type == "CONTACT" and actor.contact_id is not None:
            fields["actor_contact_id"] = actor.contact_id
    return fields


def actor_user_id(ctx: PublishContext) -> str | UnsetType:
    """The acting user's id for ``...ByUserId`` fields, or UNSET when the actor is not a user."""
    actor = ctx.actor
    if actor is not None and actor.type == "USER" and actor.user_id is not None:
        return actor.user_id
    return UNSET


def _event_type_of(payload: Payload) -> str:
    for cls in type(payload).__mro__:
        if isinstance(cls, type) and issubclass(cls, Payload):
            spec = REGISTRY.spec_for_struct(cls)
            if spec is not None:
                return spec.event_type
    raise TypeError(f"{type(payload).__name__} is not the payload Struct of any known event type")


def emit(
    payload: Payload,
    *,
    key: str | None = None,
    correlation: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    event_name: str | None = None,
) -> DomainEvent:
    """Wrap a payload Struct in a :class:`DomainEvent`; the event type comes from the registry."""
    return DomainEvent(
        event_type=_event_type_of(payload),
        payload=payload,
        idempotency_key=key,
        correlation_key=correlation,
        event_name=event_name,
        from_state=from_state,
        to_state=to_state,
    )


# ---------------------------------------------------------------- value conversion


def opt(value: T | None) -> T | UnsetType:
    """``None`` -> UNSET, so an absent optional value is omitted rather than sent as null."""
    return UNSET if value is None else value


def text_opt(value: str | None) -> str | UnsetType:
    """A non-blank string, or UNSET (empty and whitespace-only strings are omitted)."""
    return value if value is not None and value.strip() else UNSET


def as_utc(value: datetime) -> datetime:
    """Check that ``value`` is aware and convert it to UTC (naive datetimes are refused)."""
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """Wire form of an aware datetime, converted to UTC (``...Z``)."""
    return to_iso(as_utc(value))


def iso_opt(value: datetime | None) -> str | UnsetType:
    """Wire form of an optional datetime."""
    return UNSET if value is None else iso(value)


def money(value: Decimal | int | str) -> str:
    """Money amounts travel as strings; floats are refused (they cannot hold cents exactly)."""
    if isinstance(value, bool | float):
        raise TypeError(f"money amount {value!r} must be a Decimal, int or str, not {type(value).__name__}")
    text = str(value)
    if not text:
        raise ValueError("money amount must not be empty")
    return text


def norm_status(value: str | None) -> str:
    """Status names compared case- and separator-insensitively: ``'En Route'`` -> ``'en_route'``."""
    return re.sub(r"[\s\-]+", "_", (value or "").strip().lower())


def json_value(value: Any) -> Any:
    """A JSON-ready copy of a snapshot value (datetimes as ``...Z``, Decimals as strings)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if isinstance(value, msgspec.Struct):
        return {camel(f): json_value(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((json_value(v) for v in value), key=repr)
    if isinstance(value, Iterable):
        return [json_value(v) for v in value]
    raise TypeError(f"cannot put a {type(value).__name__} into an event payload")


def camel(name: str) -> str:
    """``client_name`` -> ``clientName`` (a dotted path is converted segment by segment)."""
    return ".".join(re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), part) for part in name.split("."))


# ---------------------------------------------------------------- diffs


class Diff(msgspec.Struct, frozen=True, kw_only=True):
    """What changed between two snapshots: camelCase paths and ``{previous, new}`` per path."""

    updated_fields: list[str]
    changes: dict[str, FieldChange]

    def __bool__(self) -> bool:
        return bool(self.updated_fields)

    def has(self, path: str) -> bool:
        """True when ``path`` (camelCase) or something under it changed."""
        return any(p == path or p.startswith(path + ".") for p in self.updated_fields)


def _as_mapping(entity: Any) -> Mapping[str, Any]:
    if isinstance(entity, msgspec.Struct):
        return {f: getattr(entity, f) for f in entity.__struct_fields__}
    if isinstance(entity, Mapping):
        return entity
    raise TypeError(f"cannot diff a {type(entity).__name__}; pass a msgspec Struct or a Mapping")


def _walk(path: str, before: Any, after: Any, out: dict[str, FieldChange], depth: int) -> None:
    if isinstance(before, Mapping) and isinstance(after, Mapping) and depth < 4:
        for key in sorted(set(before) | set(after), key=str):
            _walk(f"{path}.{key}", before.get(key), after.get(key), out, depth + 1)
        return
    prev, new = json_value(before), json_value(after)
    if prev != new:
        out[path] = FieldChange(previous=prev, new=new)


def diff_entities(before: Any, after: Any, *, fields: Iterable[str] | None = None, ignore: Iterable[str] = ()) -> Diff:
    """Compare two snapshots field by field (Structs or Mappings, snake_case names).

    Nested mappings (custom fields) are compared key by key and reported as dotted paths
    (``customFields.region``); values are compared in their JSON form, so ``Decimal("1.0")``
    and ``Decimal("1.00")`` differ but a re-created equal datetime does not. ``fields``
    restricts the comparison; ``ignore`` drops identity and bookkeeping fields.
    """
    b, a = _as_mapping(before), _as_mapping(after)
    names = list(fields) if fields is not None else [*b, *(k for k in a if k not in b)]
    skipped = set(ignore)
    changes: dict[str, FieldChange] = {}
    for name in names:
        if name in skipped:
            continue
        _walk(camel(name), b.get(name), a.get(name), changes, 0)
    return Diff(updated_fields=list(changes), changes=changes)


# ---------------------------------------------------------------- keys, thresholds, windows


def idem_key(event_type: str, *parts: object) -> str:
    """``ticket_status_changed:<id>:<from>-><to>:<at>``: the event type lowercased, then the parts.

    ``None`` parts are written as ``-`` so that the number of segments never changes.
    """
    return ":".join([event_type.lower(), *("-" if p is None else str(p) for p in parts)])


def digest(*parts: object) -> str:
    """A short stable fingerprint (16 hex digits of sha256) of JSON-able parts, for keys."""
    data = msgspec.json.encode([json_value(p) for p in parts], order="sorted")
    return hashlib.sha256(data).hexdigest()[:16]


def time_bucket(when: datetime, size: timedelta) -> int:
    """Index of the fixed-size bucket holding ``when`` (epoch milliseconds // bucket milliseconds)."""
    millis = int(as_utc(when).timestamp() * 1000)
    return millis // int(size.total_seconds() * 1000)


def threshold_crossed(before: float, after: float, limit: float) -> bool:
    """True only on an upward crossing: ``before < limit <= after`` (and a positive limit)."""
    return limit > 0 and before < limit <= after


def _inside(target: datetime | None, now: datetime, window: timedelta, minimum: timedelta) -> bool:
    if target is None:
        return False
    remaining = as_utc(target) - as_utc(now)
    return remaining > timedelta(0) and minimum <= remaining <= window


def window_entered(
    *,
    target_before: datetime | None,
    target_after: datetime | None,
    now_before: datetime,
    now_after: datetime,
    window: timedelta,
    minimum: timedelta = timedelta(0),
) -> bool:
    """True when a deadline enters ``[minimum, window]`` ahead of now, and was not in it before.

    "Before" is the previous observation: the old deadline at the same time (a date moved
    into the window) or the same deadline at the previous scan (time moved it in). A past
    deadline is never inside.
    """
    return _inside(target_after, now_after, window, minimum) and not _inside(target_before, now_before, window, minimum)


def date_window_entered(
    *,
    target_before: date | None,
    target_after: date | None,
    today_before: date,
    today_after: date,
    window_days: int,
) -> bool:
    """Calendar-day version of :func:`window_entered`: ``0 <= target - today <= window_days``
    now, and not before (the deadline day itself counts as inside)."""

    def inside(target: date | None, today: date) -> bool:
        return target is not None and 0 <= (target - today).days <= window_days

    return inside(target_after, today_after) and not inside(target_before, today_before)


def days_until(target: datetime, now: datetime) -> int:
    """Whole days left, rounded up (23 h -> 1), never negative."""
    seconds = (as_utc(target) - as_utc(now)).total_seconds()
    return max(0, math.ceil(seconds / DAY.total_seconds()))
