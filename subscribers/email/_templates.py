"""Rendering emails from Jinja2 templates: subject, plain text and HTML from one file per event type.

Each event type has ``templates/<event_type lowercased>.j2`` defining the blocks ``subject``,
``headline`` and ``intro``; it extends the ``layout`` variable, which is ``_layout.txt.j2`` for
the text part and ``_layout.html.j2`` for the HTML part. The same file is rendered by two
environments: the HTML one autoescapes everything (payload text can never inject markup), the
text one does not (no ``&amp;`` in plain mail). The layouts draw the details table, the
changes box and the quoted comment from the context.

Override any template by putting a file of the same name in a directory passed as
``search_path``; it is looked up before the packaged ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import msgspec
import orjson

__all__ = [
    "ChangeRow",
    "EmailTemplates",
    "RenderedEmail",
    "format_money",
    "format_value",
    "normalize_changes",
    "template_key",
]

_WS = re.compile(r"\s+")
_SPLIT = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[_.\-]+")


class RenderedEmail(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered message body: one-line subject, plain text and HTML."""

    subject: str
    text: str
    html: str


class ChangeRow(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the changes box; ``previous`` is None when the payload gave only a new value."""

    field: str
    label: str
    new: str
    previous: str | None = None


def template_key(event_type: str) -> str:
    """The template name of an event type: ``TICKET_CREATED`` -> ``ticket_created.j2``."""
    return f"{event_type.lower()}.j2"


def humanize(field: str) -> str:
    """``status_id`` / ``assignedTo`` / ``attributes.due`` -> ``Status`` / ``Assigned to`` / ``Attributes due``."""
    words = [w for w in _SPLIT.split(field) if w]
    if len(words) > 1 and words[-1].lower() == "id":
        words = words[:-1]
    text = " ".join(w.lower() for w in words) or field
    return text[:1].upper() + text[1:]


def format_value(value: Any) -> str:
    """A change value as text: ``—`` for null, lists joined, objects as compact JSON."""
    if value is None or value is msgspec.UNSET:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value) or "—"
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def format_money(value: Any) -> str:
    """An integer amount in minor units (cents), as the billing events carry it: ``123456`` -> ``1,234.56``."""
    if isinstance(value, bool) or not isinstance(value, int):
        return format_value(value)
    sign = "-" if value < 0 else ""
    units, cents = divmod(abs(value), 100)
    return f"{sign}{units:,}.{cents:02d}"


def normalize_changes(changes: Any, updated_fields: Sequence[str] | None = None) -> list[ChangeRow]:
    """Rows for the changes box from any of the shapes producers send.

    Accepts ``{field: {"previous": a, "new": b}}`` (domain), ``{field: {"from": a, "to": b}}``
    and ``{field: value}`` (legacy, new value only); with no ``changes``, ``updated_fields``
    alone gives rows without values.
    """
    rows: list[ChangeRow] = []
    if isinstance(changes, Mapping):
        for field, raw in changes.items():
            name = str(field)
            if isinstance(raw, Mapping) and ("previous" in raw or "new" in raw):
                rows.append(
                    ChangeRow(
                        field=name,
                        label=humanize(name),
                        previous=format_value(raw.get("previous")),
                        new=format_value(raw.get("new")),
                    )
                )
            elif isinstance(raw, Mapping) and ("from" in raw or "to" in raw):
                rows.append(
                    ChangeRow(
                        field=name,
                        label=humanize(name),
                        previous=format_value(raw.get("from")),
                        new=format_value(raw.get("to")),
                    )
                )
            else:
                rows.append(ChangeRow(field=name, label=humanize(name), new=format_value(raw)))
    elif updated_fields:
        rows = [ChangeRow(field=f, label=humanize(f), new="updated") for f in updated_fields if isinstance(f, str)]
    return rows


def _one_line(text: str) -> str:
    """Subjects are single header lines: no CR/LF (header injection), whitespace collapsed."""
    return _WS.sub(" ", text).strip()


class EmailTemplates:
    """Loads and renders the email templates; ``search_path`` directories override packaged files."""

    def __init__(self, search_path: Sequence[str | Path] = ()) -> None:
        loaders: list[jinja2.BaseLoader] = (
            [jinja2.FileSystemLoader([str(p) for p in search_path])] if search_path else []
        )
        loaders.append(jinja2.PackageLoader("subscribers.email", "templates"))
        loader = jinja2.ChoiceLoader(loaders)
        options: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.ChainableUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "keep_trailing_newline": False,
        }
        self.html_env = jinja2.Environment(autoescape=True, **options)
        self.text_env = jinja2.Environment(autoescape=False, **options)
        for env in (self.html_env, self.text_env):
            env.filters["value"] = format_value
            env.filters["changes"] = normalize_changes
            env.filters["money"] = format_money

    def has(self, event_type: str) -> bool:
        """True when a template exists for the event type."""
        try:
            self.text_env.get_template(template_key(event_type))
        except jinja2.TemplateNotFound:
            return False
        return True

    def render(self, event_type: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Render subject, text and HTML for ``event_type`` with ``context``."""
        name = template_key(event_type)
        text_tpl = self.text_env.get_template(name)
        subject_ctx = text_tpl.new_context({**context, "layout": "_layout.txt.j2"})
        subject = _one_line("".join(text_tpl.blocks["subject"](subject_ctx)))
        text = text_tpl.render({**context, "layout": "_layout.txt.j2", "subject": subject})
        html = self.html_env.get_template(name).render({**context, "layout": "_layout.html.j2", "subject": subject})
        return RenderedEmail(subject=subject, text=text.strip() + "\n", html=html)
