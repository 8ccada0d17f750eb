"""What Prometheus metrics and OpenTelemetry tracing cost the consume loop: off vs on, in one run.

Each measurement is one fresh process (``--one VARIANT``): it prefills a stream untimed, runs the
bus's consume loop (COUNT 1000, no-op handler) once to warm up, then consumes ``--events``
entries and reports the wall time and the process's CPU time. The variants alternate round by
round, so load changes on the machine hit all alike:

- ``off``: no ``metrics=``, no ``tracing=`` (the default);
- ``metrics``: ``EventBus(metrics=BusMetrics())``;
- ``tracing``: ``EventBus(tracing=Tracing(TracerProvider()))``, spans recorded, none exported
  (the otel extra; informative, not a budget);
- ``off@REV`` with ``--base REV``: ``off`` on another revision, checked out into a temporary git
  worktree (what the tracing-off hooks cost against the code before them).

On a shared machine the wall-clock throughput swings with the other processes; the CPU time
per event of the consuming process is what the metrics or tracing code adds, so both are
reported, as medians with min-max. Run: ``python benchmarks/bench_metrics_cost.py [--rounds 9]
[--events 20000] [--variants off,metrics,tracing] [--base main] [--no-write]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import interleaved, load_average, markdown_table, median_range, section_head, write_section

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Metrics and tracing cost on the consume loop (bench_metrics_cost.py)"
SCRIPT = Path(__file__).resolve()


async def _one(variant: str, events: int, url: str) -> dict[str, float]:
    """One process's measurement: warm-up, then ``events`` entries consumed; wall and CPU seconds."""
    import anyio
    from _workload import EVENT_TYPE, Target, envelope_bytes, prefill_command

    from bus import EventBus
    from bus.wire import read_replies

    target = Target(url=url)
    extra: dict[str, Any] = {}
    if variant == "metrics":
        from bus.observability import BusMetrics

        extra["metrics"] = BusMetrics()
    elif variant == "tracing":
        from opentelemetry.sdk.trace import TracerProvider

        from bus.observability import Tracing

        extra["tracing"] = Tracing(TracerProvider())
    channel = "cost"
    stream = target.stream(channel)
    client = target.client()
    bus = EventBus(target.settings(block_ms=1000, batch_size=1000), **extra)

    async def noop(delivery: Any) -> None:
        return None

    bus.subscribe(EVENT_TYPE, noop, channel=channel, subscriber_id="bench-noop")

    async def consume(n: int) -> tuple[float, float]:
        envelopes = [envelope_bytes() for _ in range(n)]
        conn = await client.connection_pool.get_connection()
        try:
            for i in range(0, n, 5000):
                chunk = envelopes[i : i + 5000]
                await conn.send_packed_command(prefill_command(stream, chunk, channel), check_health=False)
                await read_replies(conn, len(chunk), 60.0)
        finally:
            await client.connection_pool.release(conn)
        target_handled = bus.stats.handled + n
        async with anyio.create_task_group() as tg:
            wall, cpu = time.perf_counter(), time.process_time()
            await tg.start(bus.run)
            consumer = bus.consumer
            assert consumer is not None
            await consumer.wait_until(lambda s: s.handled >= target_handled)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            bus.stop()
        await client.xtrim(stream, maxlen=0)
        await client.delete(*target.marker_keys())
        return wall, cpu

    try:
        await bus.connect()
        await consume(min(events, 5000))
        wall, cpu = await consume(events)
    finally:
        await bus.aclose()
        await client.aclose()
        await target.cleanup()
    import bus as library

    return {"wall_s": wall, "cpu_s": cpu, "events": events, "library": library.__file__ or ""}


def _metrics_work_ns(repeats: int = 9) -> float:
    """Median ns per handled entry of the metrics work alone: the acker's per-batch update of a
    1,000-entry flush (:meth:`AckBuffer._count`) plus the worker's two clock reads."""
    import random
    import timeit

    from bus.consume._acker import AckBuffer
    from bus.consume._entry import HANDLED, Entry
    from bus.consume._stats import StatsBoard
    from bus.observability import BusMetrics

    board = StatsBoard(None, BusMetrics(), "g")
    board.streams = {"s": ("TICKET_UPDATED", "global", "g")}
    acks = AckBuffer.__new__(AckBuffer)  # only its metrics update runs: no client needed
    acks.board = board
    now_ms = int(time.time() * 1000)
    batch = []
    for i in range(1000):  # read in id order, finished by 16 workers in a slightly shuffled order
        entry = Entry("s", b"%d-%d" % (now_ms - 40 + i // 25, i), None, 1)  # (no delivery: not read)
        entry.outcome, entry.took = HANDLED, random.expovariate(1 / 0.00003)
        batch.append(entry)
    for i in range(0, 1000, 16):
        chunk = batch[i : i + 16]
        random.shuffle(chunk)
        batch[i : i + 16] = chunk
    ids = [e.entry_id for e in batch]
    clock = time.perf_counter
    runs = []
    for _ in range(repeats):
        # CPU time, as the variants' figures (on a loaded machine wall time counts the waits too)
        cpu = time.process_time
        count = timeit.Timer(lambda: acks._count(batch, {"s": list(ids)}, True), timer=cpu).timeit(50) / 50 / 1000
        clocks = timeit.Timer("clock(); clock()", globals={"clock": clock}, timer=cpu).timeit(100_000) / 100_000
        runs.append((count + clocks) * 1e9)
    return median(runs)


def _measure(variant: str, tree: Path, events: int, url: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    name = variant.split("@")[0]
    cmd = [sys.executable, str(SCRIPT), "--one", name, "--events", str(events), "--url", url]
    out = subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert str(result.pop("library")).startswith(str(tree)), f"{variant} ran another tree's library: {result}"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--variants", default="off,metrics,tracing")
    parser.add_argument("--base", metavar="REV", help="also run 'off' on this revision (a temporary worktree)")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.one:
        import anyio

        print(json.dumps(anyio.run(_one, args.one, args.events, args.url)))
        return 0
    trees: dict[str, Path] = {v: ROOT for v in args.variants.split(",")}
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.base:
        tmp = tempfile.TemporaryDirectory()
        base = Path(tmp.name) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base], check=True)
        # The base revision's library with this revision's script and workload.
        trees[f"off@{args.base}"] = base
    load = load_average()
    try:
        results = interleaved(args.rounds, trees, lambda v: _measure(v, trees[v], args.events, args.url))
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
            tmp.cleanup()
    rows = []
    for variant, runs in results.items():
        rate = [r["events"] / r["wall_s"] for r in runs]
        cpu_us = [r["cpu_s"] * 1e6 / r["events"] for r in runs]
        rows.append((variant, median_range(rate), median_range(cpu_us, "{:.2f}")))
    table = markdown_table(["variant", "events/s, wall (median, min-max)", "CPU us/event (median, min-max)"], rows)

    def cpu(runs: list[dict[str, Any]], pick: Any) -> float:
        return float(pick(r["cpu_s"] / r["events"] for r in runs))

    def rate(runs: list[dict[str, Any]]) -> float:
        return float(median(r["events"] / r["wall_s"] for r in runs))

    ratios = []
    off = results.get("off")
    for variant, runs in results.items():
        if variant == "off" or off is None:
            continue
        if variant.startswith("off@"):  # this revision's cost relative to the base: base / this
            label, a, b = f"off (this revision) vs {variant}: the tracing-off hooks", runs, off
        else:
            label, a, b = f"{variant} on vs off", off, runs
        cells = [f"{cpu(a, median) / cpu(b, median):.3f}x", f"{cpu(a, min) / cpu(b, min):.3f}x"]
        ratios.append((label, *cells, f"{rate(b) / rate(a):.2f}x"))
    if off is not None:
        work = _metrics_work_ns()
        share = work / (cpu(off, median) * 1e9)
        ratios.append(
            (
                "metrics work alone per handled entry (acker update + clock reads), as a share of off's CPU/event",
                f"{work:.0f} ns = {share:.1%}",
                "-",
                "-",
            )
        )
    ratio_table = markdown_table(
        [
            "ratio (throughput, 1 - cost)",
            "by CPU time per event (medians)",
            "by CPU time per event (minima)",
            "by wall-clock events/s (medians)",
        ],
        ratios,
    )
    packages = ["redis", "hiredis", "msgspec", "anyio", "prometheus-client", "opentelemetry-sdk"]
    body = "\n".join(
        [
            *section_head(packages, load, where="; Redis on 127.0.0.1, same machine"),
            "",
            f"{args.events:,} entries per measurement (COUNT 1000, no-op handler), one fresh process each, "
            f"{args.rounds} rounds with the variants interleaved.",
            "",
            table,
            "",
            ratio_table,
        ]
    )
    print(table + "\n\n" + ratio_table)
    if not args.no_write:
        write_section(HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
