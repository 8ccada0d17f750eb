"""Where the time goes on the publish and consume paths: py-spy samples, by stage and by layer.

Three paths, a few seconds each, sampled by ``py-spy record --idle --nonblocking`` attached to
this process (bench extra; it samples from outside without pausing it, so the code runs at full
speed; only the innermost frame of a sample is used, since the parent chain can be torn):

- ``publish_many``, batches of 1000, ``global`` (2 XADDs per event);
- 64 concurrent ``await bus.publish(..., batch=True)`` callers, ``global``;
- the consume loop, COUNT 1000, no-op handler (each round prefills 20,000 entries with one
  packed round trip per 5,000, which shows as its own row).

For each path: self time (innermost frame, C calls included) grouped by stage and by layer
(module: validation in ``schemas``/msgspec, each ``bus`` module, redis-py, anyio, the asyncio
loop, waiting in ``select``), and the top functions by self time.

Run: ``python benchmarks/profile_paths.py`` (``--seconds S``, ``--no-write``, ``--keep DIR``
keeps py-spy's raw collapsed stacks, for a flame graph).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
from _harness import command_line, format_load, load_average, machine_line, markdown_table, write_section
from _workload import EVENT_TYPE, PAYLOAD, Target, envelope_bytes, prefill_command

from bus import CHANNEL_GLOBAL, EventBus
from bus.wire import read_replies

HEADING = "Profile (where the time goes)"

LAYERS: tuple[tuple[str, str], ...] = (
    ("schemas/", "validation and envelopes (schemas/, msgspec)"),
    ("<checks of", "validation and envelopes (schemas/, msgspec)"),
    ("bus/_codec.py", "bus._codec (envelope, RESP packing)"),
    ("bus/publish/", "bus.publish (prepare, write, outcomes)"),
    ("bus/_batch.py", "bus._batch (auto-batching)"),
    ("bus/wire/_hiredis.py", "bus.wire (reply reading)"),
    ("bus/_bus.py", "bus._bus (EventBus API)"),
    ("bus/consume/", "bus.consume (reader, dispatch, workers, acker)"),
    ("bus/consume/_markers.py", "bus.consume._markers (marker lookup)"),
    ("bus/", "bus (other modules)"),
    ("redis/", "redis-py (commands, connections, parsing)"),
    ("anyio/", "anyio (cancel scopes, events, streams)"),
    ("tenacity/", "tenacity (retry wrappers)"),
    ("selectors.py", "idle: waiting for Redis (select)"),
    ("asyncio/", "asyncio loop, tasks, transports"),
    ("profile_paths.py", "benchmark driver"),
    ("_workload.py", "benchmark driver"),
)

#: Stages, each a set of (function, file needle) rules matched against the innermost Python
#: frame of a sample (its self time, C calls included). Leaf frames are what py-spy reads
#: reliably without pausing the process; the parent chain of a sample can be torn.
Stage = tuple[str, tuple[tuple[str, str], ...]]


def _in(needle: str, *functions: str) -> tuple[tuple[str, str], ...]:
    """Rules for these functions of one file (every function of it when none is named)."""
    return tuple((f, needle) for f in functions) if functions else (("", needle),)


PUBLISH_STAGES: tuple[Stage, ...] = (
    ("validation (Registry.validate/decode_payload, msgspec)", _in("schemas/") + _in("<checks of")),
    ("ids and timestamps (new_event_id, now_iso)", _in("bus/_codec.py", "new_event_id", "now_iso")),
    ("envelope, workflow entry, RESP packing", _in("bus/_codec.py") + _in("bus/wire/_resp.py", "header", "bulk")),
    (
        "Preparer.prepare itself (checks, copies, PreparedEvent)",
        _in("bus/publish/_prepare.py", "prepare", "_channels", "<listcomp>", "__init__", "stream") + _in("bus/_bus.py"),
    ),
    ("write: round trip and results (Publisher._exchange, ...)", _in("bus/publish/_writer.py") + _in("bus/wire/")),
    ("auto-batching (bus._batch)", _in("bus/_batch.py")),
    ("redis-py (connection, reply parsing)", _in("redis/")),
    ("asyncio/anyio: tasks, futures, events, transports", _in("asyncio/") + _in("anyio/")),
    ("idle: waiting for Redis (select)", _in("selectors.py", "select")),
)
CONSUME_STAGES: tuple[Stage, ...] = (
    ("validation: envelope + payload (decode_bus_event, decode_payload)", _in("schemas/") + _in("<checks of")),
    (
        "reading: XREADGROUP and its reply parsing (redis-py parsers)",
        _in("redis/_parsers/") + _in("bus/consume/_reading.py") + _in("bus/consume/_retry.py") + _in("bus/wire/"),
    ),
    ("commands: packing and sending (redis-py)", _in("redis/")),
    (
        "dispatch: entries, deliveries, marker lookup",
        _in("bus/consume/_dispatch.py")
        + _in("bus/consume/_entry.py")
        + _in("bus/consume/_markers.py")
        + _in("bus/_tenant.py")
        + _in("bus/consume/_delivery.py")
        + _in("<string>"),
    ),
    ("workers: hand-off and handler call", _in("bus/consume/_workers.py") + _in("anyio/streams/")),
    ("acker: XACK + markers (AckBuffer.flush)", _in("bus/consume/_acker.py")),
    ("bus.consume (other)", _in("bus/consume/")),
    ("asyncio/anyio: tasks, futures, events, transports", _in("asyncio/") + _in("anyio/")),
    ("benchmark prefill", _in("profile_paths.py") + _in("_workload.py")),
    ("idle: waiting for Redis (select)", _in("selectors.py", "select")),
)


def _parse_frame(text: str) -> tuple[str, str]:
    """``Class.function (file:line)`` -> (qualified function, file)."""
    name, _, rest = text.partition(" (")
    return name, rest.rsplit(":", 1)[0]


def _stage_of(name: str, path: str, stages: tuple[Stage, ...]) -> str:
    short = name.rsplit(".", 1)[-1]
    for label, rules in stages:
        for function, needle in rules:
            if (not function or short == function) and needle in path:
                return label
    return "other (interpreter, stdlib)"


def _layer(path: str) -> str:
    for needle, name in LAYERS:
        if needle in path:
            return name
    return "other (interpreter, stdlib)"


def analyse(raw: str, stages: tuple[Stage, ...]) -> dict[str, Any]:
    """Sample counts per stage (inclusive), per layer and per function (self)."""
    total = 0
    stage_counts: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse_frame(f) for f in stack.split(";")]
        total += count
        name, path = frames[-1]
        stage_counts[_stage_of(name, path, stages)] += count
        layers[_layer(path)] += count
        functions[f"{name} ({path})"] += count
    return {"total": total, "stages": stage_counts, "layers": layers, "functions": functions}


def _tables(name: str, events: int, elapsed: float, found: dict[str, Any], stages: Any) -> str:
    total = found["total"] or 1
    us = elapsed * 1e6 / max(events, 1)

    def row(label: str, count: int) -> tuple[str, str, str]:
        return (label.replace("  ", "&nbsp;&nbsp;"), f"{100 * count / total:.1f}%", f"{us * count / total:.2f}")

    stage_rows = [row(label, c) for label, c in found["stages"].most_common() if c / total >= 0.005]
    layer_rows = [row(label, c) for label, c in found["layers"].most_common() if c / total >= 0.005]
    function_rows = [(f"`{label}`", f"{100 * c / total:.1f}%") for label, c in found["functions"].most_common(12)]
    return "\n".join(
        [
            f"### {name}",
            "",
            f"{events:,} events in {elapsed:.2f} s while sampled ({events / elapsed:,.0f} events/s, "
            f"{us:.1f} µs per event), {found['total']:,} samples.",
            "",
            markdown_table(["stage (self time of the innermost frame)", "share", "µs per event"], stage_rows),
            "",
            markdown_table(["layer (self time)", "share", "µs per event"], layer_rows),
            "",
            markdown_table(["function (self time)", "share"], function_rows),
        ]
    )


def _py_spy() -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return spy


def _keep(out: Path, keep: Path | None, name: str) -> str:
    raw = out.read_text()
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        (keep / (name.split(",")[0].replace(" ", "_") + ".txt")).write_text(raw)
    return raw


async def _profile(name: str, run: Callable[[], Awaitable[int]], seconds: float, stages: Any, keep: Path | None) -> str:
    spy = _py_spy()
    await run()  # warm up
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        proc = subprocess.Popen(  # noqa: ASYNC220 - it must run beside this loop, which it samples
            [
                spy,
                "record",
                "--pid",
                str(os.getpid()),
                "--duration",
                str(int(seconds)),
                "--rate",
                "1000",
                "--format",
                "raw",
                "--idle",
                "--nonblocking",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        await asyncio.sleep(0.3)  # let py-spy attach
        events = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while proc.poll() is None:
            events += await run()
        elapsed = loop.time() - start
        _, err = proc.communicate()
        if not out.exists():
            raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')}")
        raw = _keep(out, keep, name)
    return _tables(name, events, elapsed, analyse(raw, stages), stages)


async def amain(args: argparse.Namespace) -> int:
    target = Target(url=args.url)
    await target.check_free()
    keep = Path(args.keep) if args.keep else None
    client = target.client()
    bus = EventBus(target.settings())
    results = []
    load = load_average()
    try:
        await bus.connect()
        items = [(EVENT_TYPE, PAYLOAD)] * 1000

        async def many() -> int:
            await bus.publish_many(items, channel=CHANNEL_GLOBAL)
            return len(items)

        async def caller() -> None:
            for _ in range(20):
                await bus.publish(EVENT_TYPE, PAYLOAD, batch=True)

        async def concurrent() -> int:
            await asyncio.gather(*(caller() for _ in range(64)))
            return 64 * 20

        if args.only in (None, "publish"):
            results.append(
                await _profile("publish_many, batches of 1000, 2 XADD/event", many, args.seconds, PUBLISH_STAGES, keep)
            )
            results.append(
                await _profile(
                    "64 concurrent publish(batch=True), 2 XADD/event", concurrent, args.seconds, PUBLISH_STAGES, keep
                )
            )
        if args.only == "publish":
            return _finish(args, results, load)

        channel = "profile-consume"
        stream = target.stream(channel)
        consumer_bus = EventBus(target.settings(batch_size=1000, block_ms=1000))
        await consumer_bus.connect()

        async def noop(delivery: Any) -> None:
            return None

        consumer_bus.subscribe(EVENT_TYPE, noop, channel=channel, subscriber_id="bench-noop")
        n = 20_000
        pool = client.connection_pool
        async with anyio.create_task_group() as tg:
            await tg.start(consumer_bus.run)
            consumer = consumer_bus.consumer
            assert consumer is not None
            # Built once: the same envelopes are written every round, and the processed markers
            # are deleted after each round so that the loop does not skip them as duplicates.
            envelopes = [envelope_bytes() for _ in range(n)]
            blobs = [(prefill_command(stream, envelopes[i : i + 5000], channel), 5000) for i in range(0, n, 5000)]

            async def prefill() -> None:
                conn = await pool.get_connection()
                try:
                    for blob, count in blobs:
                        await conn.send_packed_command(blob, check_health=False)
                        await read_replies(conn, count, 60.0)
                finally:
                    await pool.release(conn)

            async def consume() -> int:
                # The loop reads as soon as entries arrive; the prefill (one packed round trip per
                # 5,000 entries) is part of the sample and shows as its own row.
                target_count = consumer.stats.handled + n
                await prefill()
                await consumer.wait_until(lambda s: s.handled >= target_count)
                await client.xtrim(stream, maxlen=0)
                await client.delete(*target.marker_keys())
                return n

            results.append(
                await _profile("consume loop, COUNT 1000, no-op handler", consume, args.seconds, CONSUME_STAGES, keep)
            )
            consumer_bus.stop()
        await consumer_bus.aclose()
    finally:
        await bus.aclose()
        await client.aclose()
        await target.cleanup()
    return _finish(args, results, load)


def _finish(args: argparse.Namespace, sections: list[str], load: tuple[float, float, float]) -> int:
    print("\n\n".join(sections))
    if not args.no_write:
        body = "\n".join(
            [
                f"Command: `{command_line()}`",
                "",
                machine_line(["redis", "hiredis", "msgspec", "anyio", "py-spy"]),
                "",
                f"Load average at the start: {format_load(load)}. py-spy samples the "
                "process 1000 times a second from outside (idle samples included: time waiting for Redis "
                "shows as `select`). µs per event = share x wall time per event while sampled.",
                "",
                "\n\n".join(sections),
            ]
        )
        write_section(HEADING, body)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="sampled seconds per path (default 3)")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11", help="Redis database of the run (own db)")
    parser.add_argument("--only", choices=("publish", "consume"), help="profile only one side")
    parser.add_argument("--keep", help="keep py-spy's raw collapsed stacks per path in this directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Profile the three paths and write the RESULTS.md section."""
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
