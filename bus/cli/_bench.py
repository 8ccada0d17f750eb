"""``bus bench``: run the throughput comparison of ``benchmarks/run_all.py`` (a source checkout).

``bus bench --quick`` is a short smoke run (small sizes, two short rounds, RESULTS.md untouched);
without it the full comparison runs and writes its section of ``benchmarks/RESULTS.md``. The
benchmarks are standalone scripts, not part of the installed package, so this command runs the
script of the checkout the package was installed from (``pip install -e '.[bench]'``), in a
child interpreter, and returns its exit code. The Redis is ``--url`` when given, else
``REDIS_URL``, else database 11 of the local Redis.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_URL", "bench_url", "register", "run_all_script"]

#: Where the benchmarks run without ``--url`` or ``REDIS_URL``: a database of their own.
DEFAULT_URL = "redis://127.0.0.1:6379/11"


def run_all_script() -> Path | None:
    """``benchmarks/run_all.py`` of the source checkout, or None when the package is not one."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "run_all.py"
    return script if script.is_file() else None


def bench_url(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str:
    """``--url`` when given, else ``REDIS_URL``, else :data:`DEFAULT_URL`."""
    env = os.environ if environ is None else environ
    url: str = args.url or env.get("REDIS_URL") or DEFAULT_URL
    return url


def _bench(args: argparse.Namespace) -> int:
    script = run_all_script()
    if script is None:
        print(
            "bus bench: benchmarks/run_all.py not found; run it from a source checkout (pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return 2
    argv = [sys.executable, str(script), "--url", bench_url(args)]
    if args.quick:
        argv.append("--quick")
    if args.rounds:
        argv += ["--rounds", str(args.rounds)]
    if args.no_write:
        argv.append("--no-write")
    if args.only:
        argv += ["--only", args.only]
    if args.memory:
        argv.append("--memory")
    sys.stdout.flush()
    return subprocess.call(argv)


def register(sub: Any) -> None:
    """Add ``bench`` to the CLI."""
    bench = sub.add_parser(
        "bench",
        help="run the publish/consume throughput comparison",
        description="Publish and consume throughput of this bus vs raw redis-py and FastStream, on Redis "
        "(its own database, keys removed afterwards). Prints a table of events/s and the target ratios.",
    )
    bench.add_argument("--quick", action="store_true", help="small sizes, two short rounds, RESULTS.md untouched")
    bench.add_argument("--rounds", type=int, default=0, help="rounds per contender (default 5, quick 2)")
    bench.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    bench.add_argument("--only", choices=("publish", "consume"), help="run only one half")
    bench.add_argument("--memory", action="store_true", help="also the 1,000,000-event memory run (minutes)")
    bench.add_argument(
        "--url",
        help="Redis database to use (default REDIS_URL, else redis://127.0.0.1:6379/11); benchmarks refuse one "
        "whose workflow stream exists",
    )
    bench.set_defaults(handler=_bench)
