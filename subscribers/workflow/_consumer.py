"""The workflow-stream consumer: ``workflow:events:global``, group ``workflow-runtime-v2``.

Per entry: parse the flat fields (``""`` -> absent, :meth:`schemas.WorkflowEvent.from_fields`),
skip event ids already dispatched (durable marker in Redis with a TTL), resolve the correlation
key, validate the payload against its schema ref (``payload.<PascalCase>.v1``; legacy shapes the
bus accepts are let through and flagged), and call the triggers registered for the event type
in order. Each trigger's success is recorded, so a redelivery only re-runs the triggers that
failed. An entry that fails on its 3rd delivery goes to ``workflow:events:global:dlq`` with the
reference's fields; an entry that can never succeed (unparseable, unknown type, invalid
payload) goes there at once.

It runs on the bus's consume engine (:class:`bus.consume.StreamSubscription` of flat entries,
one entry at a time, no in-process retries: a failure is retried by redelivery, and the
delivery count is what the reference counts).

Dedupe is per consumer group: two entries with one event id (a publish-time entry and a
converted one, or a producer's retry) trigger once. Two copies handled at the same instant by
two consumers may both run; triggers should stay idempotent on ``event.event_id``.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import anyio
import anyio.abc
import msgspec
from msgspec import Meta

from bus import WORKFLOW_DLQ, WORKFLOW_GROUP, WORKFLOW_STREAM, Consumer, EventBus, Reject
from bus.consume import Failure, LoopTiming, StreamEntry, StreamSubscription, WorkflowDeadLetters
from schemas import (
    REGISTRY,
    EventValidationError,
    Payload,
    Registry,
    SchemaError,
    WorkflowEvent,
    schema_ref_for,
)

from .._keys import SubscriberKeys
from ._correlation import CorrelationRules

__all__ = ["WorkflowConsumer", "WorkflowConsumerSettings", "WorkflowInvocation", "WorkflowTrigger"]

log = logging.getLogger("subscribers.workflow")

_DONE = "*"


class WorkflowInvocation(msgspec.Struct, frozen=True, kw_only=True):
    """What a trigger receives: the parsed entry, its payload, schema facts and correlation key."""

    event: WorkflowEvent
    payload: dict[str, Any]
    schema_ref: str
    #: ``"catalog"`` when the payload matches the catalog schema, else the bus shape that matched.
    variant: str
    typed: Payload
    correlation_key: str | None
    stream: str
    entry_id: str
    delivery_count: int


#: ``async def trigger(invocation) -> None``; raise to fail the delivery (it is retried).
WorkflowTrigger = Callable[[WorkflowInvocation], Awaitable[None]]


class WorkflowConsumerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Stream, group, DLQ and loop parameters (reference defaults; stream keys are configurable for tests)."""

    stream: str = WORKFLOW_STREAM
    dlq: str = WORKFLOW_DLQ
    group: str = WORKFLOW_GROUP
    consumer: str | None = None
    max_deliveries: Annotated[int, Meta(gt=0)] = 3
    #: Read, claim and reclaim timing; None: the bus's (``bus.settings.loop_timing``).
    timing: LoopTiming | None = None
    count: Annotated[int, Meta(gt=0)] = 10
    dedupe_ttl_s: Annotated[int, Meta(gt=0)] = 3 * 24 * 3600
    correlation: CorrelationRules = CorrelationRules()
    #: Where the group starts when it does not exist yet: ``0`` (retained entries) or ``$`` (new only).
    start_id: str = "0"


def dlq_fields(
    stream: str, entry_id: str, fields: Mapping[bytes, bytes], error: BaseException, moved_at: str
) -> dict[bytes, bytes]:
    """The reference's DLQ entry: the flat fields as JSON, the error and its stack, where it came from
    (redacted as :class:`bus.consume.WorkflowDeadLetters` writes it; ``moved_at`` as given)."""
    message = str(error) or type(error).__name__
    failure = Failure("rejected", message, message, "".join(traceback.format_exception(error)))
    _, out = WorkflowDeadLetters("").build(stream, entry_id, fields, 0, failure)
    out[b"moved_at"] = moved_at.encode()
    return out


class WorkflowConsumer:
    """Service object: register triggers, then ``await consumer.run(bus)``."""

    #: Service name (the runner derives consumer names from it).
    name = "workflow"

    def __init__(self, settings: WorkflowConsumerSettings | None = None, *, registry: Registry = REGISTRY) -> None:
        self.settings = settings or WorkflowConsumerSettings()
        self.registry = registry
        self.triggers: dict[str, list[tuple[str, WorkflowTrigger]]] = {}
        #: The consume loop of the current run (its ``stats``), once :meth:`run` started.
        self.loop: Consumer | None = None

    def register(self, event_type: str, trigger: WorkflowTrigger, *, name: str | None = None) -> None:
        """Call ``trigger`` for every ``event_type`` entry (``"*"``: every type). ``name`` keys its success marker."""
        if event_type != "*":
            self.registry.get(event_type)  # unknown names fail here, with suggestions
        key = name or f"{getattr(trigger, '__module__', 'trigger')}.{getattr(trigger, '__qualname__', repr(trigger))}"
        self.triggers.setdefault(event_type, []).append((key, trigger))

    def _triggers_for(self, event_type: str) -> list[tuple[str, WorkflowTrigger]]:
        return [*self.triggers.get(event_type, ()), *self.triggers.get("*", ())]

    def subscription(self, bus: EventBus) -> StreamSubscription:
        """What this consumer reads on ``bus``: the workflow stream, flat entries, the workflow DLQ."""
        s = self.settings
        keys = SubscriberKeys(bus.keys.prefix)

        async def handle(entry: StreamEntry) -> None:
            await self._handle(bus, keys, entry.stream, entry.entry_id, entry.fields, entry.delivery_count)

        # With BUS_KEY_HASHTAG the bus's workflow stream (and so its DLQ) carries the tag.
        stream = bus.keys.workflow_stream if s.stream == WORKFLOW_STREAM else s.stream
        dlq = f"{stream}:dlq" if s.dlq == WORKFLOW_DLQ and stream != WORKFLOW_STREAM else s.dlq
        return StreamSubscription(
            streams=(stream,),
            group=s.group,
            consumer=s.consumer or bus.consumer_name,
            start_id=s.start_id,
            batch_size=s.count,
            concurrency=1,  # triggers see the entries in stream order
            handler_retries=0,  # retried by redelivery: the delivery count is the reference's
            max_deliveries=s.max_deliveries,
            timing=s.timing or bus.settings.loop_timing,
            entry_handler=handle,
            entry_handler_key=f"workflow:{s.group}",
            dead_letters=WorkflowDeadLetters(dlq),
            dead_letter_stack=True,
        )

    def make_loop(self, bus: EventBus) -> Consumer:
        """The consume loop this consumer runs on ``bus``'s client."""
        return bus.consume_loop(self.subscription(bus))

    def invocation(
        self, stream: str, entry_id: str, fields: Mapping[Any, Any], deliveries: int = 1
    ) -> WorkflowInvocation:
        """Parse and validate one entry; raises :class:`bus.Reject` when it can never succeed."""
        try:
            event = WorkflowEvent.from_fields(fields)
            payload = event.payload()
        except (EventValidationError, msgspec.DecodeError) as exc:
            raise Reject(f"unparseable workflow entry: {exc}") from exc
        try:
            spec = self.registry.get(event.event_type)
        except SchemaError as exc:
            raise Reject(str(exc)) from exc
        variant = "catalog"
        try:
            typed: Payload = self.registry.decode_catalog_payload(event.event_type, event.payload_json)
        except EventValidationError as catalog_error:
            try:
                matched = self.registry.decode_payload(event.event_type, event.payload_json)
            except EventValidationError:
                raise Reject(f"payload does not match {spec.schema_ref}: {catalog_error}") from catalog_error
            typed, variant = matched.value, matched.variant
        key = self.settings.correlation.resolve(event.event_type, payload, event.workflow_correlation_key)
        return WorkflowInvocation(
            event=event,
            payload=payload,
            schema_ref=schema_ref_for(event.event_type),
            variant=variant,
            typed=typed,
            correlation_key=key,
            stream=stream,
            entry_id=entry_id,
            delivery_count=deliveries,
        )

    async def _handle(
        self,
        bus: EventBus,
        keys: SubscriberKeys,
        stream: str,
        entry_id: str,
        fields: Mapping[bytes, bytes],
        deliveries: int,
    ) -> None:
        inv = self.invocation(stream, entry_id, fields, deliveries)
        marker = keys.workflow_processed(self.settings.group, inv.event.event_id)
        client = bus.client
        done = {m.decode() if isinstance(m, bytes) else str(m) for m in await client.smembers(marker)}
        if _DONE in done:
            log.info("workflow event %s already dispatched; entry %s skipped", inv.event.event_id, entry_id)
            return
        for name, trigger in self._triggers_for(inv.event.event_type):
            if name in done:
                continue
            await trigger(inv)
            async with client.pipeline(transaction=True) as pipe:
                pipe.sadd(marker, name)
                pipe.expire(marker, self.settings.dedupe_ttl_s)
                await pipe.execute()
        async with client.pipeline(transaction=True) as pipe:
            pipe.sadd(marker, _DONE)
            pipe.expire(marker, self.settings.dedupe_ttl_s)
            await pipe.execute()

    async def run(self, bus: EventBus, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Create the group, report started, and consume until cancelled."""
        self.loop = self.make_loop(bus)
        await self.loop.run(task_status=task_status)
