"""Memory: RSS of one process that publishes and consumes 1,000,000 events with trimming on.

One bus publishes TICKET_UPDATED on ``global`` (workflow entry + per-type entry, every XADD with
``MAXLEN ~ 1000``) with ``publish_many`` in batches, while the consume loop of a second bus in
the same process handles the per-type stream with a no-op handler (COUNT 1000). The publisher
keeps at most ``--window`` events unconsumed, well under MAXLEN, so trimming never drops an
unread entry (the run checks ``trimmed_unread == 0`` and that every event was handled).

RSS (psutil, else /proc/self/statm) is sampled before the first publish and after every
100,000 events handled. Target: RSS after 1,000,000 within 10% of RSS after the first 100,000.
The run deletes the processed-marker set every 100,000 events (it lives in Redis, not in this
process, and would otherwise grow the shared server by ~100 MB).

Run: ``python benchmarks/bench_memory.py`` (``--events N``, ``--no-write``); also
``python benchmarks/run_all.py --memory``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
from _harness import command_line, format_load, load_average, machine_line, markdown_table, rss_bytes, write_section
from _workload import EVENT_TYPE, PAYLOAD, Target

from bus import CHANNEL_GLOBAL, EventBus

HEADING = "Memory (RSS while publishing and consuming 1,000,000 events)"
TARGET = 0.10
CHECKPOINT = 100_000


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


async def amain(args: argparse.Namespace) -> int:
    target = Target(url=args.url)
    await target.check_free()
    total, batch, window = args.events, args.batch, args.window
    load = load_average()
    publisher = EventBus(target.settings())
    consumer_bus = EventBus(target.settings(batch_size=1000, block_ms=1000))
    client = target.client()
    samples: list[tuple[int, int, float]] = []  # (events handled, rss, seconds)

    async def noop(delivery: Any) -> None:
        return None

    consumer_bus.subscribe(EVENT_TYPE, noop, channel=CHANNEL_GLOBAL, subscriber_id="bench-memory")
    try:
        await publisher.connect()
        await consumer_bus.connect()
        async with anyio.create_task_group() as tg:
            await tg.start(consumer_bus.run)
            consumer = consumer_bus.consumer
            assert consumer is not None
            base = consumer.stats.handled
            gc.collect()
            samples.append((0, rss_bytes(), 0.0))
            start = time.perf_counter()
            items = [(EVENT_TYPE, PAYLOAD)] * batch
            published = 0
            next_checkpoint = CHECKPOINT
            while published < total:
                await publisher.publish_many(items, channel=CHANNEL_GLOBAL)
                published += batch
                # Backpressure: never more than ``window`` events unread (MAXLEN ~ 1000 keeps >= 1000).
                await consumer.wait_until(lambda s, p=published: s.handled - base >= p - window)
                if published >= next_checkpoint:
                    await consumer.wait_until(lambda s, p=published: s.handled - base >= p)
                    await client.delete(*target.marker_keys())
                    gc.collect()
                    samples.append((published, rss_bytes(), time.perf_counter() - start))
                    print(f"  {published:>9,} events: RSS {_mib(samples[-1][1])}", file=sys.stderr)
                    next_checkpoint += CHECKPOINT
            stats = consumer.stats
            consumer_bus.stop()
    finally:
        await consumer_bus.aclose()
        await publisher.aclose()
        await client.aclose()
        await target.cleanup()
    elapsed = samples[-1][2]
    handled = stats.handled - base
    first = next((rss for n, rss, _ in samples if n >= CHECKPOINT), samples[-1][1])
    last = samples[-1][1]
    growth = (last - first) / first
    verdict = "met" if abs(growth) <= TARGET and stats.trimmed_unread == 0 and handled >= total else "NOT met"
    rows = [(f"{n:,}", _mib(rss), f"{(rss - first) / first:+.1%}" if n else "-", f"{t:.1f}") for n, rss, t in samples]
    table = markdown_table(["events published and handled", "RSS", "vs after 100,000", "seconds"], rows)
    summary = (
        f"RSS after {samples[-1][0]:,} events: {_mib(last)}, {growth:+.1%} vs after the first {CHECKPOINT:,} "
        f"({_mib(first)}); target within {TARGET:.0%}: **{verdict}**. Handled {handled:,} of {total:,}, "
        f"trimmed before read: {stats.trimmed_unread}, {total / elapsed:,.0f} events/s end to end "
        f"(publish and consume in one process)."
    )
    print(table)
    print(summary)
    if not args.no_write:
        body = "\n".join(
            [
                f"Command: `{command_line()}`",
                "",
                machine_line(["redis", "hiredis", "msgspec", "anyio", "psutil"]),
                "",
                f"Load average at the start: {format_load(load)}. One process: "
                f"`publish_many` of {batch} TICKET_UPDATED on `global` (2 XADDs each, `MAXLEN ~ 1000`) and the "
                f"consume loop (COUNT 1000, no-op handler), at most {window} events unread. RSS before the "
                "first publish and every 100,000 events (after `gc.collect()`).",
                "",
                table,
                "",
                summary,
            ]
        )
        write_section(HEADING, body)
    return 0 if verdict == "met" else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to publish and consume")
    parser.add_argument("--batch", type=int, default=250, help="publish_many batch size (default 250)")
    parser.add_argument("--window", type=int, default=500, help="most events left unread (default 500)")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11", help="Redis database of the run (own db)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the memory benchmark and write its RESULTS.md section."""
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
