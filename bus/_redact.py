"""The one place secrets are masked: log records, exception messages, dead-letter metadata, labels.

Three kinds of secret are recognised:

- **Known values**: every secret this process was told about is masked wherever it appears, as
  text or bytes, plain or percent-encoded. The bus registers its Redis password (and every
  password it rotates to); register others with :func:`register_secret` or, for a config
  Struct whose fields are marked with :data:`SECRET` (``Annotated[str, SECRET]``) or named like
  a secret, :func:`register_secrets`.
- **Shapes**: the password of a URL (``redis://user:pw@host``), scheme credentials
  (``Bearer <token>``, ``Basic <base64>``), and the value after a secret-named key in header
  lines, ``key=value`` pairs, JSON and Python reprs (``Authorization: ...``,
  ``X-Hub-Signature-256: sha256=...``, ``"password": "..."``, ``'api_key': '...'``).
- **Keys** of mappings: values under a key matching :data:`SENSITIVE_KEY_PATTERN` (the pattern
  the webhook builders use) become ``"***"``, at any depth.

The registry is process-wide on purpose: a secret one bus knows must not appear in a log line
that another component writes. Values shorter than :data:`MIN_SECRET_CHARS` are not registered
(masking every ``"ab"`` would make logs unreadable); they are still masked by shape and key.

Loggers of the bus's own modules get :class:`RedactingFilter` at import; add it to others with
:func:`install_log_redaction`.
"""

from __future__ import annotations

import logging
import pkgutil
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

import msgspec

__all__ = [
    "MIN_SECRET_CHARS",
    "REDACTED",
    "SECRET",
    "SENSITIVE_KEY_PATTERN",
    "RedactingFilter",
    "install_log_redaction",
    "is_secret_key",
    "known_secret_count",
    "redact",
    "redact_bytes",
    "redact_labels",
    "redact_mapping",
    "redact_text",
    "register_secret",
    "register_secrets",
    "secret_fields",
]

REDACTED: Final = "***"
_REDACTED_B: Final = b"***"
MIN_SECRET_CHARS: Final = 4
#: Longest label value kept by :func:`redact_labels` (labels are for grouping, not payloads).
MAX_LABEL_CHARS: Final = 120

#: Mark a Struct field as secret: ``password: Annotated[str, SECRET]``.
SECRET: Final = msgspec.Meta(extra={"secret": True})

#: Keys whose values never leave the process (same words as the webhook builders' pattern).
SENSITIVE_KEY_PATTERN: Final = re.compile(
    r"secret|token|passw(or)?d|api[_\-\s]?key|authori[sz]ation|signature|credential|private[_\-\s]?key|cookie",
    re.IGNORECASE,
)

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@\"']*:)(?P<pw>[^\s@/\"']*)(?P<at>@)")
_SCHEME_CREDENTIAL = re.compile(
    r"(?P<scheme>\b(?:[Bb]earer|BEARER))\s+(?P<cred>[A-Za-z0-9\-._~+/]+=*)"
    r"|(?P<scheme2>\b(?:[Bb]asic|BASIC))\s+(?P<cred2>(?=[A-Za-z0-9+/]*(?:[0-9+/=]|[a-z][A-Z]))[A-Za-z0-9+/]{6,}={0,2})"
)
# A secret-named key followed by ``:`` or ``=`` and a value: quoted (JSON, repr, bytes repr) or
# bare up to the end of the line or a delimiter. ``KEY: text`` with an ALL_CAPS key is left alone
# (that is how configuration errors name a variable); ``KEY=value`` is always masked.
_KEYED_VALUE = re.compile(
    r"(?P<q>[\"']?)(?<![\w\-])(?P<key>[\w\-]*?(?:" + SENSITIVE_KEY_PATTERN.pattern + r")[\w\-]*)(?P=q)"
    r"(?P<sep>\s*[:=]\s*)"
    r"(?P<val>b?\"(?:[^\"\\\n]|\\.)*\"|b?'(?:[^'\\\n]|\\.)*'|[^\s,;&'\"}\])][^\r\n,;&'\"}\])]*)",
    re.IGNORECASE,
)

#: Lower-case words that end a sentence before a colon more often than they name a field.
_PROSE_KEYS = frozenset({"credential", "credentials"})


class _Registry:
    """Known secret values (thread-safe; a compiled alternation rebuilt on change)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None

    def add(self, value: str) -> bool:
        forms = {value, quote(value, safe=""), quote(value, safe="@:/")}
        with self._lock:
            if forms <= self._values:
                return False
            self._values |= {f for f in forms if len(f) >= MIN_SECRET_CHARS}
            ordered = sorted(self._values, key=len, reverse=True)
            self._text = re.compile("|".join(re.escape(v) for v in ordered))
            self._bytes = re.compile(b"|".join(re.escape(v.encode()) for v in ordered))
        return True

    @property
    def count(self) -> int:
        return len(self._values)

    def text(self, value: str) -> str:
        pattern = self._text
        return value if pattern is None else pattern.sub(REDACTED, value)

    def bytes(self, value: bytes) -> bytes:
        pattern = self._bytes
        return value if pattern is None else pattern.sub(_REDACTED_B, value)


_REGISTRY = _Registry()


def register_secret(value: str | bytes | None) -> None:
    """Mask ``value`` wherever it appears from now on (no-op for None or very short values)."""
    if value is None:
        return
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if len(text) >= MIN_SECRET_CHARS:
        _REGISTRY.add(text)


def known_secret_count() -> int:
    """How many secret forms (value, percent-encoded forms) are registered."""
    return _REGISTRY.count


def is_secret_key(name: str) -> bool:
    """True for a key or field name that holds a secret (``Authorization``, ``api_key``, ...)."""
    return SENSITIVE_KEY_PATTERN.search(name) is not None


def secret_fields(struct_type: type[msgspec.Struct]) -> frozenset[str]:
    """Python names of a Struct type's secret fields: marked :data:`SECRET`, or named like one."""
    info = msgspec.inspect.type_info(struct_type)
    out: set[str] = set()
    if isinstance(info, msgspec.inspect.StructType):
        for field in info.fields:
            extra = getattr(field.type, "extra", None) or {}
            if extra.get("secret") or is_secret_key(field.name) or is_secret_key(field.encode_name):
                out.add(field.name)
    return frozenset(out)


def register_secrets(obj: Any, _depth: int = 0) -> None:
    """Register every secret value found in ``obj``: fields of a Struct marked :data:`SECRET`
    or named like a secret, values under secret-named keys of mappings, at any depth."""
    if _depth > 32 or obj is None:
        return
    if isinstance(obj, msgspec.Struct):
        marked = secret_fields(type(obj))
        for name in obj.__struct_fields__:
            value = getattr(obj, name)
            if name in marked and isinstance(value, str | bytes):
                register_secret(value)
            else:
                register_secrets(value, _depth + 1)
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            if is_secret_key(str(key)) and isinstance(value, str | bytes):
                register_secret(value)
            else:
                register_secrets(value, _depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for value in obj:
            register_secrets(value, _depth + 1)


def _mask_keyed(match: re.Match[str]) -> str:
    key = match["key"]
    if not is_secret_key(key):
        return match[0]
    sep, val = match["sep"], match["val"]
    if ":" in sep and val[:1] not in "\"'b" and (key.isupper() or key in _PROSE_KEYS):
        # ``REDIS_PASSWORD: must be a string`` names a variable; ``the credentials: check ...`` is prose.
        return match[0]
    if val[:1] in "\"'" or val[:2] in ('b"', "b'"):
        start = 2 if val[0] == "b" else 1
        masked = val[:start] + REDACTED + val[-1]
    else:
        masked = REDACTED
    return f"{match['q']}{key}{match['q']}{sep}{masked}"


def _mask_scheme(match: re.Match[str]) -> str:
    scheme = match["scheme"] or match["scheme2"]
    return f"{scheme} {REDACTED}"


def redact_text(text: str) -> str:
    """``text`` with known secrets, URL passwords, scheme credentials and keyed secrets masked."""
    if not text:
        return text
    out = _REGISTRY.text(text)
    if "://" in out:
        out = _URL_PASSWORD.sub(lambda m: m["head"] + (REDACTED if m["pw"] else "") + m["at"], out)
    out = _SCHEME_CREDENTIAL.sub(_mask_scheme, out)
    if ":" in out or "=" in out:
        out = _KEYED_VALUE.sub(_mask_keyed, out)
    return out


def redact_bytes(value: bytes) -> bytes:
    """``value`` with known secret values masked (bytes are data: no shape rules apply)."""
    return _REGISTRY.bytes(value) if value else value


def redact_mapping(mapping: Mapping[Any, Any], _depth: int = 0) -> dict[Any, Any]:
    """A copy of ``mapping`` with values under secret-named keys masked and texts redacted."""
    return {k: (REDACTED if is_secret_key(str(k)) else redact(v, _depth + 1)) for k, v in mapping.items()}


def redact(value: Any, _depth: int = 0) -> Any:
    """Redact any value: texts, bytes, mappings, sequences and Structs (secret fields masked)."""
    if _depth > 32:
        return "[TOO DEEP]"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_bytes(value)
    if isinstance(value, Mapping):
        return redact_mapping(value, _depth)
    if isinstance(value, msgspec.Struct):
        marked = secret_fields(type(value))
        return {
            name: REDACTED if name in marked else redact(getattr(value, name), _depth + 1)
            for name in value.__struct_fields__
        }
    if isinstance(value, list | tuple):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_labels(labels: Mapping[str, Any]) -> dict[str, str]:
    """Metric labels safe to export: secret-named labels dropped to ``***``, texts redacted, capped."""
    out: dict[str, str] = {}
    for name, value in labels.items():
        text = REDACTED if is_secret_key(name) else redact_text(str(value))
        out[name] = text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"
    return out


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (args merged) and its formatted traceback, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can, redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction(names: Iterable[str]) -> None:
    """Attach the redacting filter to the named loggers (idempotent).

    A logger's filters see the records logged on that logger only (not its children's), so
    every module logger is named.
    """
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _bus_logger_names() -> list[str]:
    package = __name__.rpartition(".")[0]
    try:
        path = sys.modules[package].__path__  # the package is importing us: it is already in sys.modules
    except (KeyError, AttributeError):  # pragma: no cover - imported outside the package
        return [package]
    return [package, *(f"{package}.{m.name}" for m in pkgutil.iter_modules(path))]


install_log_redaction(_bus_logger_names())
