"""A small timing harness shared by the benchmark scripts (standalone, no pytest, stdlib only).

- :func:`bench` times a zero-argument callable: it calibrates how many calls make one round
  (at least ``min_round_s``), runs ``rounds`` rounds and keeps the per-call time of each.
- :class:`Timing` reports the median and the min-max over rounds, and calls per second.
- :func:`machine` describes the machine and the versions of the packages that matter.
- :func:`markdown_table` and :func:`write_section` put a result under its own ``## `` heading
  of ``benchmarks/RESULTS.md`` without touching the other sections; :func:`section_head` is the
  opening every section has (command, machine, load average at the start and the end), and
  :func:`median_range` the ``median (min-max)`` cell of a table.
- :func:`interleaved` / :func:`ainterleaved` measure contenders that are not a callable to time
  (a process, a run with its own clock) round by round, with a progress line per round.

Compare implementations in one process run, interleaved round by round (``bench_many``), so a
noisy neighbour or a frequency change hits every contender alike.

For async throughput (I/O against Redis), :func:`abench_many` runs coroutine functions that each
return how many events they handled (or ``(events, seconds)`` when they time themselves, to keep
setup out of the measurement); its :class:`Timing` is per event. :func:`load_average` and
:func:`rss_bytes` record how busy the machine was and how big the process is.
"""

from __future__ import annotations

import gc
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import TypeVar

__all__ = [
    "RESULTS",
    "Timing",
    "abench_many",
    "ainterleaved",
    "bench",
    "bench_many",
    "command_line",
    "format_load",
    "format_ns",
    "interleaved",
    "load_average",
    "machine",
    "machine_line",
    "markdown_table",
    "median_range",
    "round_done",
    "rss_bytes",
    "section_head",
    "write_section",
]

RESULTS = Path(__file__).with_name("RESULTS.md")

K = TypeVar("K")
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    """Per-call times (ns) of each round of one benchmark."""

    name: str
    per_call_ns: tuple[float, ...]
    calls_per_round: int
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def median_ns(self) -> float:
        """Median per-call time over the rounds."""
        return median(self.per_call_ns)

    @property
    def min_ns(self) -> float:
        """Fastest round's per-call time."""
        return min(self.per_call_ns)

    @property
    def max_ns(self) -> float:
        """Slowest round's per-call time."""
        return max(self.per_call_ns)

    @property
    def per_second(self) -> float:
        """Calls per second at the median."""
        return 1e9 / self.median_ns

    def summary(self) -> str:
        """``name: median (min-max) per call, N/s``."""
        return (
            f"{self.name}: {format_ns(self.median_ns)} "
            f"({format_ns(self.min_ns)}-{format_ns(self.max_ns)}) per call, {self.per_second:,.0f}/s"
        )


def format_ns(ns: float) -> str:
    """A duration with a readable unit: ``850 ns``, ``1.24 µs``, ``3.10 ms``, ``1.20 s``."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.2f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def _calibrate(fn: Callable[[], object], min_round_s: float) -> int:
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_round_s / 4:
            return max(1, int(number * min_round_s / elapsed))
        number *= 4


def _round(fn: Callable[[], object], number: int) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return (time.perf_counter_ns() - start) / number


def bench(name: str, fn: Callable[[], object], *, rounds: int = 7, min_round_s: float = 0.2) -> Timing:
    """Time ``fn``: ``rounds`` rounds of enough calls to last ``min_round_s`` each."""
    return bench_many({name: fn}, rounds=rounds, min_round_s=min_round_s)[0]


def bench_many(
    contenders: dict[str, Callable[[], object]], *, rounds: int = 7, min_round_s: float = 0.2
) -> list[Timing]:
    """Time several callables, interleaved round by round, after one warm-up call each."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    for fn in contenders.values():
        fn()
    numbers = {name: _calibrate(fn, min_round_s) for name, fn in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name].append(_round(fn, numbers[name]))
    return [Timing(name, tuple(times[name]), numbers[name]) for name in contenders]


AsyncContender = Callable[[], Awaitable["int | tuple[int, float]"]]


async def abench_many(
    contenders: dict[str, AsyncContender],
    *,
    rounds: int = 5,
    min_round_s: float = 0.5,
    warmup: bool = True,
    on_round: Callable[[int], object] | None = None,
) -> list[Timing]:
    """Time coroutine functions, interleaved round by round; the Timing is per event.

    Each contender returns the number of events one call handled, or ``(events, seconds)`` when
    it timed itself (setup excluded). A round calls it until ``min_round_s`` has been measured.
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if warmup:
        for fn in contenders.values():
            await fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    events_per_round: dict[str, int] = dict.fromkeys(contenders, 0)
    for index in range(rounds):
        for name, fn in contenders.items():
            gc.collect()
            events, measured = 0, 0.0
            while measured < min_round_s or not events:
                start = time.perf_counter()
                result = await fn()
                elapsed = time.perf_counter() - start
                if isinstance(result, tuple):
                    n, elapsed = result
                else:
                    n = result
                events += n
                measured += elapsed
            times[name].append(measured * 1e9 / events)
            events_per_round[name] = events
        if on_round is not None:
            on_round(index)
    return [Timing(name, tuple(times[name]), events_per_round[name]) for name in contenders]


def round_done(index: int, rounds: int) -> None:
    """The progress line after round ``index`` (from 0) of ``rounds``, with the 1-minute load, on stderr."""
    print(f"  round {index + 1}/{rounds} done (load {load_average()[0]:.2f})", file=sys.stderr)


def interleaved(rounds: int, contenders: Iterable[K], measure: Callable[[K], T]) -> dict[K, list[T]]:
    """``measure(contender)`` for every contender in turn, ``rounds`` times over, so a change of load
    hits all alike; each contender's results in round order."""
    order = list(contenders)
    results: dict[K, list[T]] = {c: [] for c in order}
    for index in range(rounds):
        for contender in order:
            results[contender].append(measure(contender))
        round_done(index, rounds)
    return results


async def ainterleaved(
    rounds: int, contenders: Iterable[K], measure: Callable[[K], Awaitable[T]], *, warmup: bool = False
) -> dict[K, list[T]]:
    """:func:`interleaved` for a coroutine function; with ``warmup`` one more round first, not kept."""
    order = list(contenders)
    results: dict[K, list[T]] = {c: [] for c in order}
    for index in range(-1 if warmup else 0, rounds):
        for contender in order:
            result = await measure(contender)
            if index >= 0:
                results[contender].append(result)
        if index >= 0:
            round_done(index, rounds)
    return results


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (zeros where the OS does not tell)."""
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux
        return (0.0, 0.0, 0.0)


def rss_bytes() -> int:
    """Resident set size of this process (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil
    except ImportError:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(packages: Iterable[str] = ()) -> dict[str, str]:
    """CPU, cores, OS, Python and the versions of ``packages``."""
    info = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    info.update({name: _version(name) for name in packages})
    return info


def machine_line(packages: Iterable[str] = (), where: str = "") -> str:
    """``Machine: cpu ..., cores ..., os ..., python ...`` and the ``packages``' versions, then ``where``
    (``"; Redis on 127.0.0.1, same machine"``, say)."""
    return "Machine: " + ", ".join(f"{k} {v}" for k, v in machine(packages).items()) + where


def format_load(load: tuple[float, float, float]) -> str:
    """Load averages as ``1.23 0.98 0.75``."""
    return " ".join(f"{x:.2f}" for x in load)


def section_head(
    packages: Iterable[str], load: tuple[float, float, float], *, where: str = "", command_note: str = ""
) -> list[str]:
    """The opening paragraphs of a RESULTS.md section (lines to join with newlines): the command line
    (then ``command_note``), :func:`machine_line`, and the load average at the start (``load``) and now."""
    return [
        f"Command: `{command_line()}`{command_note}",
        "",
        machine_line(packages, where),
        "",
        f"Load average at the start: {format_load(load)}; at the end: {format_load(load_average())}",
    ]


def command_line() -> str:
    """How this script was run, relative to the repository root when possible."""
    script = Path(sys.argv[0]).resolve()
    root = Path(__file__).resolve().parents[1]
    shown = script.relative_to(root) if script.is_relative_to(root) else script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


def median_range(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """``median (min-max)`` of ``values``, each formatted with ``fmt``."""
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub markdown table (columns after the first right-aligned)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(heading: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the ``## heading`` section of RESULTS.md, leaving other sections as they are,
    and say so on stdout."""
    title = f"## {heading}"
    text = path.read_text() if path.exists() else "# Benchmark results\n\nEach section is written by its script.\n"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    section = f"{title}\n\n_Written by the script on {stamp}._\n\n{body.strip()}\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == title), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.write_text(text)
    print(f"wrote the '{heading}' section of {path.parent.name}/{path.name}")
