"""Publish and consume throughput: ours vs raw redis-py vs FastStream, in one process run.

Every contender handles the same TICKET_UPDATED event (``_workload.py``) on the same Redis,
interleaved round by round (``_harness.abench_many``); the table gives events/s as the median
over the rounds with the min-max.

Publish (every XADD trims with ``MAXLEN ~ 1000``, as the reference does):

- raw redis-py: a pipeline (no MULTI) of XADDs of pre-encoded bytes, batches of 100 and 1000;
  the 2-XADD rows write the workflow entry and the per-type entry of each event, exactly the
  keys and fields we write. No validation, no encoding: the floor of redis-py's client cost.
- ours: ``bus.publish`` one await at a time; 64 concurrent callers of
  ``bus.publish(..., batch=True)`` (auto-batching: each await returns once its own entries are
  written, which the run checks with XRANGE before timing); ``bus.publish_many`` in batches of
  100 and 1000. Each validates the payload dict and builds a fresh envelope (id, timestamp).
  2 XADDs per event: a ``global`` publish (workflow entry + per-type entry, one MULTI/EXEC);
  1 XADD: a publish on a non-global channel (no workflow entry).
- hand-written RESP writer (``_resp_writer.py``): the ceiling of a Python client. The same
  MULTI, 2 XADDs per event (workflow entry, per-type entry) and EXEC as ``publish_many`` of 1000,
  of the same pre-encoded bytes, framed as RESP per call and written to one asyncio stream in
  chunks of 100 events; replies read with hiredis. No validation, ids, envelopes, pool or retries.
- FastStream (``faststream[redis]``, bench extra): ``broker.publish(model, stream=..., maxlen=1000)``
  of a pydantic envelope model validated from the same dict, one at a time, into a redis-py
  pipeline (its pipeline API) in batches of 1000, and from 64 concurrent tasks. 1 XADD per event.

Consume (a stream prefilled untimed, then timed until every entry is acked):

- ours: the bus's consume loop (XREADGROUP COUNT n, decode + validate the envelope and payload,
  processed-marker lookup, dispatch to a no-op handler, XACK + marker in one MULTI/EXEC);
- raw: XREADGROUP COUNT n + ``msgspec.json.decode`` of each envelope + one XACK per batch; the
  validating raw loop makes, instead of the decode, every check our loop makes before a handler
  runs (the plain-JSON check, envelope, payload, tenant id); analysis rows run only our envelope
  and payload decoders, or all the checks plus our processed-marker lookup and write (the same
  Redis work as ours, serial in one task: a hand-rolled consumer with our semantics);
- FastStream: its default stream subscriber (``StreamSub(stream, group=..., consumer=...)``, one
  message per handler call) and its batch subscriber (``batch=True, max_records=1000``), each
  handler taking the pydantic envelope model (validated by FastStream), on a stream prefilled
  with FastStream's own publish; the broker is started per round and timed until the handler saw
  every message (acked by FastStream after the handler returns), then stopped.

CPU per event: every consume contender of ours and the raw loops also records, over its timed
part, the client's CPU (``getrusage``: this process) and Redis's (``INFO cpu``: the server's
user + system time, so run it on a quiet Redis), per event; the report gives their medians
beside the wall time. Prefill and teardown are outside that window.

Run: ``python benchmarks/run_all.py`` (``--quick`` for a smoke run, ``--rounds N``,
``--no-write``, ``--url redis://127.0.0.1:6379/11``, ``--keys consume1000,consume1000-metrics`` runs only
those contenders, ``--memory`` adds the 1,000,000-event
memory run of ``bench_memory.py``). ``bus bench --quick`` runs the quick version.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import msgspec
from _harness import (
    Timing,
    abench_many,
    load_average,
    markdown_table,
    round_done,
    section_head,
    write_section,
)
from _resp_writer import RespWriter, command
from _workload import (
    EVENT_TYPE,
    PAYLOAD,
    TENANT,
    Target,
    envelope_bytes,
    faststream_model,
    payload_bytes,
    prefill_command,
    workflow_fields,
)

from bus import CHANNEL_GLOBAL, WORKFLOW_STREAM, BusSettings, EventBus
from bus._codec import new_event_id, now_iso
from bus._tenant import tenant_id_problem
from bus.consume._jsoncheck import c_scan, plain_event
from bus.consume._markers import ADD_SCRIPT
from bus.observability import BusMetrics
from bus.wire import read_replies
from schemas import REGISTRY, decode_bus_event
from schemas._envelope import split_bus_event

HEADING = "Throughput (publish and consume vs raw redis-py and FastStream)"
CHANNEL_1 = "bench"  # a non-global channel: no workflow entry, 1 XADD per event
CONCURRENCY = 64

TARGETS = (
    ("publish_many 1000, 2 XADD/event vs raw redis-py pipeline 1000, 2 XADD/event", "many1000-2", "raw1000-2", 2.0),
    ("publish_many 1000, 2 XADD/event vs FastStream pipeline 1000", "many1000-2", "fs-pipe1000", 2.5),
    ("64 concurrent publish(batch=True), 2 XADD/event vs FastStream 64 tasks", "conc64-2", "fs-conc64", 5.0),
    ("consume COUNT 1000, no-op handler vs raw XREADGROUP+XACK+decode", "consume1000", "raw-consume1000", 0.5),
    (
        "consume COUNT 1000 vs raw XREADGROUP+XACK with all of our checks",
        "consume1000",
        "raw-consume1000-full",
        0.9,
    ),
    (
        "publish_many 1000, 2 XADD/event vs hand-written RESP writer 1000 (ceiling of a Python client)",
        "many1000-2",
        "resp1000-2",
        0.9,
    ),
    ("64 concurrent publish(batch=True) vs publish_many 1000, 2 XADD/event", "conc64-2", "many1000-2", 0.8),
    ("consume at all defaults vs tuned (COUNT 1000)", "consume-defaults", "consume1000", 0.8),
)


ANALYSIS = (
    ("publish_many 1000, 2 XADD/event vs raw redis-py MULTI/EXEC pipeline 1000", "many1000-2", "raw1000-2-tx"),
    ("publish_many 1000, 1 XADD/event vs raw redis-py pipeline 1000, 1 XADD/event", "many1000-1", "raw1000-1"),
    ("share of publish_many 1000 (2 XADD/event) time spent in prepare (no I/O)", "many1000-2", "prepare-2"),
    ("consume COUNT 1000 with Prometheus metrics on vs off (cost: 1 - ratio)", "consume1000-metrics", "consume1000"),
    (
        "hand-written RESP writer 1000 vs raw redis-py MULTI/EXEC pipeline 1000, 2 XADD/event",
        "resp1000-2",
        "raw1000-2-tx",
    ),
    ("consume COUNT 1000 vs FastStream's batch stream subscriber (1000)", "consume1000", "fs-consume-batch1000"),
    ("consume at all defaults vs FastStream's default stream subscriber", "consume-defaults", "fs-consume"),
    (
        "raw with all of our checks vs raw with msgspec.json.decode (ceiling of a validating consumer)",
        "raw-consume1000-full",
        "raw-consume1000",
    ),
    (
        "consume COUNT 1000 vs raw with our envelope and payload decoders only (no plain-JSON or tenant check)",
        "consume1000",
        "raw-consume1000-decoders",
    ),
    (
        "consume COUNT 1000 vs raw with all of our checks and our marker lookup and write (same Redis work)",
        "consume1000",
        "raw-consume1000-markers",
    ),
)


@dataclass
class Sizes:
    """Events per call of each kind of contender."""

    sequential: int = 300  # one await at a time
    per_caller: int = 20  # each of the 64 concurrent callers
    #: Entries prefilled per consume call: the size of issue #15's table. Each call of ours also
    #: includes its consumer's start-up and the drain of its pipeline (about 6-7 ms: 4% of a call
    #: of 20,000 entries, the size used before session 8; under 1% of 100,000).
    consume: int = 100_000


QUICK = Sizes(sequential=50, per_caller=4, consume=2_000)


@dataclass
class Row:
    key: str
    label: str
    xadds: int | str
    group: str


class CpuMeter:
    """Client and Redis CPU seconds over the timed part of consume calls, per event (see the docstring)."""

    def __init__(self) -> None:
        #: Per contender, one ``(client µs, Redis µs, wall µs)`` per event for each timed call.
        self.samples: dict[str, list[tuple[float, float, float]]] = {}

    async def mark(self, client: Any) -> tuple[float, float]:
        """This process's CPU seconds and Redis's, now."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        info = await client.info("cpu")
        return usage.ru_utime + usage.ru_stime, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def add(self, key: str, start: tuple[float, float], end: tuple[float, float], events: int, wall_s: float) -> None:
        scale = 1e6 / events
        sample = ((end[0] - start[0]) * scale, (end[1] - start[1]) * scale, wall_s * scale)
        self.samples.setdefault(key, []).append(sample)

    def medians(self, key: str) -> tuple[float, float, float] | None:
        """Medians of client, Redis and wall µs per event over the calls (warm-up excluded), or None."""
        samples = self.samples.get(key, [])[1:] or self.samples.get(key, [])
        if not samples:
            return None
        return (
            statistics.median(s[0] for s in samples),
            statistics.median(s[1] for s in samples),
            statistics.median(s[2] for s in samples),
        )


def _faststream_available() -> bool:
    try:
        import faststream.redis  # noqa: F401
        import pydantic  # noqa: F401
    except ImportError:
        return False
    return True


class Bench:
    """Builds the contenders on one target and runs them."""

    def __init__(self, target: Target, sizes: Sizes, *, faststream: bool, keys: set[str] | None = None) -> None:
        self.target = target
        #: Run only these contenders (None: all), e.g. the metrics on/off pair with more rounds.
        self.keys = keys
        self.sizes = sizes
        self.faststream = faststream
        self.contenders: dict[str, Callable[[], Awaitable[Any]]] = {}
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.cpu = CpuMeter()

    def add(self, key: str, label: str, xadds: int | str, group: str, fn: Callable[[], Awaitable[Any]]) -> None:
        if self.keys is not None and key not in self.keys:
            return
        self.contenders[key] = fn
        self.rows.append(Row(key, label, xadds, group))

    # -- raw redis-py ------------------------------------------------------------------

    def raw_publish(self, client: Any) -> None:
        stream = self.target.stream(CHANNEL_GLOBAL)
        wf = workflow_fields()
        fields = {b"event": envelope_bytes(), b"channel": CHANNEL_GLOBAL.encode()}
        max_len = self.target.max_len
        for batch, xadds, transaction in (
            (100, 2, False),
            (100, 1, False),
            (1000, 2, False),
            (1000, 1, False),
            (1000, 2, True),
        ):

            async def run(batch: int = batch, xadds: int = xadds, transaction: bool = transaction) -> int:
                pipe = client.pipeline(transaction=transaction)
                for _ in range(batch):
                    if xadds == 2:
                        pipe.xadd(WORKFLOW_STREAM, wf, maxlen=max_len, approximate=True)
                    pipe.xadd(stream, fields, maxlen=max_len, approximate=True)
                await pipe.execute()
                return batch

            if transaction:
                key, label = (
                    f"raw{batch}-{xadds}-tx",
                    f"(analysis) raw redis-py MULTI/EXEC pipeline, batches of {batch}",
                )
            else:
                key, label = f"raw{batch}-{xadds}", f"raw redis-py pipeline, batches of {batch}"
            self.add(key, label, xadds, "publish", run)

    async def resp_publish(self) -> None:
        """The hand-written RESP writer: MULTI, 1000 x (workflow XADD, per-type XADD), EXEC."""
        writer = await RespWriter.connect(self.target.url)
        self._closers.append(writer)
        stream = self.target.stream(CHANNEL_GLOBAL).encode()
        workflow = [part for item in workflow_fields().items() for part in item]
        per_type = [b"event", envelope_bytes(), b"channel", CHANNEL_GLOBAL.encode()]
        trim = (b"MAXLEN", b"~", str(self.target.max_len).encode(), b"*")
        multi, exec_ = command(b"MULTI"), command(b"EXEC")
        batch = 1000

        async def run() -> int:
            parts = [multi]
            for i in range(batch):
                parts.append(command(b"XADD", WORKFLOW_STREAM.encode(), *trim, *workflow))
                parts.append(command(b"XADD", stream, *trim, *per_type))
                if i % 100 == 99:  # stream the transaction in chunks of 100 events
                    writer.write(b"".join(parts))
                    parts = []
            parts.append(exec_)
            replies = await writer.execute(b"".join(parts), 2 * batch + 2)
            assert isinstance(replies[-1], list) and len(replies[-1]) == 2 * batch
            return batch

        self.add(
            "resp1000-2", "hand-written RESP writer (asyncio stream, hiredis), MULTI/EXEC of 1000", 2, "publish", run
        )

    # -- ours --------------------------------------------------------------------------

    def ours_publish(self, bus: EventBus) -> None:
        n_seq, per_caller = self.sizes.sequential, self.sizes.per_caller
        for xadds, channel in ((2, CHANNEL_GLOBAL), (1, CHANNEL_1)):

            async def seq(channel: str = channel) -> int:
                for _ in range(n_seq):
                    await bus.publish(EVENT_TYPE, PAYLOAD, channel=channel)
                return n_seq

            async def caller(channel: str) -> None:
                for _ in range(per_caller):
                    await bus.publish(EVENT_TYPE, PAYLOAD, channel=channel, batch=True)

            async def conc(channel: str = channel) -> int:
                await asyncio.gather(*(caller(channel) for _ in range(CONCURRENCY)))
                return CONCURRENCY * per_caller

            self.add(f"seq-{xadds}", "ours: await publish(), one at a time", xadds, "publish", seq)
            self.add(
                f"conc{CONCURRENCY}-{xadds}",
                f"ours: {CONCURRENCY} concurrent await publish(batch=True)",
                xadds,
                "publish",
                conc,
            )
            for batch in (100, 1000):
                items = [(EVENT_TYPE, PAYLOAD)] * batch

                async def many(items: list[Any] = items, channel: str = channel) -> int:
                    await bus.publish_many(items, channel=channel)
                    return len(items)

                self.add(f"many{batch}-{xadds}", f"ours: publish_many, batches of {batch}", xadds, "publish", many)

            async def prepare_only(channel: str = channel) -> int:
                prepare = bus.prepare
                for _ in range(1000):
                    prepare(EVENT_TYPE, PAYLOAD, channel=channel)
                return 1000

            self.add(
                f"prepare-{xadds}", "(analysis) ours: prepare only, no I/O (client CPU)", xadds, "publish", prepare_only
            )

    async def check_auto_batching(self, bus: EventBus) -> str:
        """Each of 64 concurrent callers finds both its entries in Redis as soon as its await returns."""
        client = bus.client
        groups_before = bus.batcher.groups_written
        missing = 0

        async def caller() -> None:
            nonlocal missing
            result = await bus.publish(EVENT_TYPE, PAYLOAD, batch=True)
            for stream, entry_id in result.entries.items():
                if not await client.xrange(stream, min=entry_id, max=entry_id):
                    missing += 1
            if len(result.entries) != 2:
                missing += 1

        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        groups = bus.batcher.groups_written - groups_before
        if missing:
            raise AssertionError(f"{missing} entries were not in Redis when their publish returned")
        return (
            f"Auto-batching check: {CONCURRENCY} concurrent callers were written in {groups} round trip(s); "
            "each caller's XRANGE found both of its entries right after its await returned."
        )

    # -- FastStream --------------------------------------------------------------------

    async def faststream_publish(self, broker: Any) -> None:
        model = faststream_model()
        stream = f"{self.target.prefix}faststream:{EVENT_TYPE}"
        max_len = self.target.max_len
        client = await broker.connect()
        n_seq, per_caller = self.sizes.sequential, self.sizes.per_caller

        def message() -> Any:
            return model.model_validate(
                {"id": new_event_id(), "eventType": EVENT_TYPE, "timestamp": now_iso(), "payload": PAYLOAD}
            )

        self.notes.append(f"FastStream message: {len(message().model_dump_json())} bytes of JSON (nulls included)")

        async def seq() -> int:
            for _ in range(n_seq):
                await broker.publish(message(), stream=stream, maxlen=max_len)
            return n_seq

        async def caller() -> None:
            for _ in range(per_caller):
                await broker.publish(message(), stream=stream, maxlen=max_len)

        async def conc() -> int:
            await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
            return CONCURRENCY * per_caller

        self.add("fs-seq", "FastStream: await publish(), one at a time", 1, "publish", seq)
        self.add("fs-conc64", f"FastStream: {CONCURRENCY} concurrent tasks", 1, "publish", conc)
        for batch in (100, 1000):

            async def pipe(batch: int = batch) -> int:
                async with client.pipeline(transaction=False) as p:
                    for _ in range(batch):
                        await broker.publish(message(), stream=stream, maxlen=max_len, pipeline=p)
                    await p.execute()
                return batch

            self.add(f"fs-pipe{batch}", f"FastStream: pipeline, batches of {batch}", 1, "publish", pipe)

    # -- consume -----------------------------------------------------------------------

    async def _prefill(self, client: Any, stream: str, channel: str, envelopes: list[bytes]) -> None:
        """XADD the envelopes (one packed round trip per 5,000; untimed)."""
        pool = client.connection_pool
        conn = await pool.get_connection()
        try:
            for i in range(0, len(envelopes), 5000):
                chunk = envelopes[i : i + 5000]
                await conn.send_packed_command(prefill_command(stream, chunk, channel), check_health=False)
                await read_replies(conn, len(chunk), 60.0)
        finally:
            await pool.release(conn)

    async def ours_consume(self, client: Any, count: int | None, *, metrics: bool = False) -> None:
        """Our consume loop at COUNT ``count`` (None: every consume setting at its default)."""
        channel = f"consume{count or '-defaults'}{'-metrics' if metrics else ''}"
        stream = self.target.stream(channel)
        n = self.sizes.consume
        tuned = {"batch_size": count} if count is not None else {}
        bus = EventBus(self.target.settings(block_ms=1000, **tuned), metrics=BusMetrics() if metrics else None)
        await bus.connect()
        self._cleanups.append(bus)

        async def noop(delivery: Any) -> None:
            return None

        bus.subscribe(EVENT_TYPE, noop, channel=channel, subscriber_id="bench-noop")
        # The same envelopes every call: the processed markers are deleted after each call, so the
        # loop does not skip them as duplicates (entry ids are new each time).
        envelopes = [envelope_bytes() for _ in range(n)]

        async def run() -> tuple[int, float]:
            # Prefill while the loop is stopped, then time from its start (groups, own-pending
            # check and all) until Redis confirmed the last ack: the raw loop starts the same way.
            await self._prefill(client, stream, channel, envelopes)
            target = bus.stats.handled + n
            async with anyio.create_task_group() as tg:
                cpu = await self.cpu.mark(client)
                start = time.perf_counter()
                await tg.start(bus.run)
                consumer = bus.consumer
                assert consumer is not None
                await consumer.wait_until(lambda s: s.handled >= target)
                elapsed = time.perf_counter() - start
                self.cpu.add(channel, cpu, await self.cpu.mark(client), n, elapsed)
                bus.stop()
            await client.xtrim(stream, maxlen=0)
            await client.delete(*self.target.marker_keys())
            return n, elapsed

        label = "ours: consume loop, no-op handler, " + (f"COUNT {count}" if count else "all defaults")
        label += ", Prometheus metrics on" if metrics else ""
        self.add(channel, label, "-", "consume", run)

    async def raw_consume(self, client: Any, count: int, *, validate: str = "") -> None:
        """The raw loop: XREADGROUP COUNT ``count``, a check of each event, one XACK per batch.

        ``validate``: "" decodes with ``msgspec.json.decode``; "decoders" runs our envelope and
        payload decoders; "full" runs every check our consume loop makes before a handler (the
        plain-JSON check, envelope, payload, tenant id), the same calls in the same order;
        "markers" adds the Redis work of our processed markers: per batch, SMISMEMBER on the
        tenant's set and its rotated one (one pipeline), then the XACK in a MULTI/EXEC with the
        same marker script as ours. Serial, one task, no hand-off: the floor of our design.
        """
        channel = f"raw-consume{count}{'-' + validate if validate else ''}"
        stream = self.target.stream(channel)
        group = "bench-raw"
        await client.xgroup_create(stream, group, id="0", mkstream=True)
        n = self.sizes.consume
        envelopes = [envelope_bytes() for _ in range(n)]
        max_bytes = BusSettings().max_payload_bytes

        def decoders(raw: bytes) -> Any:
            envelope = decode_bus_event(raw)
            return REGISTRY.decode_payload(envelope.event_type, bytes(envelope.payload))

        def full(raw: bytes) -> Any:
            if not (len(raw) <= max_bytes and c_scan is not None and c_scan(raw)):
                problem, _ = plain_event(raw, max_bytes, scan=False)
                if problem is not None:
                    raise ValueError(problem)
            envelope, payload_json = split_bus_event(raw)
            typed = REGISTRY.decode_payload(envelope.event_type, payload_json)
            problem = tenant_id_problem(typed.value.tenant_id)
            if problem is not None:
                raise ValueError(problem)
            return envelope

        decode = {"": msgspec.json.decode, "decoders": decoders, "full": full, "markers": full}[validate]
        marks = validate == "markers"
        marker_key = self.target.keys.marker_events(TENANT)
        prefix = f"{group}|{channel}|"

        async def mark(ids: list[bytes], members: list[bytes]) -> None:
            lookup = client.pipeline(transaction=False)
            lookup.smismember(marker_key, members)
            lookup.smismember(marker_key + ":prev", members)
            seen = await lookup.execute()
            fresh = [m for m, a, b in zip(members, *seen, strict=True) if not (a or b)]
            ack = client.pipeline(transaction=True)
            ack.xack(stream, group, *ids)
            ack.eval(ADD_SCRIPT, 3, marker_key, marker_key + ":prev", marker_key + ":born", 86400, *fresh)
            await ack.execute()

        async def run() -> tuple[int, float]:
            await self._prefill(client, stream, channel, envelopes)
            cpu = await self.cpu.mark(client)
            start = time.perf_counter()
            done = 0
            while done < n:
                reply = await client.xreadgroup(group, "raw", {stream: ">"}, count=count)
                for _, entries in reply:
                    ids = []
                    if marks:  # a loop of its own: the other raw loops pay no per-event test
                        members = []
                        for entry_id, fields in entries:
                            members.append((prefix + decode(fields[b"event"]).id).encode())
                            ids.append(entry_id)
                        await mark(ids, members)
                    else:
                        for entry_id, fields in entries:
                            decode(fields[b"event"])
                            ids.append(entry_id)
                        await client.xack(stream, group, *ids)
                    done += len(ids)
            elapsed = time.perf_counter() - start
            self.cpu.add(channel, cpu, await self.cpu.mark(client), n, elapsed)
            await client.xtrim(stream, maxlen=0)
            if marks:
                await client.delete(marker_key, marker_key + ":prev", marker_key + ":born")
            return n, elapsed

        label = {
            "": f"raw: XREADGROUP COUNT {count} + msgspec decode + XACK",
            "decoders": f"(analysis) raw: XREADGROUP COUNT {count} + our envelope and payload decoders + XACK",
            "full": f"raw: XREADGROUP COUNT {count} + all of our checks (plain JSON, envelope, payload, tenant) + XACK",
            "markers": f"(analysis) raw: XREADGROUP COUNT {count} + all of our checks + our markers + XACK",
        }[validate]
        self.add(channel, label, "-", "consume", run)

    async def faststream_consume(self, *, batch: bool) -> None:
        """FastStream's stream subscriber (default, or ``batch=True`` with 1000 records per read)."""
        from faststream.redis import RedisBroker, StreamSub

        model = faststream_model()
        key = "fs-consume-batch1000" if batch else "fs-consume"
        stream = f"{self.target.prefix}{key}:{EVENT_TYPE}"
        n = self.sizes.consume
        seen = [0]
        target = [0]
        done = anyio.Event()
        broker = RedisBroker(self.target.url, logger=None)
        sub = (
            StreamSub(stream, group="bench-fs", consumer="fs", last_id="0", batch=True, max_records=1000)
            if batch
            else None
        )

        def count(k: int) -> None:
            seen[0] += k
            if seen[0] >= target[0]:
                done.set()

        if batch:

            async def handle_batch(messages: Any) -> None:
                count(len(messages))

            # Real annotations (this module's are strings): FastStream validates against them.
            handle_batch.__annotations__ = {"messages": list[model], "return": None}  # type: ignore[valid-type]
            broker.subscriber(stream=sub)(handle_batch)

        else:

            async def handle(message: Any) -> None:
                count(1)

            handle.__annotations__ = {"message": model, "return": None}
            broker.subscriber(stream=StreamSub(stream, group="bench-fs", consumer="fs", last_id="0"))(handle)

        publisher = RedisBroker(self.target.url, logger=None)
        client = await publisher.connect()
        self._brokers.append(publisher)

        def message() -> Any:
            return model.model_validate(
                {"id": new_event_id(), "eventType": EVENT_TYPE, "timestamp": now_iso(), "payload": PAYLOAD}
            )

        messages = [message() for _ in range(n)]

        async def run() -> tuple[int, float]:
            nonlocal done
            for i in range(0, n, 1000):  # untimed prefill, FastStream's own format
                async with client.pipeline(transaction=False) as p:
                    for m in messages[i : i + 1000]:
                        await publisher.publish(m, stream=stream, pipeline=p)
                    await p.execute()
            done = anyio.Event()
            target[0] = seen[0] + n
            start = time.perf_counter()
            await broker.start()
            await done.wait()
            elapsed = time.perf_counter() - start
            await broker.stop()
            await client.xtrim(stream, maxlen=0)
            return n, elapsed

        label = (
            "FastStream: batch stream subscriber, max_records 1000, pydantic model"
            if batch
            else "FastStream: default stream subscriber, pydantic model"
        )
        self.add(key, label, "-", "consume", run)

    # -- run ---------------------------------------------------------------------------

    async def run(self, *, rounds: int, min_round_s: float, publish: bool, consume: bool) -> list[Timing]:
        await self.target.check_free()
        self._cleanups: list[EventBus] = []
        self._closers: list[RespWriter] = []
        self._brokers: list[Any] = []
        client = self.target.client()
        bus = EventBus(self.target.settings())
        broker: Any = None
        try:
            await bus.connect()
            if publish:
                self.notes.append(await self.check_auto_batching(bus))
                self.raw_publish(client)
                await self.resp_publish()
                self.ours_publish(bus)
                if self.faststream:
                    from faststream.redis import RedisBroker

                    broker = RedisBroker(self.target.url, logger=None)
                    await self.faststream_publish(broker)
            if consume:
                await self.ours_consume(client, None)
                await self.ours_consume(client, 10)
                for count in (100, 1000):
                    await self.ours_consume(client, count)
                    await self.raw_consume(client, count)
                await self.raw_consume(client, 1000, validate="full")
                await self.raw_consume(client, 1000, validate="decoders")
                await self.raw_consume(client, 1000, validate="markers")
                await self.ours_consume(client, 1000, metrics=True)
                if self.faststream:
                    await self.faststream_consume(batch=False)
                    await self.faststream_consume(batch=True)

            return await abench_many(
                self.contenders, rounds=rounds, min_round_s=min_round_s, on_round=lambda i: round_done(i, rounds)
            )
        finally:
            for consumer_bus in self._cleanups:
                await consumer_bus.aclose()
            for writer in self._closers:
                await writer.aclose()
            if broker is not None:
                await broker.stop()
            for other in self._brokers:
                await other.stop()
            await bus.aclose()
            await client.aclose()
            await self.target.cleanup()


def _fmt_rate(t: Timing) -> str:
    return f"{t.per_second:,.0f} ({1e9 / t.max_ns:,.0f}-{1e9 / t.min_ns:,.0f})"


def report(bench: Bench, timings: dict[str, Timing], rounds: int, load: tuple[float, float, float]) -> tuple[str, str]:
    """The console table and the RESULTS.md section body."""
    rows = []
    for row in bench.rows:
        t = timings[row.key]
        xadd_rate = f"{t.per_second * row.xadds:,.0f}" if isinstance(row.xadds, int) else "-"
        rows.append((row.label, str(row.xadds), _fmt_rate(t), xadd_rate))
    table = markdown_table(["contender", "XADD/event", "events/s median (min-max)", "XADD/s"], rows)
    verdicts = []
    for label, ours, theirs, goal in TARGETS:
        if ours not in timings or theirs not in timings:
            verdicts.append((label, f">= {goal:.1f}x", "not run", "-"))
            continue
        ratio = timings[ours].per_second / timings[theirs].per_second
        verdicts.append((label, f">= {goal:.1f}x", f"{ratio:.2f}x", "met" if ratio >= goal else "NOT met"))
    targets = markdown_table(["target", "goal", "ratio (medians)", "verdict"], verdicts)
    analysis = [
        (label, f"{timings[ours].per_second / timings[theirs].per_second:.2f}x")
        for label, ours, theirs in ANALYSIS
        if ours in timings and theirs in timings
    ]
    if analysis:
        targets += "\n\n" + markdown_table(["analysis ratio (not a target)", "ratio (medians)"], analysis)
    cpu_rows = []
    for row in bench.rows:
        medians = bench.cpu.medians(row.key)
        if medians is not None:
            cpu_rows.append((row.label, *(f"{v:.2f}" for v in medians)))
    if cpu_rows:
        targets += "\n\nCPU per event over the timed part of each consume call (medians of the calls):\n\n"
        targets += markdown_table(["contender", "client CPU µs/event", "Redis CPU µs/event", "wall µs/event"], cpu_rows)
    packages = ["redis", "hiredis", "msgspec", "anyio", "faststream", "pydantic", "psutil"]
    sizes = (
        f"payload {len(payload_bytes())} bytes, envelope {len(envelope_bytes())} bytes, "
        f"workflow entry {sum(len(k) + len(v) for k, v in workflow_fields().items())} bytes of fields and values"
    )
    head = [
        *section_head(packages, load, where="; Redis 7.0 on 127.0.0.1, same machine"),
        "",
        f"Event: {EVENT_TYPE}, {sizes}. Every XADD trims with `MAXLEN ~ {bench.target.max_len}`. "
        f"Median over {rounds} interleaved rounds (min-max), each round at least the configured time.",
    ]
    notes = [f"- {note}" for note in bench.notes]
    body = "\n".join([*head, "", table, "", targets, "", *notes])
    return table + "\n\n" + targets + "\n" + "\n".join(notes), body


def figures(timings: dict[str, Timing]) -> dict[str, dict[str, float]]:
    """Events/s (median) per contender and every target and analysis ratio, for ``--json``."""
    ratios = {
        label: timings[ours].per_second / timings[theirs].per_second
        for label, ours, theirs, *_ in (*TARGETS, *ANALYSIS)
        if ours in timings and theirs in timings
    }
    return {"per_second": {k: t.per_second for k, t in timings.items()}, "ratios": ratios}


async def amain(args: argparse.Namespace) -> int:
    sizes = replace(QUICK if args.quick else Sizes())
    if args.consume_events:
        sizes.consume = args.consume_events
    if args.sequential:
        sizes.sequential = args.sequential
        sizes.per_caller = max(1, args.sequential // 10)
    rounds = args.rounds or (2 if args.quick else 5)
    min_round_s = args.min_round_s if args.min_round_s is not None else (0.05 if args.quick else 0.5)
    faststream = _faststream_available() and not args.no_faststream
    keys = set(args.keys.split(",")) if args.keys else None
    bench = Bench(Target(url=args.url), sizes, faststream=faststream, keys=keys)
    if not faststream:
        bench.notes.append("FastStream rows skipped: install the bench extra (`pip install -e '.[bench]'`)")
    load = load_average()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    publish = args.only in (None, "publish")
    consume = args.only in (None, "consume")
    timings = {
        t.name: t for t in await bench.run(rounds=rounds, min_round_s=min_round_s, publish=publish, consume=consume)
    }
    console, body = report(bench, timings, rounds, load)
    print(console)
    if args.json:
        await anyio.Path(args.json).write_bytes(msgspec.json.encode(figures(timings)))
    if not (args.no_write or args.quick):
        write_section(HEADING, body)
    if args.memory:
        import bench_memory

        return await bench_memory.amain(
            bench_memory.parse_args(["--url", args.url, *(["--no-write"] if args.no_write else [])])
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 short rounds, no RESULTS.md update")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per contender (default 5, quick 2)")
    parser.add_argument("--min-round-s", type=float, help="measured seconds per round (default 0.5, quick 0.05)")
    parser.add_argument("--consume-events", type=int, default=0, help="entries per consume call (default 100,000)")
    parser.add_argument("--sequential", type=int, default=0, help="events per one-at-a-time call (default 300)")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11", help="Redis database of the run (own db)")
    parser.add_argument("--only", choices=("publish", "consume"), help="run only one half")
    parser.add_argument("--no-faststream", action="store_true", help="skip the FastStream rows")
    parser.add_argument("--memory", action="store_true", help="also run the 1,000,000-event memory benchmark")
    parser.add_argument(
        "--keys", metavar="KEY,...", help="run only these contenders (e.g. consume1000,consume1000-metrics)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write events/s and the ratios as JSON to FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, print the table, write the RESULTS.md section."""
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
