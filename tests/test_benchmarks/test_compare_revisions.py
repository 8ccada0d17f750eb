"""compare_revisions reads the ratio rows of run_all.py's tables (the format every revision prints)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

OUTPUT = """\
| contender | XADD/event | events/s median (min-max) | XADD/s |
|:---|---:|---:|---:|
| ours publish_many 1000 | 2 | 77,176 (70,000-80,000) | 154,352 |

| target | goal | ratio (medians) | verdict |
|:---|---:|---:|---:|
| publish_many 1000, 2 XADD/event vs raw redis-py pipeline 1000, 2 XADD/event | >= 2.0x | 2.78x | met |
| consume COUNT 1000, no-op handler vs raw XREADGROUP+XACK+decode | >= 0.7x | 0.37x | NOT met |

| analysis ratio (not a target) | ratio (medians) |
|:---|---:|
| consume COUNT 1000 vs raw XREADGROUP+XACK with our validation | 0.63x |
"""


def test_parse_ratios_takes_the_measured_ratio_not_the_goal() -> None:
    """Target rows give the measured ratio (not the ">= goal"); analysis rows too; other rows are ignored."""
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("compare_revisions", BENCHMARKS / "compare_revisions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.parse_ratios(OUTPUT) == {
        "publish_many 1000, 2 XADD/event vs raw redis-py pipeline 1000, 2 XADD/event": 2.78,
        "consume COUNT 1000, no-op handler vs raw XREADGROUP+XACK+decode": 0.37,
        "consume COUNT 1000 vs raw XREADGROUP+XACK with our validation": 0.63,
    }
