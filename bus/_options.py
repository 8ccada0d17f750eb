"""``PublishOptions``: everything about one publish except the event type and payload, as ONE value.

The top-level functions (``publish_event``, ``publish_workflow_event``, ``bus.publish``...) keep
their keyword arguments; they build the options once and hand this value down to
``Preparer.prepare``, so a new option is one field here and one use where it matters.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = ["PublishOptions", "WorkflowHooks"]


class WorkflowHooks(msgspec.Struct, frozen=True, kw_only=True):
    """The reference's publish hooks: they shape the workflow stream entry and nothing else."""

    execution_id: str | None = None
    correlation_key: str | None = None
    event_name: str | None = None
    from_state: str | None = None
    to_state: str | None = None

    @property
    def is_set(self) -> bool:
        """True when a hook changes the workflow entry (empty values count as absent, as the entry writes them)."""
        return bool(self.execution_id or self.correlation_key or self.event_name or self.from_state or self.to_state)


class PublishOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How to publish one event (immutable; build it once, reuse it freely).

    - ``channels``: exactly these channels (one name or a tuple; duplicates written once), or
      ``None`` for the reference's fan-out (:mod:`bus.routing`: ``global`` plus the
      notification/email copies of the type).
    - ``event_id``: every copy carries it; by default each copy gets its own fresh id (the
      ``global`` copy's id is the result's and the workflow entry's).
    - ``timestamp``: the envelope time (ISO-8601 UTC ``Z``); default now.
    - ``force``: mark the copies ``force: "1"`` (consumers skip their processed-marker check).
    - ``workflow``: write the workflow entry too (default: when ``global`` is among the channels).
    - ``hooks``: the workflow entry's hook fields.
    - ``idempotency_key`` / ``tenant``: at most one write per ``(tenant, key)`` within the window
      (``tenant`` defaults to the payload's tenantId/tenant); ``dedupe=False`` skips that check.
    - ``strict``: raise on failure (default) or, best effort, log it and return a result whose
      ``error`` is set.
    - ``batch``: share the round trip with concurrent publishers (auto-batching, one loop tick).
    """

    #: Every field at its default: the reference's publish (fan-out, fresh ids, strict, auto-batched).
    DEFAULT: ClassVar[PublishOptions]

    channels: str | tuple[str, ...] | None = None
    event_id: str | None = None
    timestamp: str | None = None
    force: bool = False
    workflow: bool | None = None
    hooks: WorkflowHooks | None = None
    idempotency_key: str | None = None
    tenant: str | None = None
    dedupe: bool = True
    strict: bool = True
    batch: bool = True


PublishOptions.DEFAULT = PublishOptions()
