"""Does pipelining auto-batched groups help 64 callers? An experiment on the auto-batcher.

64 concurrent callers of ``bus.publish(..., batch=True)`` (2 XADDs per event, 20 publishes each)
form one group per tick, so each group's round trip overlaps nothing: the callers wait for it.
The auto-batcher already writes a group that reaches its ``max_batch`` at once and lets the
tick's later callers form the next group while it is in flight (up to ``max_in_flight`` groups
at once, each on its own pool connection). Capping ``max_batch`` at 32 so makes the 64 callers
two pipelined groups: this compares that with today's cap (1000, one group), interleaved round
by round, and reports how much of a cycle the round trip takes (the ceiling of any overlap).

The cap is set on the bus's private batcher: an experiment, not a setting. Since session 4 the
batcher splits such a tick in two pipelined groups by itself (half the last tick's fan-in), so
"today" (max_batch 1000) is that adaptive split, and a cap of 32 is compared with it.

Run: ``python benchmarks/bench_batch_split.py [--rounds 7] [--caps 1000,32] [--no-write]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
from _harness import ainterleaved, load_average, markdown_table, median_range, section_head, write_section
from _workload import EVENT_TYPE, PAYLOAD, Target

from bus import EventBus

HEADING = "Auto-batched groups pipelined or not (bench_batch_split.py)"
CALLERS = 64
PER_CALLER = 20


async def amain(args: argparse.Namespace) -> int:
    caps = [int(c) for c in args.caps.split(",")]
    load = load_average()
    target = Target(url=args.url)
    await target.check_free()
    try:
        bus = EventBus(target.settings())
        async with bus:
            batcher: Any = bus._batcher  # the experiment's knob (private)
            writer: Any = bus._publisher.writer
            in_trip = [0.0]
            round_trip = writer._round_trip

            async def timed_round_trip(*a: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await round_trip(*a)
                finally:
                    in_trip[0] += time.perf_counter() - started

            writer._round_trip = timed_round_trip

            async def caller() -> None:
                for _ in range(PER_CALLER):
                    await bus.publish(EVENT_TYPE, PAYLOAD, channel="global", batch=True)

            async def measure(cap: int) -> tuple[float, float]:
                """Events/s of one round at ``cap``, and the share of it spent in the round trip."""
                batcher._max_batch = cap
                in_trip[0] = 0.0
                started = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for _ in range(CALLERS):
                        tg.start_soon(caller)
                elapsed = time.perf_counter() - started
                return CALLERS * PER_CALLER / elapsed, in_trip[0] / elapsed

            results = await ainterleaved(args.rounds, caps, measure, warmup=True)
    finally:
        await target.cleanup()
    rates = {c: [rate for rate, _ in r] for c, r in results.items()}
    share = [s for _, s in results[caps[0]]]
    base = median(rates[caps[0]])
    rows = [
        (f"max_batch {c}" + (" (today)" if c == caps[0] else ""), median_range(v), f"{median(v) / base:.2f}x")
        for c, v in rates.items()
    ]
    table = markdown_table(
        [f"{CALLERS} callers x {PER_CALLER} publishes", "events/s median (min-max)", "vs today"], rows
    )
    print(table)
    print(f"round trip share of a cycle at max_batch {caps[0]}: {median(share):.2f}")
    body = "\n".join(
        [
            *section_head(["redis", "hiredis", "msgspec", "anyio"], load, where="; Redis on 127.0.0.1, same machine"),
            "",
            f"{args.rounds} interleaved rounds (after one warm-up round); 2 XADDs per event (global channel).",
            "",
            table,
            "",
            f"Time inside the write's round trip (send, wait, parse replies) at max_batch {caps[0]}: "
            f"{median(share):.2f} of the wall time (median of rounds).",
        ]
    )
    if not args.no_write:
        write_section(HEADING, body)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds per cap (default 7)")
    parser.add_argument("--caps", default="1000,32", help="max_batch values, today's first (default 1000,32)")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11", help="Redis database of the run (own db)")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    return anyio.run(amain, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
