"""Consume throughput of ``bus run --processes 2`` vs ``--processes 1`` (real daemons, one stream).

Each round prefills one per-type stream with ``--events`` envelopes (untimed; the consumer group
exists from id 0), starts ``python -m bus run MODULE:service --processes P`` (a no-op handler at
every consume default, no metrics server), and times from the first read of any child until the
group has read every entry and has nothing pending (``XINFO GROUPS``: ``entries-read``, ``lag``,
``pending``, polled every 2 ms), so the processes' start-up is not counted; then SIGTERM. The
two settings alternate, ``--rounds`` times each.

Run: ``python benchmarks/bench_processes.py [--events 200000] [--rounds 3] [--url redis://127.0.0.1:6379/11]
[--no-write]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
from _harness import ainterleaved, load_average, markdown_table, median_range, section_head, write_section
from _workload import EVENT_TYPE, Target, envelope_bytes, prefill_command

from bus.wire import read_replies

HEADING = "Consume throughput of bus run --processes 2 vs 1 (bench_processes.py)"
ROOT = Path(__file__).resolve().parents[1]
CHANNEL = "procs"

APP = f"""
import anyio

async def noop(delivery):
    return None

class Service:
    name = "bench-noop"
    async def run(self, bus, *, task_status=anyio.TASK_STATUS_IGNORED):
        bus.subscribe({EVENT_TYPE!r}, noop, channel={CHANNEL!r}, subscriber_id="bench-noop")
        await bus.run(task_status=task_status)

service = Service()
"""


async def _group(client: Any, stream: str) -> dict[str, Any]:
    groups: Any = await client.xinfo_groups(stream)
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in groups[0].items()}


async def one_round(target: Target, processes: int, events: int, app_dir: str) -> float:
    """Seconds the group took to consume ``events`` prefilled entries with ``processes`` processes."""
    client = target.client()
    stream = target.stream(CHANNEL)
    settings = target.settings()
    try:
        await client.delete(stream, *target.marker_keys())
        await client.xgroup_create(stream, settings.consumer_group, "0", mkstream=True)
        pool = client.connection_pool
        conn = await pool.get_connection()
        try:
            for i in range(0, events, 5000):
                chunk = [envelope_bytes() for _ in range(min(5000, events - i))]
                await conn.send_packed_command(prefill_command(stream, chunk, CHANNEL), check_health=False)
                await read_replies(conn, len(chunk), 60.0)
        finally:
            await pool.release(conn)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BUS_"))}
        env.update(REDIS_URL=target.url, REDIS_PREFIX=target.prefix, PYTHONPATH=app_dir, BUS_LOG_LEVEL="warning")
        proc = await anyio.open_process(
            [sys.executable, "-m", "bus", "run", "benchapp:service", "--processes", str(processes)],
            cwd=ROOT,
            env=env,
            stdin=None,
            stdout=None,
            stderr=None,
        )
        try:
            with anyio.fail_after(300):
                while (await _group(client, stream))["entries-read"] in (None, 0):  # noqa: ASYNC110 - polls Redis
                    await anyio.sleep(0.002)
                started = time.perf_counter()
                while True:
                    info = await _group(client, stream)
                    if info["lag"] == 0 and info["pending"] == 0 and info["entries-read"] >= events:
                        break
                    await anyio.sleep(0.002)
                took = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(60):
                code = await proc.wait()
        if code != 0:
            raise SystemExit(f"bus run --processes {processes} exited {code}")
        return took
    finally:
        await client.delete(stream, *target.marker_keys())
        await client.aclose()


async def amain(args: argparse.Namespace) -> int:
    load = load_average()
    target = Target(url=args.url)
    await target.check_free()
    with tempfile.TemporaryDirectory() as app_dir:
        (Path(app_dir) / "benchapp.py").write_text(APP)

        async def measure(processes: int) -> float:
            took = await one_round(target, processes, args.events, app_dir)
            print(f"{processes} process(es): {args.events / took:,.0f} events/s", file=sys.stderr)
            return took

        try:
            times = await ainterleaved(args.rounds, (1, 2), measure)
        finally:
            await target.cleanup()
    rates = {p: [args.events / t for t in ts] for p, ts in times.items()}
    rows = [(f"`bus run --processes {p}`", median_range(r)) for p, r in rates.items()]
    table = markdown_table(["daemon", "events/s median (min-max)"], rows)
    ratio = median(rates[2]) / median(rates[1])
    print(table)
    print(f"ratio 2 vs 1 processes (medians): {ratio:.2f}x")
    body = "\n".join(
        [
            *section_head(
                ["redis", "hiredis", "msgspec", "anyio"], load, where="; Redis 7.0 on 127.0.0.1, same machine"
            ),
            "",
            f"{args.events:,} prefilled entries of one stream per round, a no-op handler at every consume default, "
            f"{args.rounds} alternating rounds per setting; timed from the first read to the last ack (start-up "
            "excluded). Redis itself and the benchmark's polling share the same 2 cores as the consumer processes. "
            "The machine is shared with other engineers' test runs today: the load averages above say how busy "
            "it was, and the min-max spread how much that moved the rounds.",
            "",
            table,
            "",
            f"Ratio 2 vs 1 processes (medians): **{ratio:.2f}x**.",
        ]
    )
    if not args.no_write:
        write_section(HEADING, body)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="entries per round (default 200,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per setting, alternating (default 3)")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11", help="Redis database of the run (own db)")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    return anyio.run(amain, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
