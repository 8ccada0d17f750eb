"""What the demo found, the checks it makes of it, and how it prints (text or JSON)."""

from __future__ import annotations

from collections import Counter

import msgspec

from ._scenario import Published
from ._triggers import Fired

__all__ = ["LIFECYCLE_TYPES", "DemoReport", "EmailRow", "NotificationRow", "PushRow", "Step", "render_text"]

#: The subscribers' own events the report counts.
LIFECYCLE_TYPES: tuple[str, ...] = (
    "OUTBOUND_EMAIL_QUEUED",
    "OUTBOUND_EMAIL_SENT",
    "OUTBOUND_EMAIL_FAILED",
    "NOTIFICATION_SENT",
    "NOTIFICATION_DELIVERED",
    "NOTIFICATION_FAILED",
)


class EmailRow(msgspec.Struct, frozen=True, kw_only=True):
    """One .eml file the email subscriber wrote."""

    to: str
    subject: str
    file: str


class NotificationRow(msgspec.Struct, frozen=True, kw_only=True):
    """One stored in-app notification."""

    user: str
    title: str
    status: str


class PushRow(msgspec.Struct, frozen=True, kw_only=True):
    """One push the demo's pub/sub subscriber received."""

    user: str
    title: str


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One check: its name, whether it held, and what was seen."""

    name: str
    ok: bool
    detail: str


class DemoReport(msgspec.Struct, kw_only=True):
    """Everything the demo saw; :meth:`check` turns it into steps."""

    backend: str
    prefix: str
    tenant: str
    emails_folder: str
    seconds: float = 0.0
    published: list[Published] = []
    emails: list[EmailRow] = []
    notifications: list[NotificationRow] = []
    pushes: list[PushRow] = []
    triggers: list[Fired] = []
    expected_triggers: dict[str, int] = {}
    converter: dict[str, int] = {}
    lifecycle: dict[str, int] = {}
    dead_letters: int = 0
    drained: bool = False
    pending: list[str] = []
    steps: list[Step] = []
    data: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when there was no error and every step held."""
        return self.error is None and bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def stream_entries(self) -> int:
        """Stream entries written by the burst (channel copies and workflow entries)."""
        return sum(len(p.channels) + p.workflow_entry for p in self.published)

    def check(self) -> list[Step]:
        """The steps: each names what it expected and what it saw."""
        life = self.lifecycle
        without_entry = sum(1 for p in self.published if not p.workflow_entry)
        fired = dict(Counter(f.trigger for f in self.triggers))
        steps = [
            Step(
                name="publish",
                ok=bool(self.published),
                detail=f"{len(self.published)} events, {self.stream_entries} stream entries",
            ),
            Step(
                name="processing",
                ok=self.drained,
                detail="every consumer group drained" if self.drained else "still pending: " + ", ".join(self.pending),
            ),
            Step(
                name="email",
                ok=bool(self.emails)
                and len(self.emails) == life.get("OUTBOUND_EMAIL_SENT", 0) == life.get("OUTBOUND_EMAIL_QUEUED", 0)
                and not life.get("OUTBOUND_EMAIL_FAILED", 0),
                detail=f"{len(self.emails)} .eml files; OUTBOUND_EMAIL_QUEUED {life.get('OUTBOUND_EMAIL_QUEUED', 0)}, "
                f"SENT {life.get('OUTBOUND_EMAIL_SENT', 0)}, FAILED {life.get('OUTBOUND_EMAIL_FAILED', 0)}",
            ),
            Step(
                name="notifications",
                ok=bool(self.notifications)
                and len(self.notifications) == life.get("NOTIFICATION_SENT", 0)
                and not life.get("NOTIFICATION_FAILED", 0),
                detail=f"{len(self.notifications)} stored; NOTIFICATION_SENT {life.get('NOTIFICATION_SENT', 0)}, "
                f"FAILED {life.get('NOTIFICATION_FAILED', 0)}",
            ),
            Step(
                name="push",
                ok=bool(self.pushes)
                and len(self.pushes) == life.get("NOTIFICATION_DELIVERED", 0) == len(self.notifications),
                detail=f"{len(self.pushes)} received on pub/sub; NOTIFICATION_DELIVERED "
                f"{life.get('NOTIFICATION_DELIVERED', 0)}",
            ),
            Step(
                name="workflow",
                ok=fired == self.expected_triggers,
                detail=f"fired {sum(fired.values())} (expected {sum(self.expected_triggers.values())})",
            ),
            Step(
                name="converter",
                ok=self.converter.get("written", 0) == without_entry,
                detail=f"wrote {self.converter.get('written', 0)} (expected {without_entry}), "
                f"{self.converter.get('skipped', 0)} already there",
            ),
            Step(name="dead letters", ok=self.dead_letters == 0, detail=f"{self.dead_letters}"),
        ]
        self.steps = steps
        return steps

    def to_json(self) -> bytes:
        """The report as indented JSON (with ``ok``)."""
        data = msgspec.to_builtins(self)
        data["ok"] = self.ok
        data["stream_entries"] = self.stream_entries
        data["counts"] = {
            "published": len(self.published),
            "emails": len(self.emails),
            "notifications": len(self.notifications),
            "pushes": len(self.pushes),
            "triggers": len(self.triggers),
            "converted": self.converter.get("written", 0),
            "dead_letters": self.dead_letters,
        }
        return msgspec.json.format(msgspec.json.encode(data), indent=2)


#: Stories in the order the scenario tells them.
STORY_ORDER = ["ticket", "project", "invoice", "appointment", "legacy producer"]
_CHANNEL_ORDER = ["global", "internal-notifications", "emailservice::v7"]


def _known(channels: tuple[str, ...]) -> bool:
    return all(c in _CHANNEL_ORDER for c in channels)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def _short(uuid: str | None) -> str:
    return (uuid or "-")[:8]


def render_text(r: DemoReport) -> str:
    """The human report: one numbered section per subscriber, then the verdict."""
    out = [f"psa-event-bus demo on {r.backend}: tenant {r.tenant}, prefix {r.prefix!r}", ""]
    out.append(f"1. published {len(r.published)} events ({r.stream_entries} stream entries) through the publishers")
    stories = list(dict.fromkeys(p.story for p in r.published))
    for story in STORY_ORDER + [s for s in stories if s not in STORY_ORDER]:
        for p in (p for p in r.published if p.story == story):
            where = " + ".join(sorted(p.channels, key=_CHANNEL_ORDER.index if _known(p.channels) else str))
            wf = " + workflow entry" if p.workflow_entry else " (no workflow entry: the converter adds it)"
            out.append(f"     {'[' + story + ']':<19} {p.event_type:<24} {where}{wf}")
    out.append("")
    out.append(f"2. email: {len(r.emails)} messages rendered to {r.emails_folder}/ (one .eml per recipient)")
    out += [f"     {e.to:<24} {e.subject}" for e in r.emails]
    out.append("")
    delivered = sum(1 for n in r.notifications if n.status == "delivered")
    out.append(f"3. in-app notifications: {len(r.notifications)} stored, {delivered} delivered live")
    out += [f"     {n.user:<24} {n.title}  ({n.status})" for n in r.notifications]
    out.append(f"   pub/sub: this demo's subscriber received {len(r.pushes)} pushes")
    out += [f"     -> {p.user:<21} {p.title}" for p in r.pushes[:3]]
    if len(r.pushes) > 3:
        out.append(f"     ... and {len(r.pushes) - 3} more")
    out.append("")
    out.append(f"4. workflow: {_plural(len(r.triggers), 'trigger')} fired (consumer of workflow:events:global)")
    out += [
        f"     {f.trigger:<30} {f.event_type:<24} correlation {_short(f.correlation_key)}  ({f.variant} payload)"
        for f in r.triggers
    ]
    written = _plural(r.converter.get("written", 0), "workflow entry", "workflow entries")
    out.append(
        f"   converter: wrote {written} for events published without one, "
        f"skipped {r.converter.get('skipped', 0)} written at publish time"
    )
    out.append("")
    out.append("5. lifecycle events the subscribers published:")
    out.append("     " + "  ".join(f"{t} {r.lifecycle.get(t, 0)}" for t in LIFECYCLE_TYPES[:3]))
    out.append("     " + "  ".join(f"{t} {r.lifecycle.get(t, 0)}" for t in LIFECYCLE_TYPES[3:]))
    out.append(f"   dead letters: {r.dead_letters}")
    out.append("")
    if r.data:
        out.append(r.data)
    for s in r.steps:
        out.append(f"   [{'ok' if s.ok else 'FAILED'}] {s.name:<13} {s.detail}")
    if r.error:
        out.append(f"FAILED: {r.error}")
    elif r.ok:
        out.append(f"ok: every step worked ({r.seconds:.1f}s)")
    else:
        failed = ", ".join(s.name for s in r.steps if not s.ok)
        out.append(f"FAILED step(s): {failed} ({r.seconds:.1f}s)")
    return "\n".join(out)
