"""Dispatch: decode each batch (an entry becomes a delivery, or a dead letter with its reason),
drop entries already processed or in flight, and hand the rest to the workers.

- Every batch is decoded once (one reusable decoder per Struct); poison input is dead-lettered
  with the reason; processed markers of the whole batch are looked up in one round trip.
- The one pass over a batch also takes each event's place in flight (a copy of an event another
  entry handles here right now is acked as a duplicate) and collects the marker members to look
  up, while the entry is at hand: a batch is larger than the CPU's cache, so each extra pass
  over its entries reads them from memory again.
- Batch n+1 is decoded while the marker lookup of batch n is in flight (the dispatcher decodes,
  its hand-off task looks up and sends), and the reader's next XREADGROUP overlaps both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import msgspec

from schemas import SchemaError
from schemas._envelope import split_bus_event

from .._tenant import checked_tenant_ids, tenant_id_problem
from ..wire import event_of, fields_dict
from . import _jsoncheck
from ._delivery import Delivery, Subscription
from ._entry import DEAD, DROPPED, DUPLICATE, Entry, Failure
from ._jsoncheck import plain_event
from ._subscription import StreamEntry

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from schemas import Registry

    from .._settings import BusSettings
    from ._acker import AckBuffer
    from ._entry import InFlight
    from ._markers import Markers
    from ._queue import EntryQueue
    from ._retry import TransportRetry
    from ._subscription import StreamSubscription

__all__ = ["Decoded", "Dispatcher", "send_batch"]

T = TypeVar("T")


async def send_batch(
    batches: MemoryObjectSendStream[T], batch: T, in_flight: InFlight, entries: list[Entry] | None = None
) -> None:
    """Hand a batch on (``entries``: its entries, when the batch is not their list); one never handed
    on (cancelled) stays pending in Redis."""
    held = cast("list[Entry]", batch) if entries is None else entries
    if not held:
        return
    try:
        await batches.send(batch)
    except BaseException:
        in_flight.release_all(held)
        raise


class Decoded:
    """A decoded batch on its way to the marker lookup: the entries that hold their event here, and
    (typed events) their event and handler marker members by tenant (forced copies have none)."""

    __slots__ = ("entries", "events", "handlers")

    def __init__(self, entries: list[Entry], events: dict[str, list[bytes]], handlers: dict[str, list[bytes]]) -> None:
        self.entries = entries
        self.events = events
        self.handlers = handlers


class Dispatcher:
    """Decode, skip processed and in-flight events, feed the workers."""

    def __init__(
        self,
        spec: StreamSubscription,
        settings: BusSettings,
        registry: Registry,
        markers: Markers | None,
        acks: AckBuffer,
        in_flight: InFlight,
        retry: TransportRetry,
        client: Any,
    ) -> None:
        self.registry = registry
        self.markers = markers
        self.acks = acks
        self.in_flight = in_flight
        self.retry = retry
        self.client = client
        self.group = spec.group
        self._max_deliveries = spec.max_deliveries
        self._max_bytes = settings.max_payload_bytes
        self._strict_json = settings.strict_json
        self._check = spec.entry_check
        self._typed = spec.is_typed
        if self._typed:
            assert markers is not None
            by_stream: dict[str, list[Subscription]] = {}
            for sub in spec.handlers:
                by_stream.setdefault(sub.stream, []).append(sub)
            #: Per stream: event type, channel, handlers, and the event-marker prefix ``{group}|{channel}|``.
            self._stream_info = {
                stream: (subs[0].event_type, subs[0].channel, tuple(subs), markers.event_member(subs[0].channel, ""))
                for stream, subs in by_stream.items()
            }
        else:
            handler = cast("Any", spec.entry_handler)
            only = Subscription(
                event_type="", channel="", stream="", handler_key=spec.entry_handler_key, handler=handler
            )
            self._flat_subs = (only,)

    async def run(self, batches: MemoryObjectReceiveStream[list[Entry]], queue: EntryQueue) -> None:
        """Decode each batch, then hand it to :meth:`_handoff` (marker lookup, workers) without a buffer."""
        decoded, decoded_out = anyio.create_memory_object_stream[Decoded](max_buffer_size=0)
        decode = self.decode if self._typed else self.decode_flat
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._handoff, decoded_out, queue)
            async with decoded:
                async for batch in batches:
                    ready = decode(batch)
                    await send_batch(decoded, ready, self.in_flight, ready.entries)

    async def _handoff(self, decoded: MemoryObjectReceiveStream[Decoded], queue: EntryQueue) -> None:
        async with decoded:
            async for ready in decoded:
                await self._dispatch(ready, queue)

    async def _dispatch(self, ready: Decoded, queue: EntryQueue) -> None:
        """Look up the markers of decoded entries, hand the rest to the workers. Entries not handed
        on (cancelled meanwhile) are released: they stay pending in Redis, reclaimed or re-read later."""
        entries = ready.entries
        handed = False
        try:
            if ready.events or ready.handlers:
                entries = await self._skip_processed(ready)
            handed = True
            await queue.put(entries, self.in_flight.release_all)  # releases what it could not queue
        finally:
            if not handed:
                self.in_flight.release_all(entries)

    def _pre_check(self, entry: Entry) -> bool:
        """Entries deleted while pending, or pending too often: to the acker. True when it went."""
        if entry.fields is None:
            self.acks.put(entry, DROPPED)
            return True
        if entry.deliveries > self._max_deliveries:
            before = entry.deliveries - 1
            entry.deliveries = before
            reason = f"pending with {before} deliveries (max {self._max_deliveries})"
            entry.failure = Failure("max-deliveries", reason, reason)
            self.acks.put(entry, DEAD)
            return True
        return False

    def _dead(self, entry: Entry, problem: str) -> None:
        entry.failure = Failure("invalid", problem, problem)
        self.acks.put(entry, DEAD)

    def decode_flat(self, batch: list[Entry]) -> Decoded:
        """Flat entries: each becomes a :class:`StreamEntry` (after the subscription's check)."""
        ready: list[Entry] = []
        check = self._check
        subs = self._flat_subs
        for entry in batch:
            if self._pre_check(entry):
                continue
            fields = fields_dict(cast("Any", entry.fields))
            problem = check(fields) if check is not None else None
            if problem is not None:
                self._dead(entry, problem)
                continue
            entry.subs = subs
            entry.delivery = StreamEntry(entry.stream, entry.entry_id.decode(), fields, entry.deliveries)
            ready.append(entry)
        return Decoded(ready, {}, {})

    def decode(self, batch: list[Entry]) -> Decoded:
        """Build the deliveries of a batch; poison entries (and dropped or exhausted ones) go to the
        acker, and so do copies of an event another entry handles here right now (duplicates).
        The others take their event's place in flight, and their marker members are collected by
        tenant. One loop for the batch, with the stream's type, channel and handlers looked up
        once per run of entries from the same stream."""
        ready: list[Entry] = []
        duplicates: list[Entry] = []
        events: dict[str, list[bytes]] = {}
        handlers: dict[str, list[bytes]] = {}
        holders = self.in_flight.holders
        last_tenant = ""
        members: list[bytes] = []
        max_deliveries = self._max_deliveries
        max_bytes = self._max_bytes
        strict_json = self._strict_json
        # The C scan called here directly: most events need nothing else of the plain-JSON check.
        quick = _jsoncheck.c_scan if strict_json else None
        decode_payload = self.registry.decode_payload
        group = self.group
        stream_info = self._stream_info
        valid_tenants = checked_tenant_ids()
        current = ""
        expected = channel = member_prefix = handler_key = ""
        subs: tuple[Subscription, ...] = ()
        many = False
        for entry in batch:
            fields = entry.fields
            if fields is None or entry.deliveries > max_deliveries:
                self._pre_check(entry)
                continue
            deliveries = entry.deliveries
            # The bus's own entries (event, channel) without a dict; anything else as its pairs' dict.
            if type(fields) is list and len(fields) == 4 and fields[0] == b"event" and fields[2] == b"channel":
                raw: bytes | None = fields[1]
                forced = False
            else:
                raw, forced = event_of(fields)
            stream = entry.stream
            if stream != current:
                current = stream
                expected, channel, subs, member_prefix = stream_info[stream]
                handler_key = subs[0].handler_key
                many = len(subs) > 1
            if raw is None:
                self._dead(entry, "the entry has no `event` field")
                continue
            if quick is not None and len(raw) <= max_bytes and quick(raw):
                present = None
            else:  # size, JSON, duplicate keys; not scanned twice
                problem, value = plain_event(raw, max_bytes, strict=strict_json, scan=False)
                if problem is not None:
                    self._dead(entry, problem)
                    continue
                # The plain-JSON check's decode (when it has one) holds the payload's keys: the
                # union shapes that cannot match are skipped without a search of the bytes.
                present = value["payload"] if type(value) is dict and type(value.get("payload")) is dict else None
            try:
                envelope, payload_json = split_bus_event(raw)
                if envelope.event_type != expected:
                    self._dead(entry, self._type_mismatch(envelope.event_type, expected))
                    continue
                typed = decode_payload(expected, payload_json, present=present)
            except (SchemaError, RecursionError) as exc:  # hostile input never stops the loop
                self._dead(entry, str(exc))
                continue
            tenant = getattr(typed.value, "tenant_id", None)
            if type(tenant) is not str or tenant not in valid_tenants:  # else checked already
                if not isinstance(tenant, str) or not tenant:
                    tenant = _tenant_of(payload_json)
                problem = tenant_id_problem(tenant)
                if problem is not None:  # it would be built into marker keys (and widen ACL patterns)
                    self._dead(entry, f"invalid tenant id {tenant[:64]!r}: {problem}")
                    continue
            event_id = envelope.id
            entry.subs = subs
            entry.delivery = Delivery(
                event_id=event_id,
                event_type=expected,
                timestamp=envelope.timestamp,
                tenant_id=tenant,
                channel=channel,
                stream=stream,
                entry_id=entry.entry_id.decode(),
                delivery_count=deliveries,
                forced=forced,
                payload=typed,
                payload_json=payload_json,
                group=group,
                handler_key=handler_key,
            )
            entry.event_member = member = (member_prefix + event_id).encode()
            if holders.setdefault(member, entry) is not entry:
                entry.holds = False
                if not forced:
                    duplicates.append(entry)  # another entry handles this event here right now
                    continue
            ready.append(entry)
            if forced:  # a recovery re-publish: no marker check
                continue
            if tenant != last_tenant:  # runs of one tenant: one dict lookup per run
                last_tenant = tenant
                members = events.setdefault(tenant, [])
            members.append(member)
            if many:
                assert self.markers is not None
                handlers.setdefault(tenant, []).extend(self.markers.handler_members(entry.delivery, subs))
        self.acks.put_all(duplicates, DUPLICATE)
        return Decoded(ready, events, handlers)

    def _type_mismatch(self, event_type: str, expected: str) -> str:
        if event_type not in self.registry:
            return f"unknown event type {event_type!r} (stream of {expected})"
        return f"eventType {event_type!r} does not match the stream's event type {expected}"

    async def _skip_processed(self, ready: Decoded) -> list[Entry]:
        """One round trip: drop entries whose event is marked processed, note handlers already done."""
        markers = self.markers
        assert markers is not None
        entries = ready.entries
        check = await self.retry(
            "processed-marker lookup", lambda: markers.lookup(self.client, ready.events, ready.handlers)
        )
        if not check.events and not check.handlers:
            return entries
        out: list[Entry] = []
        for entry in entries:
            d = entry.delivery
            if not d.forced and entry.event_member in check.events:
                self.acks.put(entry, DUPLICATE)
                continue
            if check.handlers and len(entry.subs) > 1:
                members = markers.handler_members(d, entry.subs)
                done = zip(entry.subs, members, strict=True)
                entry.done = frozenset(s.handler_key for s, m in done if m in check.handlers)
            out.append(entry)
        return out


def _tenant_of(payload_json: bytes) -> str:
    """``tenantId`` (else ``tenant``) of a raw payload, for payload Structs without one."""
    try:
        data = msgspec.json.decode(payload_json)
    except msgspec.DecodeError:
        return "unknown"
    value = data.get("tenantId") or data.get("tenant") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else "unknown"
