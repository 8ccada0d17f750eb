"""The registry: event type <-> schema ref <-> Struct <-> category, with cached decoders.

Validation turns msgspec's errors into :class:`EventValidationError` naming the event type,
the JSON path and the rule. Each Struct gets one reusable :class:`~schemas._checks.CheckedDecoder`
(msgspec's decoder plus the one-pass uuid and datetime checks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from ._catalog import SPECS
from ._checks import CheckedDecoder, checked
from ._common import Payload
from ._errors import EventValidationError, UnknownEventTypeError, UnknownSchemaRefError
from ._native import lacks_key
from ._spec import EventSpec, VariantKind
from ._types import (
    DATE_PATTERN,
    DATETIME_PATTERN,
    EMAIL_PATTERN,
    STRICT_DATETIME_PATTERN,
    URL_PATTERN,
    UUID_PATTERN,
)

__all__ = [
    "REGISTRY",
    "Registry",
    "TypedPayload",
    "schema_ref_for",
    "translate_validation_error",
]

P = TypeVar("P", bound=Payload)

_AT = re.compile(r"^(?P<rule>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def schema_ref_for(event_type: str) -> str:
    """The reference's naming rule: ``TICKET_SLA_STAGE_MET`` -> ``payload.TicketSlaStageMet.v1``."""
    return "payload." + "".join(p.capitalize() for p in event_type.split("_") if p) + ".v1"


_FRIENDLY = {
    UUID_PATTERN: "a uuid (8-4-4-4-12 hex digits)",
    DATETIME_PATTERN: "an ISO-8601 UTC timestamp ending in Z (no offset, not naive)",
    STRICT_DATETIME_PATTERN: "an ISO-8601 UTC timestamp ending in Z (no offset, not naive)",
    DATE_PATTERN: "a date YYYY-MM-DD",
    EMAIL_PATTERN: "an email address",
    URL_PATTERN: "a URL with a scheme",
}
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _rule_text(rule: str) -> str:
    for pattern, text in _FRIENDLY.items():
        if f"regex {pattern!r}" in rule:
            return f"Expected {text}"
    return rule


def _split(exc: BaseException) -> tuple[str, str]:
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any string
    rule, path = match.group("rule"), match.group("path") or "$"
    missing = _MISSING.match(rule)
    if missing:
        return f"{path}.{missing.group('field')}", "required field is missing"
    return path, _rule_text(rule)


def _narrow(doc: Any, steps: list[str | int], key: str) -> Any:
    """A copy of ``doc`` whose dict at ``steps`` holds only ``key``."""
    if not steps:
        return {key: doc[key]}
    head, rest = steps[0], steps[1:]
    if isinstance(doc, dict):
        return {**doc, head: _narrow(doc[head], rest, key)}
    out = list(doc)
    out[head] = _narrow(doc[head], rest, key)  # type: ignore[index]
    return out


def _steps(path: str) -> list[str | int]:
    return [int(i) if i else k for k, i in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path)]


#: What re-decodes a failing document while locating a map key: a checked or a plain decoder.
_Decoder = CheckedDecoder[Any] | msgspec.json.Decoder[Any]


def _locate(decoder: _Decoder, data: bytes | str, path: str) -> str:
    """Replace msgspec's ``[...]`` (a dict value) in ``path`` with the failing key.

    Only runs on the error path: it re-decodes with one key at a time.
    """
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return path
    for _ in range(8):
        if "[...]" not in path:
            return path
        prefix = path[: path.index("[...]")]
        steps = _steps(prefix[1:])
        node = doc
        try:
            for step in steps:
                node = node[step]
        except (KeyError, IndexError, TypeError):
            return path
        if not isinstance(node, dict):
            return path
        for key in node:
            try:
                decoder.decode(msgspec.json.encode(_narrow(doc, steps, key)))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                sub = _split(exc)[0]
                if not sub.startswith(prefix + "[...]"):
                    continue
                seg = f".{key}" if _KEY.match(key) else f"[{msgspec.json.encode(key).decode()}]"
                path = prefix + seg + sub[len(prefix) + 5 :]
                doc = _narrow(doc, steps, key)
                break
        else:
            return path
    return path


def translate_validation_error(
    exc: msgspec.ValidationError | msgspec.DecodeError,
    event_type: str,
    root: str = "$.payload",
    *,
    decoder: _Decoder | None = None,
    data: bytes | str | None = None,
) -> EventValidationError:
    """Turn a msgspec error into one that names the event type, the full path and the rule.

    With ``decoder`` and ``data`` a dict value's ``[...]`` in the path becomes its key.
    """
    path, rule = _split(exc)
    if "[...]" in path and decoder is not None and data is not None:
        path = _locate(decoder, data, path)
    return EventValidationError(event_type, root + path[1:], rule)


#: ``(kind, decoder, required wire names, the same quoted as JSON bytes, and as str)``; the names are
#: empty for a shape that is always tried (a union's domain shape, a single shape).
_Variant = tuple[VariantKind, CheckedDecoder[Any], frozenset[str], tuple[bytes, ...], tuple[str, ...]]


def _lacks(
    data: bytes | str,
    present: Mapping[str, Any] | None,
    names: frozenset[str],
    quoted: tuple[bytes, ...],
    quoted_str: tuple[str, ...],
) -> bool:
    """True when the object certainly lacks one of ``names`` (a shape requiring them cannot match).

    Bytes are searched by the C ``lacks_key`` when it is built, else with ``bytes.find``.
    """
    if present is not None:
        return not present.keys() >= names
    if type(data) is bytes and lacks_key is not None:
        return lacks_key(data, quoted)
    if type(data) is bytes:
        # ``92 in data`` and ``find``: ``bytes in bytes`` first tries the needle as an int and
        # clears the TypeError, which costs more than the search itself.
        if 92 in data:  # a backslash: some key may be spelt with an escape
            return False
        find = data.find
        for q in quoted:  # noqa: SIM110 - a loop, not any() over a generator: this is the hot path
            if find(q) < 0:
                return True
        return False
    if type(data) is str:
        if "\\" in data:
            return False
        for qs in quoted_str:
            if qs not in data:
                return True
    return False


class TypedPayload(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """A validated payload: which shape matched and the typed value (unknown keys dropped)."""

    variant: VariantKind
    value: P


class Registry:
    """Lookup and validation over a fixed set of :class:`EventSpec`."""

    def __init__(self, specs: tuple[EventSpec, ...]) -> None:
        self._by_type = {s.event_type: s for s in specs}
        self._by_ref = {s.schema_ref: s for s in specs}
        self._by_cls: dict[type[Payload], EventSpec] = {}
        for s in specs:
            for _, cls in s.variants:
                self._by_cls.setdefault(cls, s)
            self._by_cls.setdefault(s.catalog_type, s)
        self._plans: dict[str, tuple[_Variant, ...]] = {}

    def __iter__(self) -> Iterator[EventSpec]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._by_type

    @property
    def event_types(self) -> tuple[str, ...]:
        """Every known event type, grouped by domain module, each in the catalog facts' order."""
        return tuple(self._by_type)

    def get(self, event_type: str) -> EventSpec:
        """The spec of ``event_type``; an unknown name raises with the closest suggestions."""
        try:
            return self._by_type[event_type]
        except KeyError:
            raise UnknownEventTypeError(event_type, self._by_type) from None

    def by_ref(self, ref: str) -> EventSpec:
        """The spec whose schema ref is ``ref`` (``payload.TicketCreated.v1``)."""
        try:
            return self._by_ref[ref]
        except KeyError:
            raise UnknownSchemaRefError(ref, self._by_ref) from None

    def resolve(self, name: str) -> EventSpec:
        """Accept an event type or a schema ref."""
        if name.startswith("payload."):
            return self.by_ref(name)
        return self.get(name)

    def spec_for_struct(self, cls: type[Payload]) -> EventSpec | None:
        """The spec that owns a payload Struct class, if any."""
        return self._by_cls.get(cls)

    def decoder(self, cls: type[P]) -> CheckedDecoder[P]:
        """The cached JSON decoder of one payload Struct (msgspec's, plus the uuid/datetime checks)."""
        return checked(cls)

    def _plan(self, event_type: str) -> tuple[_Variant, ...]:
        """The variants of ``event_type`` with their decoders and what a skip test needs (cached)."""
        plan = self._plans.get(event_type)
        if plan is None:
            spec = self.get(event_type)
            union = len(spec.variants) > 1
            domain: set[str] = set()
            for kind, cls in spec.variants:
                if kind == "domain":
                    domain = {f.encode_name for f in msgspec.structs.fields(cls) if f.required}
            out: list[_Variant] = []
            for kind, cls in spec.variants:
                # Only a union's non-domain shape may be skipped: the domain shape's error (or the
                # only shape's) is the one reported, so it is always tried.
                names: list[str] = []
                if union and kind != "domain":
                    names = [f.encode_name for f in msgspec.structs.fields(cls) if f.required]
                    names.sort(key=lambda n: n in domain)  # the keys that tell the shapes apart first
                quoted = tuple(msgspec.json.encode(n) for n in names)
                out.append((kind, self.decoder(cls), frozenset(names), quoted, tuple(q.decode() for q in quoted)))
            plan = self._plans[event_type] = tuple(out)
        return plan

    def decode_payload(
        self,
        event_type: str,
        data: bytes | str,
        *,
        root: str = "$.payload",
        present: Mapping[str, Any] | None = None,
    ) -> TypedPayload[Any]:
        """Validate JSON payload bytes against what the bus accepts for ``event_type``.

        Union types try their shapes in the reference's order (legacy first, except the
        ``CONTRACT_*`` types, which list the domain shape first); the first that matches wins.
        On failure the error of the v2 domain shape is raised for unions, the only shape's
        error otherwise.

        A union's non-domain shape that lacks one of its required keys cannot match, so it is
        not tried (same result, same error): ``present`` is the dict ``data`` was encoded from
        (its keys are the object's keys); without it ``data`` is searched for each ``"key"``,
        trusted only when ``data`` holds no backslash (then no key can be spelt with an escape).
        """
        plan = self._plans.get(event_type)
        if plan is None:
            plan = self._plan(event_type)
        failed: CheckedDecoder[Any] | None = None
        for kind, decoder, names, quoted, quoted_str in plan:
            if names and _lacks(data, present, names, quoted, quoted_str):
                continue
            value = decoder.attempt(data)
            if value is not None:
                return TypedPayload(kind, value)
            if failed is None or kind == "domain":
                failed = decoder
        assert failed is not None
        error = failed.error(data)
        raise translate_validation_error(error, event_type, root, decoder=failed, data=data) from None

    def decode_catalog_payload(self, event_type: str, data: bytes | str, *, root: str = "$.payload") -> Payload:
        """Validate JSON payload bytes against the catalog shape (what the workflow side checks)."""
        decoder = self.decoder(self.get(event_type).catalog_type)
        try:
            return decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise translate_validation_error(exc, event_type, root, decoder=decoder, data=data) from None

    def validate(self, event_type: str, payload: Mapping[str, Any] | Payload, *, root: str = "$.payload") -> bytes:
        """Validate a mapping or a Struct and return its compact JSON bytes for the wire.

        A mapping keeps its unknown keys on the wire, as the reference does; a Struct is
        checked against its own constraints (constructors do not check them).
        """
        try:
            data = _encode(payload)
        except (TypeError, ValueError) as exc:
            raise EventValidationError(event_type, root, f"payload is not JSON-serialisable: {exc}") from None
        if type(payload) is dict:  # the common case first: no ABC checks, no TypedPayload
            plan = self._plans.get(event_type)
            if plan is None:
                plan = self._plan(event_type)
            for _, decoder, names, _, _ in plan:
                if names and not payload.keys() >= names:
                    continue
                if decoder.attempt(data) is not None:
                    return data
            self.decode_payload(event_type, data, root=root, present=payload)  # raises the error to report
            raise AssertionError("unreachable: no shape matched")  # pragma: no cover
        if isinstance(payload, Payload):
            owner = self._by_cls.get(type(payload))
            if owner is not None and owner.event_type != event_type:
                raise EventValidationError(
                    event_type, root, f"a {type(payload).__name__} is a {owner.event_type} payload"
                )
        elif not isinstance(payload, Mapping):
            raise EventValidationError(event_type, root, f"expected an object, got {type(payload).__name__}")
        self.decode_payload(event_type, data, root=root)
        return data


_encode = msgspec.json.Encoder().encode

REGISTRY = Registry(SPECS)
