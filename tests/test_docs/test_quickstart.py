"""The README's quickstart, copied step by step into a shell, works against the real Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from tests.conftest import REAL_REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```$", re.S | re.M)


def quickstart_commands() -> list[str]:
    """The commands of the README's Quickstart section, in order (comments and activation dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quickstart") :]
    section = section[: section.index("\n## ", 1)]
    commands = []
    for block in BASH_BLOCK.findall(section):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#") and command != ". .venv/bin/activate":
                commands.append(command)
    return commands


def test_quickstart_has_the_steps_in_order() -> None:
    """The quickstart publishes, tails, tests, runs and inspects, in that order."""
    commands = quickstart_commands()
    assert [c.split()[:2] for c in commands] == [
        ["bus", "catalog"],
        ["bus", "publish"],
        ["bus", "tail"],
        ["python", "-m"],
        ["bus", "run"],
        ["bus", "status"],
    ]


def _shell(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _run_until_handled(command: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``bus run ...`` until it printed the handled invoice, then Ctrl-C (SIGINT) as the README says."""
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the handler printed (or the process ended)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, first + out, err


@pytest.mark.integration
async def test_quickstart_runs_as_written(real_client: aioredis.Redis, test_prefix: str, tmp_path: Path) -> None:
    """The demo, then each quickstart command, run in a shell with the venv's bin on PATH, exit 0 and show
    the published invoice: tailed, handled by the billing app, its group caught up in ``bus status``."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "REDIS_URL": REAL_REDIS_URL,
        "REDIS_PREFIX": test_prefix,
        "PYTHONPATH": "",
    }
    demo = await anyio.to_thread.run_sync(_shell, "bus demo", env, tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "ok: every step worked" in demo.stdout
    outputs: dict[str, str] = {}
    errors: dict[str, str] = {}
    for command in quickstart_commands():
        if command.startswith("bus run "):
            code, out, err = await anyio.to_thread.run_sync(_run_until_handled, command, env, tmp_path)
        else:
            done = await anyio.to_thread.run_sync(_shell, command, env, tmp_path)
            code, out, err = done.returncode, done.stdout, done.stderr
        assert code == 0, f"{command}: exit {code}\n{out}\n{err}"
        outputs[command.split()[1]] = out
        errors[command.split()[1]] = err
    stream = f"{test_prefix}event-stream:global:INVOICE_SENT"
    assert "published INVOICE_SENT" in outputs["publish"] and stream in outputs["publish"]
    assert '"eventType":"INVOICE_SENT"' in outputs["tail"]
    assert "1 passed" in outputs["-m"]
    assert "invoice 00000000-0000-4000-8000-000000000001 sent" in outputs["run"]
    assert "starting billing (group 'billing')" in errors["run"]  # the app's own group, as the log says
    row = next(line.split() for line in outputs["status"].splitlines() if line.startswith(stream))
    assert row[:6] == [stream, "1", "0", "billing", "0", "0"]  # length 1, no dead letters, lag 0, pending 0
