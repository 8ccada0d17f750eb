"""Smoke test of the benchmark entry point: it runs end to end with tiny sizes and prints its
table (nothing is timed or asserted about speed). Needs the real Redis (integration)."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

from bus.cli import build_parser
from bus.cli._bench import run_all_script

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
_LOCK = "psa-event-bus:bench-smoke:lock"


def _load_run_all() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("run_all", BENCHMARKS / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def free_db() -> Iterator[str]:
    """A Redis database (12-15) without a workflow stream, so the run trims nobody's entries; a lock
    key holds it for the test, so that a test run beside this one on the same Redis takes another."""
    token = uuid.uuid4().hex.encode()
    for db in range(12, 16):
        client = redis.Redis(host="127.0.0.1", port=6379, db=db)
        try:
            if not client.set(_LOCK, token, nx=True, ex=600):
                continue
            try:
                if not client.exists("workflow:events:global"):
                    yield f"redis://127.0.0.1:6379/{db}"
                    return
            finally:
                if client.get(_LOCK) == token:
                    client.delete(_LOCK)
        except redis.ConnectionError as exc:  # pragma: no cover - CI starts Redis
            pytest.fail(f"the smoke test needs Redis on 127.0.0.1:6379: {exc}")
        finally:
            client.close()
    pytest.skip("no free Redis database among 12-15")


def test_bus_bench_is_registered() -> None:
    """`bus bench --quick` parses and points at the checkout's benchmarks/run_all.py."""
    args = build_parser().parse_args(["bench", "--quick", "--no-write"])
    assert args.quick and args.no_write and callable(args.handler)
    assert run_all_script() == BENCHMARKS / "run_all.py"


@pytest.mark.integration
def test_run_all_prints_the_table(capsys: pytest.CaptureFixture[str], free_db: str) -> None:
    """run_all with minimal sizes and one round prints every row, the target ratios and the consume CPU table."""
    run_all = _load_run_all()
    code = run_all.main(
        [
            "--quick",
            "--no-write",
            "--rounds",
            "1",
            "--min-round-s",
            "0.001",
            "--sequential",
            "10",
            "--consume-events",
            "200",
            "--url",
            free_db,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| contender | XADD/event | events/s median (min-max) | XADD/s |" in out
    for row in (
        "raw redis-py pipeline, batches of 1000",
        "ours: await publish(), one at a time",
        "ours: 64 concurrent await publish(batch=True)",
        "ours: publish_many, batches of 1000",
        "ours: consume loop, no-op handler, COUNT 1000",
        "raw: XREADGROUP COUNT 1000 + msgspec decode + XACK",
    ):
        assert row in out
    assert "| target | goal | ratio (medians) | verdict |" in out
    assert "Auto-batching check" in out
    # Each consume contender of ours and the raw loops has its CPU per event: positive numbers.
    cpu = out.split("| contender | client CPU µs/event | Redis CPU µs/event | wall µs/event |", 1)[1]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in cpu.splitlines() if line.startswith("| ours")}
    assert "ours: consume loop, no-op handler, COUNT 1000" in rows
    client_us, _, wall_us = (
        float(v) for v in rows["ours: consume loop, no-op handler, COUNT 1000"].strip("| ").split(" | ")[1:]
    )
    assert client_us >= 0 and wall_us > 0  # a 200-event call may fall within one CPU-accounting tick


@pytest.mark.integration
def test_count_bytecodes_counts_the_consume_and_publish_paths(capsys: pytest.CaptureFixture[str], free_db: str) -> None:
    """count_bytecodes.py counts bytecodes per event of a consume and a publish contender, naming their functions."""
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("count_bytecodes", BENCHMARKS / "count_bytecodes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["consume1000", "--events", "300", "--top", "40", "--url", free_db]) == 0
    out = capsys.readouterr().out
    head, *rows = out.splitlines()
    assert head.startswith("consume1000: ") and float(head.split()[1].replace(",", "")) > 0
    assert any("Dispatcher.decode" in row for row in rows)
    assert module.main(["conc64-2", "--top", "40", "--url", free_db]) == 0
    head, *rows = capsys.readouterr().out.splitlines()
    assert head.startswith("conc64-2: ") and "(1,280 events)" in head  # 64 callers of 20 events
    assert any("AutoBatcher.submit_outcomes" in row for row in rows)
