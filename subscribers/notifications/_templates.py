"""In-app notification templates: a YAML file of Jinja2 ``title`` / ``message`` / ``link`` per event type.

The packaged ``templates.yaml`` covers the reference's in-app set; pass ``path`` to use your own
file (same shape). Output is plain text, not HTML: clients must render it as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import msgspec
import yaml

from ..email._templates import format_money, format_value, normalize_changes

__all__ = ["NotificationTemplate", "NotificationTemplates", "RenderedNotification"]


class NotificationTemplate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The source strings of one event type's notification."""

    title: str
    message: str
    category: str = "general"
    link: str | None = None


class RenderedNotification(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered notification: title, message, link (or None) and category."""

    template_id: str
    title: str
    message: str
    category: str
    link: str | None = None


class NotificationTemplates:
    """Loads the YAML templates once and renders them (plain text, undefined values render empty)."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            text = resources.files("subscribers.notifications").joinpath("templates.yaml").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        try:
            self.templates = msgspec.convert(yaml.safe_load(text) or {}, dict[str, NotificationTemplate])
        except (msgspec.ValidationError, yaml.YAMLError) as exc:
            raise ValueError(f"notification templates {path or 'templates.yaml'}: {exc}") from None
        self.env = jinja2.Environment(autoescape=False, undefined=jinja2.ChainableUndefined)
        self.env.filters.update(value=format_value, money=format_money, changes=normalize_changes)
        self._compiled: dict[str, tuple[jinja2.Template, jinja2.Template, jinja2.Template | None]] = {}

    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types that have a template."""
        return tuple(self.templates)

    def has(self, event_type: str) -> bool:
        """True when ``event_type`` has a template."""
        return event_type in self.templates

    def render(self, event_type: str, context: Mapping[str, Any]) -> RenderedNotification:
        """Render the event type's notification with ``context``."""
        compiled = self._compiled.get(event_type)
        source = self.templates[event_type]
        if compiled is None:
            link = self.env.from_string(source.link) if source.link else None
            compiled = self._compiled[event_type] = (
                self.env.from_string(source.title),
                self.env.from_string(source.message),
                link,
            )
        title, message, link_tpl = compiled
        href = link_tpl.render(context).strip() if link_tpl is not None else ""
        return RenderedNotification(
            template_id=event_type.lower(),
            title=" ".join(title.render(context).split()),
            message=message.render(context).strip(),
            category=source.category,
            link=href or None,
        )
