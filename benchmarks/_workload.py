"""The workload every throughput benchmark shares: one TICKET_UPDATED event, its wire forms, and
an isolated place on the shared Redis to write it.

- :data:`PAYLOAD`: the v2 domain shape with actor fields, ``updatedFields`` and three ``changes``
  (the same payload as ``bench_validate.py``), with a tenant id fresh per run so the processed
  markers (``processed_events:{tenantId}``) of a run are its own.
- :class:`Target`: a Redis database of its own (default db 11 of 127.0.0.1:6379) and a key prefix
  fresh per run. The workflow stream ``workflow:events:global`` is never prefixed by the wire
  format, so writing it in db 0 would trim the entries other programs (and tests) put there;
  the benchmarks therefore refuse to start when it already exists in their database, and
  delete every key they wrote when they end.
- FastStream's side: a pydantic v2 envelope model mirroring ours (built lazily: pydantic and
  FastStream are only in the ``bench`` extra).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis

from bus import WORKFLOW_STREAM, BusSettings, Keys
from bus._codec import encode_envelope, new_event_id, now_iso
from bus.wire import bulk, header
from schemas import WorkflowEvent

__all__ = [
    "EVENT_TYPE",
    "PAYLOAD",
    "TENANT",
    "Target",
    "envelope_bytes",
    "faststream_model",
    "payload_bytes",
    "prefill_command",
    "workflow_fields",
]

EVENT_TYPE = "TICKET_UPDATED"
TENANT = str(uuid.uuid4())  # fresh per run: the processed-marker sets of a run are its own
ACTOR = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
TICKET = "5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f"
CHANGES = {
    "status_id": {"previous": "open", "new": "in_progress"},
    "assigned_to": {"previous": None, "new": ACTOR},
    "priority_id": {"previous": "normal", "new": "high"},
}
PAYLOAD: dict[str, Any] = {
    "tenantId": TENANT,
    "occurredAt": "2026-01-23T10:11:12.345Z",
    "actorType": "USER",
    "actorUserId": ACTOR,
    "ticketId": TICKET,
    "updatedByUserId": ACTOR,
    "updatedFields": list(CHANGES),
    "changes": CHANGES,
}


def payload_bytes() -> bytes:
    """The payload's compact JSON (what the wire carries)."""
    return msgspec.json.encode(PAYLOAD)


def envelope_bytes(event_id: str | None = None, timestamp: str | None = None) -> bytes:
    """The per-type entry's ``event`` field: the envelope around the payload."""
    return encode_envelope(event_id or new_event_id(), EVENT_TYPE, timestamp or now_iso(), payload_bytes())


def workflow_fields(event_id: str | None = None, timestamp: str | None = None) -> dict[bytes, bytes]:
    """The workflow stream entry of a global publish, as field -> value bytes in wire order."""
    data = payload_bytes()
    wf = WorkflowEvent.from_bus_event(event_id or new_event_id(), EVENT_TYPE, timestamp or now_iso(), PAYLOAD, data)
    return {name.encode(): value for name, value in wf.to_fields().items()}


def prefill_command(stream: str, envelopes: list[bytes], channel: str) -> bytes:
    """RESP of one untrimmed XADD per envelope (fast setup of consume benchmarks)."""
    head = header(7) + bulk(b"XADD") + bulk(stream.encode()) + bulk(b"*") + bulk(b"event")
    tail = bulk(b"channel") + bulk(channel.encode())
    return b"".join(head + bulk(env) + tail for env in envelopes)


@dataclass
class Target:
    """Where a benchmark writes: its own database and key prefix, cleaned up by :meth:`cleanup`."""

    url: str = "redis://127.0.0.1:6379/11"
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}:")
    max_len: int = 1000

    def settings(self, **overrides: Any) -> BusSettings:
        """Bus settings for this target (reference defaults otherwise, MAXLEN ~ ``max_len``)."""
        values: dict[str, Any] = {"prefix": self.prefix, "max_len": self.max_len, **overrides}
        return BusSettings.from_url(self.url, **values)

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix, "event-stream:")

    def stream(self, channel: str) -> str:
        """The per-type stream of the benchmark's event type on ``channel``."""
        return self.keys.stream(channel, EVENT_TYPE)

    def client(self) -> aioredis.Redis:
        """A plain redis-py client on the target database."""
        return aioredis.Redis.from_url(self.url)

    async def check_free(self) -> None:
        """Refuse to run where someone else's workflow stream lives (we would trim it)."""
        client = self.client()
        try:
            if await client.exists(WORKFLOW_STREAM):
                raise SystemExit(
                    f"{WORKFLOW_STREAM} already exists in {self.url}: another program uses this database "
                    "(benchmarks trim that stream). Pick a free one with --url redis://host:port/N."
                )
        finally:
            await client.aclose()

    def marker_keys(self) -> list[str]:
        """The processed-marker sets of the run's tenant (under the run's prefix, as our consumers keep them)."""
        return [self.keys.marker_events(TENANT), self.keys.marker_handlers(TENANT)]

    async def cleanup(self) -> None:
        """Delete every key the run wrote: its prefix, the workflow stream, the tenant's markers."""
        client = self.client()
        try:
            keys = [key async for key in client.scan_iter(match=f"{self.prefix}*", count=1000)]
            keys += [WORKFLOW_STREAM, *self.marker_keys()]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
        finally:
            await client.aclose()


_MODEL: Any = None


def _rust_pattern(pattern: str) -> str:
    """Our Python pattern for pydantic-core's Rust regex engine (``\\Z`` is spelt ``\\z`` there)."""
    return pattern.replace("\\Z", "\\z")


def faststream_model() -> Any:
    """A pydantic v2 model of the whole envelope, mirroring our Structs: wire aliases, the
    uuid/datetime patterns, Literal enums, nested changes, unknown keys ignored.

    Built lazily: pydantic comes with the ``bench`` extra. FastStream serialises a model with
    ``model_dump_json()``, so the models write wire (camelCase) names.
    """
    global _MODEL
    if _MODEL is None:
        from typing import Annotated, Literal

        from pydantic import BaseModel, ConfigDict, Field

        from schemas import DATETIME_PATTERN, UUID_PATTERN

        uuid_t = Annotated[str, Field(pattern=_rust_pattern(UUID_PATTERN))]
        datetime_t = Annotated[str, Field(pattern=_rust_pattern(DATETIME_PATTERN))]

        class PModel(BaseModel):
            model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", serialize_by_alias=True)

        class PFieldChange(PModel):
            previous: Any = None
            new: Any = None

        class PTicketUpdated(PModel):
            tenant_id: Annotated[str, Field(min_length=1, alias="tenantId")]
            occurred_at: Annotated[datetime_t, Field(alias="occurredAt")]
            actor_user_id: Annotated[uuid_t | None, Field(alias="actorUserId")] = None
            actor_contact_id: Annotated[uuid_t | None, Field(alias="actorContactId")] = None
            actor_type: Annotated[Literal["USER", "CONTACT", "SYSTEM"] | None, Field(alias="actorType")] = None
            ticket_id: Annotated[uuid_t, Field(alias="ticketId")]
            updated_by_user_id: Annotated[uuid_t | None, Field(alias="updatedByUserId")] = None
            updated_fields: Annotated[list[str] | None, Field(alias="updatedFields")] = None
            changes: dict[str, PFieldChange] | None = None
            suppress_contact_notifications: Annotated[bool, Field(alias="suppressContactNotifications")] = False
            suppress_internal_notifications: Annotated[bool, Field(alias="suppressInternalNotifications")] = False

        class PBusEvent(PModel):
            id: uuid_t
            event_type: Annotated[str, Field(alias="eventType")]
            timestamp: datetime_t
            payload: PTicketUpdated

        _MODEL = PBusEvent
    return _MODEL
