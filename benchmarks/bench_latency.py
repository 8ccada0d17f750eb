"""Latency of single events at low load: publish one event every ``1/rate`` seconds, measure from
just before the publish to the handler, for two consumer read counts, alternating.

At 10 events/s every read returns one entry, so the read count should not matter; this checks
that a larger default COUNT costs nothing at low load. Reported: p50, p90, p99 per setting (ms).

With ``--delay-ms D`` both buses (consumer and publisher) talk to Redis through a delaying proxy
(:mod:`_delay_proxy`, D ms each way, a round trip of 2·D), which shows how many round trips one
event costs on a slow link; the table then also gives p50 in round trips.

Run: ``python benchmarks/bench_latency.py [--rate 10] [--events 100] [--alternations 3]
[--counts 10,250] [--delay-ms 0] [--warmup 0] [--url redis://127.0.0.1:6379/11] [--no-write]``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from statistics import quantiles
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
from _delay_proxy import DelayProxy
from _harness import load_average, markdown_table, section_head, write_section
from _workload import EVENT_TYPE, PAYLOAD, Target

from bus import EventBus

HEADING = "Latency of single events at low load (bench_latency.py)"
HEADING_DELAYED = "Latency of single events on a slow link (bench_latency.py --delay-ms)"


async def one_run(target: Target, count: int, rate: float, events: int, warmup: int = 0) -> list[float]:
    """Latencies (s) of ``events`` events published at ``rate``/s to a consumer reading COUNT ``count``,
    after ``warmup`` untimed events (handled before the timed ones start: the connections of the
    lookup, the acker and the publisher are then open)."""
    channel = f"latency-{count}"
    sent: dict[str, float] = {}
    got: list[float] = []
    done = anyio.Event()
    warm: set[str] = set()
    warmed = anyio.Event()
    consumer = EventBus(target.settings(batch_size=count))
    producer = EventBus(target.settings())

    async def handler(delivery: Any) -> None:
        if delivery.event_id in warm:
            warm.discard(delivery.event_id)
            if not warm:
                warmed.set()
            return
        started = sent.get(delivery.event_id)
        if started is not None:
            got.append(time.perf_counter() - started)
            if len(got) == events:
                done.set()

    consumer.subscribe(EVENT_TYPE, handler, channel=channel, subscriber_id="latency")
    async with consumer, producer, anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        if warmup:
            for _ in range(warmup):
                prepared = producer.prepare(EVENT_TYPE, PAYLOAD, channel=channel)
                warm.add(prepared.event_id)
                await producer.write((prepared,))
                await anyio.sleep(1 / rate)
            with anyio.fail_after(60):
                await warmed.wait()
        for _ in range(events):
            prepared = producer.prepare(EVENT_TYPE, PAYLOAD, channel=channel)
            sent[prepared.event_id] = time.perf_counter()
            await producer.write((prepared,))
            await anyio.sleep(1 / rate)
        with anyio.fail_after(60):
            await done.wait()
        consumer.stop()
    return got


def _ms(values: list[float]) -> tuple[str, str, str]:
    q = quantiles(values, n=100)
    return (f"{q[49] * 1000:.2f}", f"{q[89] * 1000:.2f}", f"{q[98] * 1000:.2f}")


async def amain(args: argparse.Namespace) -> int:
    counts = [int(c) for c in args.counts.split(",")]
    load = load_average()
    target = Target(url=args.url)
    await target.check_free()
    results: dict[int, list[float]] = {c: [] for c in counts}
    rtt_s = 2 * args.delay_ms / 1000
    try:
        async with contextlib.AsyncExitStack() as stack:
            bus_target = target
            if args.delay_ms > 0:
                url = urlsplit(args.url)
                proxy = await stack.enter_async_context(
                    DelayProxy(url.hostname or "127.0.0.1", url.port or 6379, args.delay_ms / 1000)
                )
                proxied = url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
                bus_target = Target(url=proxied, prefix=target.prefix)
            for i in range(args.alternations):
                for count in counts:
                    print(f"round {i + 1}/{args.alternations}: COUNT {count}", file=sys.stderr)
                    results[count] += await one_run(bus_target, count, args.rate, args.events, args.warmup)
    finally:
        await target.cleanup()
    rows = [(f"COUNT {c}", str(len(v)), *_ms(v)) for c, v in results.items()]
    head = ["consumer read count", "events", "p50 ms", "p90 ms", "p99 ms"]
    if rtt_s:
        head.append("p50 in round trips")
        rows = [(*row, f"{quantiles(v, n=100)[49] / rtt_s:.2f}") for row, v in zip(rows, results.values(), strict=True)]
    table = markdown_table(head, rows)
    print(table)
    body = "\n".join(
        [
            *section_head(["redis", "hiredis", "msgspec", "anyio"], load, where="; Redis on 127.0.0.1"),
            "",
            f"{args.events} events at {args.rate:g}/s per run"
            + (f" after {args.warmup} untimed warm-up events" if args.warmup else "")
            + f", {args.alternations} alternating runs per read count; "
            "latency from just before the publish's write to the handler's call"
            + (
                f"; both buses behind a delaying proxy, {args.delay_ms:g} ms each way "
                f"({2 * args.delay_ms:g} ms round trip)."
                if args.delay_ms > 0
                else "."
            ),
            "",
            table,
        ]
    )
    if not args.no_write:
        write_section(HEADING_DELAYED if args.delay_ms > 0 else HEADING, body)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second (default 10)")
    parser.add_argument("--events", type=int, default=100, help="events per run (default 100)")
    parser.add_argument("--alternations", type=int, default=3, help="runs per read count, alternating")
    parser.add_argument("--counts", default="10,250", help="read counts to compare (default 10,250)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed events handled first in each run (default 0)")
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="one-way delay of a proxy between the buses and Redis (default 0: none)",
    )
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11", help="Redis database of the run (own db)")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    return anyio.run(amain, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
