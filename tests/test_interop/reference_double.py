"""An executable model of the TypeScript reference bus, written from shared/reference/wire-format.md.

It models the REFERENCE, not us: nothing here comes from our ``bus``/``publishers``/``subscribers``
packages (the channel sets below are copied from wire-format.md on purpose, so a drift in
``publishers`` shows up as a failing interop test instead of being mirrored). Payload validation
uses the shared catalog (``schemas.REGISTRY``) as the stand-in for the reference's schemas.
Everything goes through raw redis commands, one command per step, as the reference issues them.

- :class:`ReferencePublisher`: ``publishEvent`` (fan-out, a fresh id per copy unless the caller
  gives one, the explicit-``global``-twice quirk; the global copy writes the flat workflow entry
  FIRST and the per-type entry second, two separate XADDs, each ``MAXLEN ~ max_len``).
- :class:`ReferenceConsumer`: group ``event-processors``, consumer ``consumer-{pid}``, ``XREADGROUP
  COUNT 10 BLOCK`` over the subscribed streams under a hard timeout; per entry the
  ``processed_events:{tenantId}`` check (skipped when ``force`` = ``"1"``), handlers in order each
  skipped when ``{eventId}:{handlerKey}`` is in ``processed_event_handlers:{tenantId}``, each success
  SADD + EXPIRE 3 days, XACK when all succeeded, then SADD + EXPIRE of the event id; schema-invalid
  entries acked silently (quirk); idle entries claimed after ``claim_timeout_ms`` and dead-lettered
  when delivered more than ``max_deliveries`` times. Reads only the current marker sets.
- :class:`ReferenceWorkflowConsumer`: group ``workflow-runtime-v2`` on ``workflow:events:global``,
  dedupe on ``event_id``, DLQ after 3 failed deliveries with the reference's fields.

Assumptions where wire-format.md is silent (kept deliberately simple): an envelope without a
tenant (``payload.tenantId``, else ``payload.tenant``) is handled without markers; a forced entry
skips both marker checks but still writes the markers; the workflow consumer's dedupe lives in
the process (its storage is not part of the wire format and is never shared with us).
"""

from __future__ import annotations

import json
import logging
import os
import re
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import redis.asyncio as aioredis
import redis.exceptions as rex

from schemas import REGISTRY

__all__ = [
    "EMAIL_TYPES",
    "MARKER_TTL_S",
    "NOTIFICATION_TYPES",
    "WORKFLOW_STREAM",
    "ConsumerStats",
    "PublishedCopy",
    "ReferenceConsumer",
    "ReferenceEvent",
    "ReferencePublisher",
    "ReferenceWorkflowConsumer",
    "WorkflowEntry",
    "iso_now",
    "reference_url",
]

log = logging.getLogger("reference_double")

GLOBAL = "global"
NOTIFICATIONS = "internal-notifications"
EMAIL = "emailservice::v7"
WORKFLOW_STREAM = "workflow:events:global"
WORKFLOW_DLQ = "workflow:events:global:dlq"
GROUP = "event-processors"
WORKFLOW_GROUP = "workflow-runtime-v2"
#: 3 days, renewed by an EXPIRE after every SADD.
MARKER_TTL_S = 259200

#: wire-format.md, fan-out step 2 (21 types).
NOTIFICATION_TYPES = frozenset(
    {
        "TICKET_CREATED",
        "TICKET_ASSIGNED",
        "TICKET_ADDITIONAL_AGENT_ASSIGNED",
        "TICKET_UPDATED",
        "TICKET_CLOSED",
        "TICKET_COMMENT_ADDED",
        "PROJECT_CREATED",
        "PROJECT_ASSIGNED",
        "PROJECT_TASK_ASSIGNED",
        "PROJECT_TASK_ADDITIONAL_AGENT_ASSIGNED",
        "PROJECT_MILESTONE_READY",
        "PROJECT_BUDGET_THRESHOLD_REACHED",
        "PROJECT_BUDGET_EXCEEDED",
        "TASK_COMMENT_ADDED",
        "INVOICE_GENERATED",
        "MESSAGE_SENT",
        "USER_MENTIONED_IN_DOCUMENT",
        "APPOINTMENT_REQUEST_CREATED",
        "APPOINTMENT_REQUEST_APPROVED",
        "APPOINTMENT_REQUEST_DECLINED",
        "APPOINTMENT_REQUEST_CANCELLED",
    }
)
#: wire-format.md, fan-out step 3 (19 types).
EMAIL_TYPES = frozenset(
    {
        "TICKET_CREATED",
        "TICKET_UPDATED",
        "TICKET_CLOSED",
        "TICKET_ASSIGNED",
        "TICKET_ADDITIONAL_AGENT_ASSIGNED",
        "TICKET_COMMENT_ADDED",
        "PROJECT_CREATED",
        "PROJECT_UPDATED",
        "PROJECT_CLOSED",
        "PROJECT_ASSIGNED",
        "PROJECT_TASK_ASSIGNED",
        "PROJECT_TASK_ADDITIONAL_AGENT_ASSIGNED",
        "PROJECT_MILESTONE_READY",
        "PROJECT_BUDGET_THRESHOLD_REACHED",
        "PROJECT_BUDGET_EXCEEDED",
        "APPOINTMENT_REQUEST_CREATED",
        "APPOINTMENT_REQUEST_APPROVED",
        "APPOINTMENT_REQUEST_DECLINED",
        "APPOINTMENT_REQUEST_CANCELLED",
    }
)
#: The workflow consumer's correlation fields, first present wins (per-type overrides not modelled).
CORRELATION_FIELDS = ("ticketId", "clientId", "invoiceId", "projectId", "paymentId")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: ISO-8601 UTC with a ``Z`` (any fractional precision); ``+00:00`` is rejected.
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_OPTIONAL_WORKFLOW_FIELDS = ("execution_id", "workflow_correlation_key", "from_state", "to_state", "user_id")

#: ``validate(event_type, payload)`` raises when the payload does not match the type's schema.
Validator = Callable[[str, Mapping[str, Any]], object]


def reference_url(host: str, port: int) -> str:
    """The reference's connection URL: no database number, so everything lives in db 0."""
    return f"redis://{host}:{port}"


def iso_now() -> str:
    """``new Date().toISOString()``: milliseconds and a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _compact(value: Any) -> str:
    """``JSON.stringify``: no spaces, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _tenant_of(payload: Mapping[str, Any]) -> str:
    tenant = payload.get("tenantId") or payload.get("tenant") or ""
    return tenant if isinstance(tenant, str) else ""


def _check_envelope(envelope: Any, validate: Validator) -> None:
    """The reference's envelope schema: uuid id, known type, ``Z`` timestamp, a valid payload object."""
    if not isinstance(envelope, dict):
        raise ValueError("the event is not a JSON object")
    if not isinstance(envelope.get("id"), str) or not _UUID.match(envelope["id"]):
        raise ValueError(f"id is not a uuid: {envelope.get('id')!r}")
    if not isinstance(envelope.get("eventType"), str) or not envelope["eventType"]:
        raise ValueError("eventType is missing")
    if not isinstance(envelope.get("timestamp"), str) or not _TIMESTAMP.match(envelope["timestamp"]):
        raise ValueError(f"timestamp is not ISO-8601 UTC with Z: {envelope.get('timestamp')!r}")
    if not isinstance(envelope.get("payload"), dict):
        raise ValueError("payload is not an object")
    validate(envelope["eventType"], envelope["payload"])


class _Keys:
    """The reference's key layout (REDIS_PREFIX + REDIS_EVENT_STREAM_PREFIX)."""

    def __init__(self, prefix: str, stream_prefix: str) -> None:
        self.head = prefix + stream_prefix

    def stream(self, channel: str, event_type: str) -> str:
        return f"{self.head}{channel}:{event_type}"

    def parse(self, stream: str) -> tuple[str, str]:
        """``(channel, event_type)``: the channel may contain ``::``, the type is the last segment."""
        channel, _, event_type = stream[len(self.head) :].rpartition(":")
        return channel, event_type


# --- publisher -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedCopy:
    """One channel copy written by :meth:`ReferencePublisher.publish_event`."""

    channel: str
    stream: str
    event_id: str
    entry_id: str
    #: The workflow stream entry written before it (global copies only).
    workflow_entry_id: str | None = None


class ReferencePublisher:
    """``publishEvent`` of the reference: fan-out, one XADD per copy, workflow entry first on ``global``.

    ``max_len`` is REDIS_STREAM_MAX_LENGTH (every XADD trims with ``MAXLEN ~ max_len``, the
    workflow stream too). Tests that write more than that many entries per stream pass a larger
    value: trimming would silently drop entries a group has not read yet (a reference quirk), so
    exactly-once counts would fail for the wrong reason, and it would shorten the shared,
    unprefixed workflow stream under other tests.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "alga-psa:",
        stream_prefix: str = "event-stream:",
        max_len: int = 1000,
        workflow_stream: str = WORKFLOW_STREAM,
        validate: Validator = REGISTRY.validate,
    ) -> None:
        self.client = client
        self.keys = _Keys(prefix, stream_prefix)
        self.max_len = max_len
        self.workflow_stream = workflow_stream
        self.validate = validate

    @staticmethod
    def channels(event_type: str, channel: str | None = None) -> list[str]:
        """The fan-out: ``global`` always; an explicit channel adds itself (``global`` twice: quirk)."""
        if channel is not None:
            return [GLOBAL, channel]
        out = [GLOBAL]
        if event_type in NOTIFICATION_TYPES:
            out.append(NOTIFICATIONS)
        if event_type in EMAIL_TYPES:
            out.append(EMAIL)
        return out

    async def publish_event(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        channel: str | None = None,
        event_id: str | None = None,
        *,
        force: bool = False,
        hooks: Mapping[str, str] | None = None,
    ) -> list[PublishedCopy]:
        """Publish every copy of the fan-out, each with a fresh uuid4 unless ``event_id`` is given."""
        return [
            await self.publish(event_type, payload, ch, event_id=event_id, force=force, hooks=hooks)
            for ch in self.channels(event_type, channel)
        ]

    async def publish(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        channel: str,
        *,
        event_id: str | None = None,
        force: bool = False,
        hooks: Mapping[str, str] | None = None,
    ) -> PublishedCopy:
        """One copy: validate everything, then (on ``global``) XADD the workflow entry, then the per-type entry."""
        envelope: dict[str, Any] = {
            "id": event_id or str(uuid.uuid4()),
            "eventType": event_type,
            "timestamp": iso_now(),
            "payload": dict(payload),
        }
        _check_envelope(envelope, self.validate)
        workflow = self.workflow_fields(envelope, hooks or {}) if channel == GLOBAL else None
        fields = {"event": _compact(envelope), "channel": channel}
        if force:
            fields["force"] = "1"
        stream = self.keys.stream(channel, event_type)
        workflow_entry_id = None
        if workflow is not None:  # two separate commands, not a transaction (quirk)
            workflow_entry_id = _text(await self._xadd(self.workflow_stream, workflow))
        entry_id = _text(await self._xadd(stream, fields))
        return PublishedCopy(channel, stream, envelope["id"], entry_id, workflow_entry_id)

    async def _xadd(self, stream: str, fields: dict[str, str]) -> Any:
        return await self.client.xadd(stream, fields, maxlen=self.max_len, approximate=True)  # type: ignore[arg-type]

    @staticmethod
    def workflow_fields(envelope: Mapping[str, Any], hooks: Mapping[str, str]) -> dict[str, str]:
        """The flat workflow entry (wire order, absent as ``""``); raises when it is invalid."""
        payload: Mapping[str, Any] = envelope.get("payload") or {}
        user_id = payload.get("actorUserId") or payload.get("userId") or ""
        execution_id = hooks.get("executionId") or ""
        for name, value in (("user_id", user_id), ("execution_id", execution_id)):
            if value and not (isinstance(value, str) and _UUID.match(value)):
                raise ValueError(f"workflow entry: {name} is not a uuid: {value!r}")
        return {
            "event_id": envelope["id"],
            "execution_id": execution_id,
            "workflow_correlation_key": hooks.get("correlationKey") or "",
            "event_name": hooks.get("eventName") or str(payload.get("eventName") or envelope["eventType"]),
            "event_type": envelope["eventType"],
            "tenant": _tenant_of(payload),
            "timestamp": envelope["timestamp"],
            "user_id": user_id,
            "from_state": hooks.get("fromState") or "",
            "to_state": hooks.get("toState") or "",
            "payload_json": _compact(payload) if payload else "{}",
        }


# --- consumers -------------------------------------------------------------------------------


class _GroupLoop:
    """XREADGROUP COUNT n BLOCK ms over streams (hard timeout), and the periodic claim of idle entries."""

    def __init__(
        self,
        client: aioredis.Redis,
        group: str,
        consumer_name: str | None,
        *,
        count: int,
        block_ms: int,
        read_timeout_s: float,
        claim_timeout_ms: int,
        reclaim_interval_s: float,
    ) -> None:
        self.client = client
        self.group = group
        self.consumer_name = consumer_name or f"consumer-{os.getpid()}"
        self.count = count
        self.block_ms = block_ms
        self.read_timeout_s = read_timeout_s
        self.claim_timeout_ms = claim_timeout_ms
        self.reclaim_interval_s = reclaim_interval_s

    def streams(self) -> list[str]:
        raise NotImplementedError

    async def process(self, stream: str, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        """Handle one entry (ack it, or leave it pending)."""
        raise NotImplementedError

    async def on_claimed(self, stream: str, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        """An entry claimed after being idle; ``deliveries`` is its delivery count before the claim."""
        raise NotImplementedError

    async def ensure_groups(self) -> None:
        """XGROUP CREATE at ``0`` with MKSTREAM on every stream; BUSYGROUP ignored."""
        for stream in self.streams():
            try:
                await self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except rex.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Create the groups, report started, then read and claim until cancelled."""
        await self.ensure_groups()
        task_status.started()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._claim_forever)
            while True:
                await self.read_once()

    async def read_once(self) -> int:
        """One XREADGROUP round; returns how many entries it processed."""
        try:
            with anyio.fail_after(self.read_timeout_s):  # a dropped socket must not hang the read
                reply: Any = await self.client.xreadgroup(
                    self.group,
                    self.consumer_name,
                    {s: ">" for s in self.streams()},
                    count=self.count,
                    block=self.block_ms,
                )
        except TimeoutError:
            log.warning("XREADGROUP exceeded %.1fs; connection reset", self.read_timeout_s)
            return 0
        done = 0
        for stream, entries in reply or []:
            for entry_id, fields in entries:
                await self.process(_text(stream), _text(entry_id), dict(fields or {}), 1)
                done += 1
        await anyio.lowlevel.checkpoint()
        return done

    async def claim_once(self) -> int:
        """Claim every entry idle longer than the claim timeout (XPENDING, then XCLAIM) and pass it on."""
        claimed = 0
        for stream in self.streams():
            rows: Any = await self.client.xpending_range(
                stream, self.group, min="-", max="+", count=100, idle=self.claim_timeout_ms
            )
            for row in rows:
                entry_id = _text(row["message_id"])
                got: Any = await self.client.xclaim(
                    stream, self.group, self.consumer_name, self.claim_timeout_ms, [entry_id]
                )
                for _, fields in got:
                    if fields is not None:
                        await self.on_claimed(stream, entry_id, dict(fields), int(row["times_delivered"]))
                        claimed += 1
        return claimed

    async def _claim_forever(self) -> None:
        while True:
            await anyio.sleep(self.reclaim_interval_s)
            await self.claim_once()


@dataclass(frozen=True)
class ReferenceEvent:
    """What a handler of the double receives."""

    id: str
    event_type: str
    timestamp: str
    payload: dict[str, Any]
    tenant: str
    channel: str
    stream: str
    entry_id: str


#: ``async def handler(event) -> None``; raising leaves the entry pending.
ReferenceHandler = Callable[[ReferenceEvent], Awaitable[None]]


@dataclass
class ConsumerStats:
    """Counters of :class:`ReferenceConsumer` (outcomes count once the XACK returned)."""

    #: Entries whose handlers all succeeded, per ``(channel, event_type)``.
    handled: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: ``(channel, event_id)`` of every handled entry, in order: count exactly-once with it.
    handled_ids: list[tuple[str, str]] = field(default_factory=list)
    #: "Skipping already processed event": acked without running handlers.
    skipped_duplicates: int = 0
    #: Schema-invalid entries, acked silently (quirk).
    invalid: int = 0
    #: Deliveries where a handler raised (left pending).
    failed: int = 0
    dead_lettered: int = 0

    @property
    def total(self) -> int:
        """Entries handled on every channel."""
        return len(self.handled_ids)

    @property
    def outcomes(self) -> int:
        """Entries acked for any reason: handled, skipped as duplicates, invalid, dead-lettered."""
        return self.total + self.skipped_duplicates + self.invalid + self.dead_lettered


class ReferenceConsumer(_GroupLoop):
    """The reference's per-type stream consumer (see the module docstring for the semantics)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "alga-psa:",
        stream_prefix: str = "event-stream:",
        group: str = GROUP,
        consumer_name: str | None = None,
        count: int = 10,
        block_ms: int = 5000,
        read_timeout_s: float = 15.0,
        claim_timeout_ms: int = 30000,
        reclaim_interval_s: float = 5.0,
        max_deliveries: int = 10,
        validate: Validator = REGISTRY.validate,
    ) -> None:
        super().__init__(
            client,
            group,
            consumer_name,
            count=count,
            block_ms=block_ms,
            read_timeout_s=read_timeout_s,
            claim_timeout_ms=claim_timeout_ms,
            reclaim_interval_s=reclaim_interval_s,
        )
        self.keys = _Keys(prefix, stream_prefix)
        self.max_deliveries = max_deliveries
        self.validate = validate
        self.handlers: dict[str, list[tuple[str, ReferenceHandler]]] = {}
        self.stats = ConsumerStats()
        self._changed = anyio.Event()

    def subscribe(self, event_type: str, handler: ReferenceHandler, *, channel: str = GLOBAL, key: str) -> None:
        """Run ``handler`` (marker key ``key``) for ``event_type`` on ``channel``; handlers run in order."""
        self.handlers.setdefault(self.keys.stream(channel, event_type), []).append((key, handler))

    def streams(self) -> list[str]:
        return list(self.handlers)

    async def wait_until(self, predicate: Callable[[ConsumerStats], bool]) -> ConsumerStats:
        """Wait until the counters satisfy ``predicate`` (put it under ``anyio.fail_after``)."""
        while not predicate(self.stats):
            await self._changed.wait()
        return self.stats

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def process(self, stream: str, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        try:
            envelope = json.loads(fields.get(b"event", b""))
            _check_envelope(envelope, self.validate)
        except Exception as exc:  # the quirk: an invalid event is acked and lost
            log.info("invalid event %s on %s acked: %s", entry_id, stream, exc)
            await self.client.xack(stream, self.group, entry_id)
            self.stats.invalid += 1
            self._notify()
            return
        event_id: str = envelope["id"]
        channel, _ = self.keys.parse(stream)
        tenant = _tenant_of(envelope["payload"])
        check = bool(tenant) and fields.get(b"force") != b"1"
        events_key, handlers_key = f"processed_events:{tenant}", f"processed_event_handlers:{tenant}"
        if check and await self.client.sismember(events_key, event_id):
            log.info("Skipping already processed event %s", event_id)
            await self.client.xack(stream, self.group, entry_id)
            self.stats.skipped_duplicates += 1
            self._notify()
            return
        event = ReferenceEvent(
            event_id,
            envelope["eventType"],
            envelope["timestamp"],
            envelope["payload"],
            tenant,
            channel,
            stream,
            entry_id,
        )
        for key, handler in self.handlers.get(stream, ()):
            member = f"{event_id}:{key}"
            if check and await self.client.sismember(handlers_key, member):
                continue
            try:
                await handler(event)
            except Exception as exc:
                log.warning("handler %s failed on %s: %s; left pending", key, event_id, exc)
                self.stats.failed += 1
                self._notify()
                return
            if tenant:
                await self.client.sadd(handlers_key, member)
                await self.client.expire(handlers_key, MARKER_TTL_S)
        await self.client.xack(stream, self.group, entry_id)
        if tenant:
            await self.client.sadd(events_key, event_id)
            await self.client.expire(events_key, MARKER_TTL_S)
        self.stats.handled[(channel, event.event_type)] += 1
        self.stats.handled_ids.append((channel, event_id))
        self._notify()

    async def on_claimed(self, stream: str, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        if deliveries > self.max_deliveries:
            dead = {
                **{_text(k): _text(v) for k, v in fields.items()},
                "sourceStream": stream,
                "sourceMessageId": entry_id,
                "deliveries": str(deliveries),
                "deadLetteredAt": iso_now(),
            }
            await self.client.xadd(f"{stream}:dead-letter", dead)  # type: ignore[arg-type]
            await self.client.xack(stream, self.group, entry_id)
            self.stats.dead_lettered += 1
            self._notify()
        else:
            await self.process(stream, entry_id, fields, deliveries + 1)


@dataclass(frozen=True)
class WorkflowEntry:
    """A workflow stream entry as the reference's workflow consumer parses it (``""`` -> None)."""

    entry_id: str
    event_id: str
    event_type: str
    event_name: str
    tenant: str | None
    timestamp: str
    user_id: str | None
    execution_id: str | None
    correlation_key: str | None
    from_state: str | None
    to_state: str | None
    payload: dict[str, Any]


class ReferenceWorkflowConsumer(_GroupLoop):
    """The reference's workflow-stream consumer: dedupe on event_id, DLQ after ``max_deliveries`` failures.

    ``group`` defaults to ``workflow-runtime-v2``; tests on the shared Redis pass a group of
    their own (created at ``$``) so they see only entries added while they run.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        stream: str = WORKFLOW_STREAM,
        dlq: str = WORKFLOW_DLQ,
        group: str = WORKFLOW_GROUP,
        consumer_name: str | None = None,
        count: int = 10,
        block_ms: int = 5000,
        read_timeout_s: float = 15.0,
        claim_timeout_ms: int = 30000,
        reclaim_interval_s: float = 5.0,
        max_deliveries: int = 3,
        trigger: Callable[[WorkflowEntry], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            client,
            group,
            consumer_name,
            count=count,
            block_ms=block_ms,
            read_timeout_s=read_timeout_s,
            claim_timeout_ms=claim_timeout_ms,
            reclaim_interval_s=reclaim_interval_s,
        )
        self.stream = stream
        self.dlq = dlq
        self.max_deliveries = max_deliveries
        self.trigger = trigger
        #: Handled entries in order, and entries skipped because their event_id was seen.
        self.handled: list[WorkflowEntry] = []
        self.duplicates = 0
        self.failed = 0
        self.dead_lettered = 0
        self._seen: set[str] = set()
        self._changed = anyio.Event()

    def streams(self) -> list[str]:
        return [self.stream]

    async def wait_until(self, predicate: Callable[[ReferenceWorkflowConsumer], bool]) -> None:
        """Wait until ``predicate(self)`` holds (put it under ``anyio.fail_after``)."""
        while not predicate(self):
            await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    @staticmethod
    def parse(entry_id: str, fields: Mapping[bytes, bytes]) -> WorkflowEntry:
        """Flat fields to an entry: ``""`` back to absent for the optional ones, payload_json parsed."""
        f = {_text(k): _text(v) for k, v in fields.items()}
        for required in ("event_id", "event_type", "timestamp"):
            if not f.get(required):
                raise ValueError(f"workflow entry without {required}")
        opt = {name: f.get(name) or None for name in _OPTIONAL_WORKFLOW_FIELDS}
        payload = json.loads(f.get("payload_json") or "{}")
        if not isinstance(payload, dict):
            raise ValueError("payload_json is not an object")
        key = opt["workflow_correlation_key"]
        if key is None:
            key = next((str(payload[n]) for n in CORRELATION_FIELDS if payload.get(n)), None)
        return WorkflowEntry(
            entry_id=entry_id,
            event_id=f["event_id"],
            event_type=f["event_type"],
            event_name=f.get("event_name") or f["event_type"],
            tenant=f.get("tenant") or None,
            timestamp=f["timestamp"],
            user_id=opt["user_id"],
            execution_id=opt["execution_id"],
            correlation_key=key,
            from_state=opt["from_state"],
            to_state=opt["to_state"],
            payload=payload,
        )

    async def process(self, stream: str, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        try:
            entry = self.parse(entry_id, fields)
            duplicate = entry.event_id in self._seen
            if not duplicate and self.trigger is not None:
                await self.trigger(entry)
        except Exception as exc:
            self.failed += 1
            if deliveries >= self.max_deliveries:
                await self._dead_letter(stream, entry_id, fields, exc)
            self._notify()
            return
        await self.client.xack(stream, self.group, entry_id)
        if duplicate:
            self.duplicates += 1
        else:  # counted once acked, like the per-type consumer's outcomes
            self._seen.add(entry.event_id)
            self.handled.append(entry)
        self._notify()

    async def on_claimed(self, stream: str, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        await self.process(stream, entry_id, fields, deliveries + 1)

    async def _dead_letter(self, stream: str, entry_id: str, fields: Mapping[bytes, bytes], error: Exception) -> None:
        dead = {
            "original_message": _compact({_text(k): _text(v) for k, v in fields.items()}),
            "error_message": str(error) or type(error).__name__,
            "error_stack": "".join(traceback.format_exception(error)),
            "source_stream": stream,
            "original_id": entry_id,
            "moved_at": iso_now(),
        }
        await self.client.xadd(self.dlq, dead)  # type: ignore[arg-type]
        await self.client.xack(stream, self.group, entry_id)
        self.dead_lettered += 1

    def handled_of(self, tenants: Sequence[str]) -> list[WorkflowEntry]:
        """Handled entries of these tenants (the workflow stream is shared with other writers)."""
        wanted = set(tenants)
        return [e for e in self.handled if e.tenant in wanted]
