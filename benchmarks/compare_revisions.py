"""Before/after a change, in one run: ``run_all.py`` of two revisions, interleaved.

Each revision is checked out into a temporary git worktree and its own ``benchmarks/run_all.py``
runs with that tree first on ``sys.path`` (the same interpreter and installed packages for
both). The two alternate ``--alternations`` times (base, head, base, head, ...), so load changes
on the machine hit both alike. Reported per ratio of ``run_all.py`` (ours vs raw redis-py,
vs FastStream, consume vs raw): the median per revision, the spread of each, and the change.
A change smaller than the spread of the runs is noise.

Run: ``python benchmarks/compare_revisions.py --base REV [--head REV] [--alternations 3]
[-- run_all.py options]`` (default head: the working tree as it is; run_all gets ``--no-write``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import load_average, markdown_table, section_head, write_section

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Before and after (compare_revisions.py)"


def _worktree(rev: str, into: Path) -> Path:
    """A detached worktree of ``rev`` under ``into``."""
    path = into / rev.replace("/", "_")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True, capture_output=True
    )
    return path


def _run(tree: Path, passthrough: list[str]) -> dict[str, Any]:
    """One ``run_all.py`` of ``tree``: its ratios, read from the tables it prints (every revision prints them)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(tree / "benchmarks" / "run_all.py"), "--no-write", *passthrough]
    out = subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    return {"ratios": parse_ratios(out)}


def parse_ratios(text: str) -> dict[str, float]:
    """``{label: ratio}`` from the markdown rows of run_all.py's output whose cells hold ``1.23x``."""
    ratios: dict[str, float] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        found = [c for c in cells[1:] if re.fullmatch(r"[0-9.]+x", c)]
        if len(cells) >= 2 and found:
            ratios[cells[0]] = float(found[0][:-1])
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", required=True, help="the revision before (a commit, tag or branch)")
    parser.add_argument("--head", help="the revision after (default: the working tree as it is)")
    parser.add_argument("--alternations", type=int, default=3, help="runs of each revision, alternating")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("passthrough", nargs="*", help="options for run_all.py (after --)")
    args = parser.parse_args(argv)
    load = load_average()
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory(prefix="bench-revs-") as tmp:
        trees = {"base": _worktree(args.base, Path(tmp))}
        trees["head"] = _worktree(args.head, Path(tmp)) if args.head else ROOT
        try:
            for i in range(args.alternations):
                for side in ("base", "head"):
                    print(f"round {i + 1}/{args.alternations}: {side}", file=sys.stderr)
                    runs[side].append(_run(trees[side], args.passthrough))
        finally:
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    labels = [label for label in runs["head"][0]["ratios"] if all(label in r["ratios"] for r in runs["base"])]
    rows = []
    for label in labels:
        before = [r["ratios"][label] for r in runs["base"]]
        after = [r["ratios"][label] for r in runs["head"]]
        spread = max(max(before) - min(before), max(after) - min(after))
        change = median(after) - median(before)
        verdict = "within noise" if abs(change) <= spread else ("better" if change > 0 else "WORSE")
        rows.append(
            (
                label,
                f"{median(before):.2f}x ({min(before):.2f}-{max(before):.2f})",
                f"{median(after):.2f}x ({min(after):.2f}-{max(after):.2f})",
                f"{change:+.2f}",
                verdict,
            )
        )
    table = markdown_table(["ratio", "base median (min-max)", "head median (min-max)", "change", "verdict"], rows)
    print(table)
    note = f" (base {args.base}, head {args.head or 'working tree'})"
    body = "\n".join(
        [
            *section_head(["redis", "hiredis", "msgspec", "anyio"], load, command_note=note),
            "",
            f"{args.alternations} alternating runs of each revision's run_all.py; 'within noise' means the change of "
            "the medians is no larger than the spread (max-min) of either revision's runs.",
            "",
            table,
        ]
    )
    if not args.no_write:
        write_section(HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
