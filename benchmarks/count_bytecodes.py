"""Python bytecodes executed per event, by function, over one consume or publish call: a count, not a timing.

Wall-clock ratios on a shared 2-core machine move by 15-20% between runs, so a change worth a few
percent cannot be seen in them. The number of bytecodes the interpreter executes per event does not
depend on the machine's load: this script runs one of ``run_all.py``'s consume or publish
contenders once to warm up, then once more with ``sys.settrace`` counting every opcode (``f_trace_opcodes``), and
prints bytecodes per event in total and by function. Work done in C (msgspec, hiredis, the C
checks) is not counted; the prefill of the stream is (``prefill_command``, ``bulk``,
``_drain_hiredis`` reading its replies), the same for every contender.

Run: ``python benchmarks/count_bytecodes.py consume1000`` (or ``raw-consume1000-full``,
``raw-consume1000``; ``--events N``, ``--top K``, ``--url``); publish: ``conc64-2`` (64 auto-batched
callers), ``many1000-2`` (``publish_many`` of 1000), ``seq-2``... Tracing makes the call about 30x
slower; the figures are the same on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from _workload import Target
from run_all import Bench, Sizes

from bus import EventBus

CONSUME_KEYS = ("consume1000", "raw-consume1000", "raw-consume1000-full", "raw-consume1000-markers")
#: Publish contenders: ours only (each call's event count comes from its return value).
PUBLISH_KEYS = ("conc64-2", "many1000-2", "seq-2", "conc64-1", "many1000-1")
KEYS = CONSUME_KEYS + PUBLISH_KEYS


class OpcodeCounter:
    """Counts the opcodes executed per code object while installed (``sys.settrace``)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call":  # also each resumption of a coroutine
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            return self._local
        return None

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            code = frame.f_code
            self.counts[(code.co_filename, code.co_qualname)] += 1
        return self._local

    def __enter__(self) -> OpcodeCounter:
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)


async def count(key: str, events: int, url: str) -> tuple[OpcodeCounter, int]:
    """One warm-up call of contender ``key``, then one counted call; the counter and its events."""
    target = Target(url=url)
    bench = Bench(target, Sizes(consume=events), faststream=False, keys={key})
    client = target.client()
    bench._cleanups = []
    counter = OpcodeCounter()
    bus = EventBus(target.settings()) if key in PUBLISH_KEYS else None
    try:
        if bus is not None:
            await bus.connect()
            bench.ours_publish(bus)
        else:
            await bench.ours_consume(client, 1000)
            for validate in ("", "full", "markers"):
                await bench.raw_consume(client, 1000, validate=validate)
        run = bench.contenders[key]
        await run()
        with counter:
            done = await run()
    finally:
        if bus is not None:
            await bus.aclose()
        for consumer_bus in bench._cleanups:
            await consumer_bus.aclose()
        await client.aclose()
        await target.cleanup()
    return counter, done if key in PUBLISH_KEYS else events


def report(key: str, counter: OpcodeCounter, events: int, top: int) -> str:
    total = sum(counter.counts.values())
    lines = [f"{key}: {total / events:,.1f} bytecodes per event ({events:,} events)"]
    for (filename, name), n in counter.counts.most_common(top):
        where = "/".join(Path(filename).parts[-2:])
        lines.append(f"{n / events:9.2f}  {name}  ({where})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("key", choices=KEYS, help="a consume or publish contender of run_all.py")
    parser.add_argument("--events", type=int, default=20_000, help="entries per consume call (default 20,000)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11", help="Redis database of the run (own db)")
    args = parser.parse_args(argv)
    counter, events = asyncio.run(count(args.key, args.events, args.url))
    print(report(args.key, counter, events, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
