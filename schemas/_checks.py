"""Exact uuid and datetime checks of a decoded Struct: all of its such strings in one pass.

msgspec checks ``Meta(pattern=...)`` with one Python ``re`` call per field, which was most of a
payload's decode cost. :data:`~schemas._types.Uuid` and :data:`~schemas._types.IsoDateTime` are
therefore plain strings to msgspec, and a :class:`CheckedDecoder` checks them after the decode,
in a function generated per Struct. It collects the present uuid strings and the datetime
strings (nested objects, lists and maps included), then:

- with the C module (``schemas/_speedups.c``, built by the install when a C compiler is there):
  one ``ids_ok(uuids, datetimes)`` call, which tests exactly the two patterns;
- without it: joins them all with ``,``, encodes them, translates every hex digit to ``x`` with one
  ``bytes.translate`` and compares the result with the template of that many uuids and datetimes
  of those lengths: ``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` per uuid, ``xxxx-xx-xxTxx:xx:xxZ``
  or ``xxxx-xx-xxTxx:xx:xx.x+Z`` (1 to 6 fraction digits) per datetime. The template has a ``,``
  exactly at each separator, so no value can hide a comma and shift its neighbours;
- :meth:`datetime.fromisoformat` then parses each datetime: it refuses a hex letter in any digit
  position of such a string and checks the ranges (month 01-12, day 01-31, hour 00-23, minute and
  second 00-59).

A passing check implies that the reference's pattern matches every value (the C check: if and
only if). The converse is not needed: when the check fails (or msgspec rejects the input), the
same input is decoded with the strict twin of the Struct, whose fields carry the patterns as
msgspec constraints. The twin is the authority: it raises the error that is reported (the first
failing field in document order, with its path, as before), and when it accepts (without the C
module: a 30 February, which ``fromisoformat`` refuses and the pattern allows; more than 6
fraction digits) the value stands.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, get_args, get_origin

import msgspec

from ._native import ids_ok
from ._types import DATETIME_META, UUID_META, StrictIsoDateTime, StrictUuid

__all__ = ["CheckedDecoder", "checked"]

T = TypeVar("T")

_UUID = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
#: Every hex digit -> ``x``; ``x`` itself -> NUL (so it cannot pass for a digit); others unchanged.
_TABLE = bytes(ord("x") if chr(c) in "0123456789abcdefABCDEF" else 0 if c == ord("x") else c for c in range(256))
#: A datetime of each length ``fromisoformat`` checks digit by digit, translated.
_DATETIMES = {20: b"xxxx-xx-xxTxx:xx:xxZ"} | {
    n: b"xxxx-xx-xxTxx:xx:xx." + b"x" * (n - 21) + b"Z" for n in range(22, 28)
}
#: ``(number of uuids, length of each datetime)`` -> the translated template (None: ask the twin).
_TEMPLATES: dict[tuple[int, ...], bytes | None] = {}


#: ``n << 6 | length``: one datetime of that length, then ``n`` uuids (the layout of most payloads:
#: ``occurredAt`` and some ids). A length of 64 or more makes a key that decodes to another layout
#: whose template has another total length, so it can never compare equal.
_SINGLE: dict[int, bytes | None] = {}


def _single(key: int) -> bytes | None:
    head = _DATETIMES.get(key & 63)
    template = None if head is None else b",".join([head] + [_UUID] * (key >> 6))
    if len(_SINGLE) < 4096:
        _SINGLE[key] = template
    return template


def _template(key: tuple[int, ...]) -> bytes | None:
    datetimes = [_DATETIMES.get(n) for n in key[1:]]
    template = None if None in datetimes else b",".join([_UUID] * key[0] + typing.cast("list[bytes]", datetimes))
    if len(_TEMPLATES) < 4096:
        _TEMPLATES[key] = template
    return template


# -- the collector of one Struct, generated ------------------------------------------------------


class _Unsupported(Exception):
    """A uuid/datetime inside a type the generator does not walk: the Struct is decoded strictly."""


def _marker(tp: Any) -> str | None:
    """``"u"`` for a Uuid, ``"d"`` for an IsoDateTime, else None."""
    if get_origin(tp) is Annotated:
        for meta in get_args(tp)[1:]:
            if meta is UUID_META:
                return "u"
            if meta is DATETIME_META:
                return "d"
    return None


def _strip(tp: Any) -> Any:
    """The type without an ``Annotated`` wrapper that is not a marker."""
    while get_origin(tp) is Annotated and _marker(tp) is None:
        tp = get_args(tp)[0]
    return tp


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


class _Generator:
    """Writes one ``_c<N>(v, u, d)`` function per Struct that holds a uuid or datetime somewhere."""

    def __init__(self) -> None:
        self.names: dict[type, str | None] = {}
        self.sources: list[str] = []
        self.env: dict[str, Any] = {"str": str, "list": list, "dict": dict}
        self._tmp = 0

    def struct(self, cls: type) -> str | None:
        """The collector's name, or None when nothing in ``cls`` needs a check."""
        if cls in self.names:
            name = self.names[cls]
            if name == "":
                raise _Unsupported(f"{cls.__name__} refers to itself")
            return name
        self.names[cls] = ""  # in progress
        body = self.body(cls)
        if not body:
            self.names[cls] = None
            return None
        name = f"_c{len(self.sources)}"
        self.sources.append(f"def {name}(v, u, d):\n" + "\n".join(body) + "\n")
        self.names[cls] = name
        return name

    def body(self, cls: type) -> list[str]:
        """The statements that collect the uuids and datetimes of ``v``, an instance of ``cls``."""
        body: list[str] = []
        for f in msgspec.structs.fields(cls):
            body += self.value(f.type, f"v.{f.name}", "    ")
        return body

    def _var(self) -> str:
        self._tmp += 1
        return f"x{self._tmp}"

    def value(self, tp: Any, expr: str, ind: str) -> list[str]:
        """Statements that add the uuids/datetimes of ``expr`` (typed ``tp``, already decoded) to u/d."""
        kind = _marker(tp)
        if kind is not None:
            return [f"{ind}{kind}.append({expr})"]
        tp = _strip(tp)
        origin = get_origin(tp)
        if origin is typing.Union or origin is types.UnionType:
            return self._union(get_args(tp), expr, ind)
        if _is_struct(tp):
            name = self.struct(tp)
            return [] if name is None else [f"{ind}{name}({expr}, u, d)"]
        if origin in (list, set, frozenset) or (origin is tuple and get_args(tp)[1:] == (Ellipsis,)):
            return self._items(get_args(tp)[0], expr, ind)
        if origin is dict:
            key, item = get_args(tp)
            if self.value(key, "k", ind):
                raise _Unsupported("uuid or datetime map keys")
            return self._items(item, f"{expr}.values()", ind)
        if origin is tuple and any(self.value(a, "t", ind) for a in get_args(tp)):
            raise _Unsupported("a uuid or datetime in a fixed-length tuple")
        return []

    def _items(self, item: Any, expr: str, ind: str) -> list[str]:
        kind = _marker(item)
        if kind is not None:
            return [f"{ind}{kind}.extend({expr})"]
        var = self._var()
        inner = self.value(item, var, ind + "    ")
        return [f"{ind}for {var} in {expr}:", *inner] if inner else []

    def _union(self, members: tuple[Any, ...], expr: str, ind: str) -> list[str]:
        var = self._var()
        branches: list[str] = []
        for i, member in enumerate(members):
            kind = _marker(member)
            bare = _strip(member)
            if kind is not None:
                cls: type = str
            elif _is_struct(bare):
                cls = bare
            elif get_origin(bare) in (list, dict):
                cls = get_origin(bare)
            else:
                continue  # None, UNSET, literals, numbers: nothing to check
            inner = self.value(member, var, ind + "    ")
            if not inner:
                continue
            self.env[f"{var}_{i}"] = cls
            keyword = "if" if not branches else "elif"
            branches += [f"{ind}{keyword} type({var}) is {var}_{i}:", *inner]
        if not branches:
            return []
        return [f"{ind}{var} = {expr}", *branches]


#: The verdict on ``u`` (uuids) and ``d`` (datetimes), and its shortcut for one required datetime,
#: which ``u`` then starts with (``n`` is how many values ``u`` holds).
_VERDICT = """\
    key = (len(u),) if not d else (len(u), len(d[0])) if len(d) == 1 else (len(u), *map(len, d))
    template = templates.get(key, False)
    if template is False:
        template = make_template(key)
    if d:
        u += d
    try:
        if template is not None and ",".join(u).encode().translate(table) == template:
            for x in d:
                fromisoformat(x)
            return {ok}
    except ValueError:  # fromisoformat refused a value, or a lone surrogate did not encode
        pass
    return {fallback}
"""
_VERDICT_ONE = """\
    key = (len(u) - 1) << 6 | len(u[0])
    template = single.get(key, False)
    if template is False:
        template = make_single(key)
    try:
        if template is not None and ",".join(u).encode().translate(table) == template:
            fromisoformat(u[0])
            return {ok}
    except ValueError:  # fromisoformat refused the value, or a lone surrogate did not encode
        pass
    return {fallback}
"""

#: With the C check (schemas/_speedups.c): exactly the two patterns, so the twin only reports errors.
_VERDICT_C = """\
    if ids_ok(u, d):
        return {ok}
    return {fallback}
"""


def _functions(cls: type, decode: Any, fallback: Any, error: Any) -> tuple[Any, Any, Any] | None:
    """``(attempt(data), decode(data), check(value))`` of a Struct; None when it holds no uuid or datetime.

    ``attempt`` returns None for invalid data, ``decode`` raises ``error(data)``. The top level's
    statements are inlined; a Struct whose only datetime is one required top-level field puts it
    first in the list (most payloads: ``occurredAt``).
    """
    gen = _Generator()
    gen.names[cls] = ""  # a reference back to the top level is not walked
    body = gen.body(cls)
    if not body:
        return None
    # Unconditional top-level uuids go straight into the list (their order in it does not matter).
    hoisted = [line[len("    u.append(") : -1] for line in body if line.startswith("    u.append(v.")]
    body = [line for line in body if not line.startswith("    u.append(v.")]
    lines = "\n".join([*gen.sources, *body])
    single = [line for line in body if line.startswith("    d.append(v.")]
    if len(single) == 1 and "d.append(" not in lines.replace(single[0], "") and "d.extend(" not in lines:
        body.remove(single[0])
        expr = single[0][len("    d.append(") : -1]
        if ids_ok is not None:
            verdict, collect = _VERDICT_C, f"    u = [{', '.join(hoisted)}]\n    d = {expr}\n"
        else:
            hoisted.insert(0, expr)
            verdict, collect = _VERDICT_ONE, f"    u = [{', '.join(hoisted)}]\n"
    else:
        verdict = _VERDICT if ids_ok is None else _VERDICT_C
        collect = f"    u = [{', '.join(hoisted)}]\n    d = []\n"
    collect += "".join(line + "\n" for line in body)
    head = "    try:\n        v = decode(data)\n    except errors:\n        {}\n"
    source = "\n".join(gen.sources) + (
        "\ndef attempt(data):\n"
        + head.format("return None")
        + collect
        + verdict.format(ok="v", fallback="fallback(data, v)")
        + "\ndef decode_(data):\n"
        + head.format("raise error(data) from None")
        + collect
        + verdict.format(ok="v", fallback="raise_invalid(data, v)")
        + "\ndef raise_invalid(data, v):\n"
        + "    if fallback(data, v) is None:\n"
        + "        raise error(data) from None\n"
        + "    return v\n"
        + "\ndef check(v):\n"
        + collect
        + verdict.format(ok="True", fallback="False")
    )
    env = {
        **gen.env,
        "decode": decode,
        "fallback": fallback,
        "error": error,
        "errors": (msgspec.ValidationError, msgspec.DecodeError),
        "templates": _TEMPLATES,
        "make_template": _template,
        "single": _SINGLE,
        "make_single": _single,
        "table": _TABLE,
        "fromisoformat": datetime.fromisoformat,
        "ids_ok": ids_ok,
    }
    exec(compile(source, f"<checks of {cls.__qualname__}>", "exec"), env)
    env["attempt"].source = source  # for a reader in a debugger
    return env["attempt"], env["decode_"], env["check"]


# -- the strict twin ---------------------------------------------------------------------------------


def _strict(tp: Any, memo: dict[type, type]) -> Any:
    """``tp`` with every Uuid/IsoDateTime replaced by its pattern-constrained form."""
    kind = _marker(tp)
    if kind is not None:
        return StrictUuid if kind == "u" else StrictIsoDateTime
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *metas = get_args(tp)
        return Annotated[(_strict(inner, memo), *metas)]
    if origin is typing.Union or origin is types.UnionType:
        return typing.Union[tuple(_strict(m, memo) for m in get_args(tp))]  # noqa: UP007
    if origin in (list, set, frozenset, tuple, dict):
        return origin[tuple(_strict(a, memo) if a is not Ellipsis else a for a in get_args(tp))]
    if _is_struct(tp):
        return _strict_struct(tp, memo)
    return tp


def _strict_struct(cls: type, memo: dict[type, type]) -> type:
    twin = memo.get(cls)
    if twin is not None:
        return twin
    fields: list[tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(cls):
        if f.default is not msgspec.NODEFAULT:
            spec = msgspec.field(default=f.default, name=f.encode_name)
        elif f.default_factory is not msgspec.NODEFAULT:
            spec = msgspec.field(default_factory=f.default_factory, name=f.encode_name)
        else:
            spec = msgspec.field(name=f.encode_name)
        fields.append((f.name, _strict(f.type, memo), spec))
    config = cls.__struct_config__  # type: ignore[attr-defined]
    twin = memo[cls] = msgspec.defstruct(
        cls.__name__,
        fields,
        kw_only=True,
        frozen=config.frozen,
        forbid_unknown_fields=config.forbid_unknown_fields,
        tag=config.tag,
        tag_field=config.tag_field,
        array_like=config.array_like,
        gc=False,
    )
    return twin


class CheckedDecoder(Generic[T]):
    """A JSON decoder of one Struct that also checks its uuid and datetime strings.

    :meth:`decode` returns the value or raises msgspec's error (``ValidationError`` with the
    path, ``DecodeError``), exactly as a decoder of the Struct with pattern constraints would.
    """

    __slots__ = ("_check", "_strict", "_twin", "attempt", "decode", "type")

    def __init__(self, cls: type[T]) -> None:
        self.type = cls
        self._twin = _strict(cls, {})  # the Struct with the patterns as msgspec constraints
        self._strict: msgspec.json.Decoder[Any] | None = None
        decode = msgspec.json.Decoder(cls).decode
        try:
            functions = _functions(cls, decode, self._fallback, self.error)
        except _Unsupported:  # decode with the patterns as msgspec constraints, as before
            decode = self._strict_decoder().decode
            functions = None
        if functions is None:
            self.attempt = self._plain(decode)
            self.decode = decode
            self._check: Any = None
        else:
            self.attempt, self.decode, self._check = functions

    @staticmethod
    def _plain(decode: Any) -> Any:
        errors = (msgspec.ValidationError, msgspec.DecodeError)

        def attempt(data: bytes | str) -> Any:
            try:
                return decode(data)
            except errors:
                return None

        return attempt

    def _strict_decoder(self) -> msgspec.json.Decoder[Any]:
        if self._strict is None:
            self._strict = msgspec.json.Decoder(self._twin)
        return self._strict

    def _fallback(self, data: bytes | str, value: T) -> T | None:
        """The strict twin's verdict on ``data`` (``value`` when it accepts, else None)."""
        try:
            self._strict_decoder().decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        return value

    attempt: Callable[[bytes | str], T | None]
    """``attempt(data)``: the decoded value, or None when ``data`` is invalid (:meth:`error` says why)."""
    decode: Callable[[bytes | str], T]
    """``decode(data)``: the decoded value; raises msgspec's error naming the first failing field."""

    def error(self, data: bytes | str) -> msgspec.ValidationError | msgspec.DecodeError:
        """The error an invalid ``data`` is reported with (the strict twin's)."""
        try:
            self._strict_decoder().decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return exc
        raise ValueError("the data is valid")

    def convert(self, obj: Any) -> T:
        """``msgspec.convert`` of builtins into the Struct, with the same checks."""
        value: T = msgspec.convert(obj, self.type)  # its errors are the strict twin's too
        if self._check is None or self._check(value):
            return value
        msgspec.convert(obj, self._twin)  # raises the error to report
        return value


_CACHE: dict[type, CheckedDecoder[Any]] = {}


def checked(cls: type[T]) -> CheckedDecoder[T]:
    """The cached :class:`CheckedDecoder` of a Struct."""
    dec = _CACHE.get(cls)
    if dec is None:
        dec = _CACHE[cls] = CheckedDecoder(cls)
    return dec
