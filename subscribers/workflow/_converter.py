"""The workflow converter: writes the flat workflow entry for global events whose producer did not.

It reads the per-type ``global`` streams of a configurable list of event types (default: all)
in a consumer group of its own (``workflow-converter``), and for each event writes the entry
the reference's publisher would have written (:meth:`schemas.WorkflowEvent.from_bus_event`).

Exactly once, per event id, across both writers. One Lua script decides and writes atomically:

1. marker ``{prefix}workflow:written:{eventId}`` present -> already written, skip. Publishers
   that write the workflow entry at publish time should set this marker in the same
   MULTI/EXEC (``SET marker 1 EX ttl``); the converter sets it with its own XADD.
2. else (publishers that set no marker, like the TypeScript reference) look back in the
   workflow stream around the per-type entry's time (+-``lookback_ms``, at most ``lookback_max``
   entries; both the reference and our publisher write the workflow entry first) for an entry
   with this ``event_id``; found -> set the marker, skip.
3. else ``SET marker NX EX ttl`` and ``XADD`` the workflow entry (``MAXLEN ~``).

A workflow entry already trimmed away when the converter looks is not seen by step 2; the
workflow consumer's durable event-id dedupe still makes such a copy trigger nothing twice.

On Redis Cluster the marker carries the workflow stream's name as its hash tag
(``{prefix}workflow:written:{eventId}{workflow:events:global}``), so the script's two keys
share the stream's slot.

It runs on the bus's consume engine (:class:`bus.consume.StreamSubscription` of flat entries,
one at a time); an entry without a decodable envelope is dead-lettered as ``invalid`` to the
stream's ``{stream}:dead-letter`` (with ``consumerGroup``), as the bus's own consumer does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

import anyio
import anyio.abc
import msgspec
from msgspec import Meta

from bus import CHANNEL_GLOBAL, WORKFLOW_STREAM, Consumer, EventBus, Reject
from bus.consume import LoopTiming, PerTypeDeadLetters, StreamEntry, StreamSubscription
from schemas import REGISTRY, EventValidationError, WorkflowEvent, decode_bus_event

from .._keys import SubscriberKeys

__all__ = ["CONVERT_SCRIPT", "ConverterSettings", "WorkflowConverter"]

log = logging.getLogger("subscribers.workflow")

#: KEYS[1] marker, KEYS[2] workflow stream. ARGV[1] marker TTL (s), ARGV[2] MAXLEN (0: none),
#: ARGV[3] event id, ARGV[4] look-back start id, ARGV[5] look-back end id, ARGV[6] look-back
#: count (0: none), ARGV[7..] field/value pairs. Returns the new entry id, or false when skipped.
CONVERT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local t = redis.call('TYPE', KEYS[2])
t = t['ok'] or t
if t ~= 'stream' and t ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. t .. ', not a stream; nothing was written')
end
local n = tonumber(ARGV[6])
if n > 0 and t == 'stream' then
  local recent = redis.call('XREVRANGE', KEYS[2], ARGV[5], ARGV[4], 'COUNT', n)
  for _, entry in ipairs(recent) do
    local f = entry[2]
    for i = 1, #f, 2 do
      if f[i] == 'event_id' then
        if f[i + 1] == ARGV[3] then
          redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
          return false
        end
        break
      end
    end
  end
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
local args = {'XADD', KEYS[2]}
if tonumber(ARGV[2]) > 0 then
  args[#args + 1] = 'MAXLEN'
  args[#args + 1] = '~'
  args[#args + 1] = ARGV[2]
end
args[#args + 1] = '*'
for i = 7, #ARGV do args[#args + 1] = ARGV[i] end
return redis.call(unpack(args))
"""


class ConverterSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which types to convert, where to write, and how to read (``event_types=None``: all known types)."""

    event_types: tuple[str, ...] | None = None
    channel: str = CHANNEL_GLOBAL
    workflow_stream: str = WORKFLOW_STREAM
    group: str = "workflow-converter"
    consumer: str | None = None
    marker_ttl_s: Annotated[int, Meta(gt=0)] = 3 * 24 * 3600
    #: MAXLEN ~ for the workflow XADD; None: the bus's ``max_len``.
    max_len: Annotated[int, Meta(ge=0)] | None = None
    lookback_ms: Annotated[int, Meta(ge=0)] = 5000
    lookback_max: Annotated[int, Meta(ge=0)] = 1000
    max_deliveries: Annotated[int, Meta(gt=0)] = 10
    #: Read, claim and reclaim timing; None: the bus's (``bus.settings.loop_timing``).
    timing: LoopTiming | None = None
    count: Annotated[int, Meta(gt=0)] = 10
    start_id: str = "0"


def envelope_problem(fields: Mapping[bytes, bytes]) -> str | None:
    """Why an entry cannot be converted at all (no ``event`` field, no decodable envelope), or None."""
    raw = fields.get(b"event")
    if raw is None:
        return "the entry has no `event` field"
    try:
        env = decode_bus_event(raw)
        msgspec.json.decode(bytes(env.payload))
    except (EventValidationError, msgspec.DecodeError) as exc:
        return f"cannot convert: {exc}"
    return None


def _ms_of(entry_id: str) -> int:
    head = entry_id.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


class WorkflowConverter:
    """Service object: ``await WorkflowConverter(settings).run(bus)``."""

    #: Service name (the runner derives consumer names from it).
    name = "workflow-converter"

    def __init__(self, settings: ConverterSettings | None = None) -> None:
        self.settings = settings or ConverterSettings()
        types = self.settings.event_types
        for event_type in types or ():
            REGISTRY.get(event_type)  # unknown names fail at construction, with suggestions
        self.event_types: tuple[str, ...] = tuple(types) if types else REGISTRY.event_types
        #: The consume loop of the current run (its ``stats``), once :meth:`run` started.
        self.loop: Consumer | None = None
        #: Counters: entries written and skipped as already present.
        self.stats = {"written": 0, "skipped": 0}

    def streams(self, bus: EventBus) -> list[str]:
        """The per-type streams read."""
        return [bus.keys.stream(self.settings.channel, t) for t in self.event_types]

    async def convert(self, bus: EventBus, entry_id: str, fields: Mapping[bytes, bytes]) -> str | None:
        """Write the workflow entry for one per-type entry; the new entry id, or None when already present."""
        raw = fields.get(b"event")
        if raw is None:
            raise Reject(f"entry {entry_id} has no 'event' field")
        try:
            env = decode_bus_event(raw)
            payload_json = bytes(env.payload)
            payload = msgspec.json.decode(payload_json)
            wf = WorkflowEvent.from_bus_event(env.id, env.event_type, env.timestamp, payload, payload_json)
        except (EventValidationError, msgspec.DecodeError) as exc:
            raise Reject(f"cannot convert entry {entry_id}: {exc}") from exc
        s = self.settings
        max_len = s.max_len if s.max_len is not None else bus.settings.max_len
        ms = _ms_of(entry_id)
        lookback = s.lookback_max if s.lookback_ms and ms else 0
        args: list[Any] = [
            s.marker_ttl_s,
            max_len,
            wf.event_id,
            max(ms - s.lookback_ms, 0),
            f"{ms + s.lookback_ms}-18446744073709551615",
            lookback,
        ]
        for name, value in wf.to_fields().items():
            args += [name, value]
        marker = SubscriberKeys(bus.keys.prefix).workflow_written(wf.event_id)
        # With BUS_KEY_HASHTAG the bus's workflow stream carries the tag (as the marker, by its prefix).
        stream = bus.keys.workflow_stream if s.workflow_stream == WORKFLOW_STREAM else s.workflow_stream
        if bus.keys.cluster and not bus.keys.hashtag:  # the script's keys: the stream's slot
            marker += "{" + stream + "}"
        reply = await bus.client.eval(CONVERT_SCRIPT, 2, marker, stream, *args)
        if not reply:
            self.stats["skipped"] += 1
            return None
        self.stats["written"] += 1
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    def subscription(self, bus: EventBus) -> StreamSubscription:
        """What this converter reads on ``bus``: the per-type streams, flat entries, per-type dead letters."""
        s = self.settings

        async def handle(entry: StreamEntry) -> None:
            await self.convert(bus, entry.entry_id, entry.fields)

        return StreamSubscription(
            streams=tuple(self.streams(bus)),
            group=s.group,
            consumer=s.consumer or bus.consumer_name,
            start_id=s.start_id,
            batch_size=s.count,
            concurrency=1,  # the workflow stream gets the entries in the order they were read
            handler_retries=0,
            max_deliveries=s.max_deliveries,
            timing=s.timing or bus.settings.loop_timing,
            entry_handler=handle,
            entry_handler_key=f"converter:{s.group}",
            entry_check=envelope_problem,
            dead_letters=PerTypeDeadLetters(group=s.group),
        )

    def make_loop(self, bus: EventBus) -> Consumer:
        """The consume loop this converter runs on ``bus``'s client."""
        return bus.consume_loop(self.subscription(bus))

    async def run(self, bus: EventBus, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Create the group on every stream, report started, and convert until cancelled."""
        self.loop = self.make_loop(bus)
        await self.loop.run(task_status=task_status)
