"""The consume side's plain-JSON check (``bus.consume._jsoncheck.plain_event``): a base revision's
against the working tree's, per event, in one process, interleaved round by round.

Events (each ``benchmarks/_workload.py``'s TICKET_UPDATED envelope):
- canonical: compact, as our publisher and ``JSON.stringify`` write it (the hot path);
- float 1e16: the same with ``"amount":1e16`` as msgspec (our publisher) writes it, which orjson
  spells ``1e+16``;
- indented: ``json.dumps(indent=1)``, the exact scan for duplicate keys.

The base's module is read with ``git show REV:bus/consume/_jsoncheck.py`` and loaded on its own.
With ``--instructions``, each (revision, event) also runs under ``valgrind --tool=callgrind``:
1,000 calls inside ``collections.deque(map(...), maxlen=0)`` with only ``deque_extend`` collected,
instructions per call (the call through ``map`` included: the ``no-op`` row), a measure the load
does not change.

Run: ``python benchmarks/bench_jsoncheck.py [--base REV] [--rounds N] [--instructions]
[--quick] [--no-write]``.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import re
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from _harness import bench_many, command_line, format_ns, load_average, machine, markdown_table, write_section
from _workload import envelope_bytes

from bus.consume import _jsoncheck

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Plain-JSON check (bench_jsoncheck.py)"
MODULE = "bus/consume/_jsoncheck.py"
MAX_BYTES = 1024 * 1024


def events() -> dict[str, bytes]:
    """The benchmark events, by name (fixed id and timestamp: every run checks the same bytes)."""
    canonical = envelope_bytes("7f5563c7-4d7b-45ce-9350-da06101dc0a4", "2026-12-07T03:51:52.474Z")
    value = msgspec.json.decode(canonical)
    value["payload"]["amount"] = 1e16
    return {
        "canonical": canonical,
        "float 1e16": msgspec.json.encode(value),
        "indented": json.dumps(msgspec.json.decode(canonical), indent=1).encode(),
    }


def base_check(rev: str) -> Callable[..., tuple[str | None, Any]]:
    """``plain_event`` of ``rev``, loaded from its source as a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{MODULE}"], check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType(f"_jsoncheck_{rev}")
    exec(compile(source, f"{rev}:{MODULE}", "exec"), module.__dict__)
    check: Callable[..., tuple[str | None, Any]] = module.plain_event
    return check


def _noop(raw: bytes, max_bytes: int) -> None:
    return None


def _callgrind_child(rev: str, event: str) -> None:
    """Under callgrind: 1,000 calls of one revision's check on one event (the collected part)."""
    check = _noop if rev == "no-op" else _jsoncheck.plain_event if rev == "head" else base_check(rev)
    raw = events()[event]
    for _ in range(200):  # warm up
        check(raw, MAX_BYTES)
    collections.deque(map(check, itertools.repeat(raw, 1000), itertools.repeat(MAX_BYTES)), maxlen=0)


def instructions(rev: str, event: str) -> float:
    """Instructions per call of one revision's check on one event, by callgrind."""
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=deque_extend",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--callgrind-child",
        rev,
        event,
    ]
    err = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stderr
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{err}")
    return int(found.group(1)) / 1000


def check_equivalence(base: Callable[..., tuple[str | None, Any]], raws: dict[str, bytes]) -> None:
    """Both revisions accept every benchmark event (the property test compares them on many more)."""
    for name, raw in raws.items():
        assert base(raw, MAX_BYTES)[0] is None and _jsoncheck.plain_event(raw, MAX_BYTES)[0] is None, name


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print it, and write its RESULTS.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", default="main", help="the revision to compare with (default main)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per contender (default 15)")
    parser.add_argument("--instructions", action="store_true", help="also count instructions with callgrind")
    parser.add_argument("--quick", action="store_true", help="3 short rounds, for a smoke run")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--callgrind-child", nargs=2, metavar=("REV", "EVENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.callgrind_child:
        _callgrind_child(*args.callgrind_child)
        return 0
    rounds, min_round_s = (3, 0.02) if args.quick else (args.rounds, 0.2)
    raws = events()
    base = base_check(args.base)
    check_equivalence(base, raws)
    head = _jsoncheck.plain_event
    contenders: dict[str, Callable[[], object]] = {}
    for name, raw in raws.items():
        contenders[f"base {name}"] = lambda raw=raw: base(raw, MAX_BYTES)
        contenders[f"head {name}"] = lambda raw=raw: head(raw, MAX_BYTES)
    load_before = load_average()
    timings = {t.name: t for t in bench_many(contenders, rounds=rounds, min_round_s=min_round_s)}
    load_after = load_average()
    counts: dict[str, tuple[float, float]] = {}
    if args.instructions:
        counts = {name: (instructions(args.base, name), instructions("head", name)) for name in raws}
        noop = instructions("no-op", "canonical")
    rows = []
    for name, raw in raws.items():
        b, h = timings[f"base {name}"], timings[f"head {name}"]
        row = [
            f"{name} ({len(raw)} bytes)",
            f"{format_ns(b.median_ns)} ({format_ns(b.min_ns)}-{format_ns(b.max_ns)})",
            f"{format_ns(h.median_ns)} ({format_ns(h.min_ns)}-{format_ns(h.max_ns)})",
            f"{b.median_ns / h.median_ns:.2f}x",
        ]
        if counts:
            ib, ih = counts[name]
            row += [f"{ib / 1000:.1f}k", f"{ih / 1000:.1f}k", f"{ib / ih:.2f}x"]
        rows.append(row)
    header = ["event", f"{args.base} ns/event", "head ns/event", "speed-up"]
    if counts:
        header += [f"{args.base} instructions", "head instructions", "ratio"]
        rows.append(["(a no-op function through the same map)", "", "", "", f"{noop / 1000:.1f}k", "", ""])
    info = machine(["msgspec", "orjson"])
    body = "\n".join(
        [
            f"Command: `{command_line()}`",
            "",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
            "",
            f"Load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after. Per event, median (min-max) "
            f"over {rounds} interleaved rounds; instructions by callgrind (1,000 calls, `deque_extend` collected).",
            "",
            markdown_table(header, rows),
        ]
    )
    print(body)
    if not (args.no_write or args.quick):
        write_section(HEADING, body)
        print(f"wrote the '{HEADING}' section of benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
