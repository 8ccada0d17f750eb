"""``bus demo``: the pipeline on an embedded fakeredis server (and on the real Redis), its report, exit codes."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis

from bus import WORKFLOW_STREAM
from bus.cli import main
from subscribers.demo import _main as demo_main
from subscribers.email import SendError, SendResult
from tests.conftest import REAL_REDIS_URL, free_port

#: What the scenario publishes (subscribers/demo/_scenario.py): fixed by the demo itself.
PUBLISHED = 17
TRIGGERS = {"start triage": 2, "send satisfaction survey": 1, "schedule payment reminder": 1}
TRIGGERS["update the technician's route"] = 1


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``bus demo ...`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(["demo", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def check_report(report: dict[str, Any], out_dir: Path) -> None:
    """The counts hang together: every step ok, files and lifecycle events match."""
    counts, life = report["counts"], report["lifecycle"]
    assert report["ok"] is True, report["steps"]
    assert counts["published"] == PUBLISHED
    assert counts["emails"] > 0 and counts["emails"] == life["OUTBOUND_EMAIL_SENT"] == life["OUTBOUND_EMAIL_QUEUED"]
    assert counts["notifications"] > 0 and counts["notifications"] == life["NOTIFICATION_SENT"]
    assert counts["pushes"] == life["NOTIFICATION_DELIVERED"] == counts["notifications"]
    assert counts["converted"] == 1
    assert counts["dead_letters"] == 0
    assert life["OUTBOUND_EMAIL_FAILED"] == life["NOTIFICATION_FAILED"] == 0
    fired: dict[str, int] = {}
    for f in report["triggers"]:
        fired[f["trigger"]] = fired.get(f["trigger"], 0) + 1
    assert fired == TRIGGERS
    assert len(list((out_dir / "emails").glob("*.eml"))) == counts["emails"]


def test_demo_runs_on_embedded_fakeredis(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without Redis the demo publishes, processes everything, writes .eml files and exits 0 in seconds.

    The time bound is the behaviour (a demo that finishes, well inside its 30 s deadline); it is
    generous for a loaded machine.
    """
    started = time.monotonic()
    code, out, err = run(capsys, "--fake", "--out", str(tmp_path), "--json")
    assert code == 0, err
    assert time.monotonic() - started < 25
    report = json.loads(out)
    assert report["backend"].startswith("an embedded fakeredis server")
    check_report(report, tmp_path)


def test_demo_text_report_prints_the_counts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The text report names the folder and prints each count, every step ok, and the verdict."""
    code, out, _ = run(capsys, "--fake", "--out", str(tmp_path))
    assert code == 0
    emails = len(list((tmp_path / "emails").glob("*.eml")))
    assert f"1. published {PUBLISHED} events" in out
    assert f"2. email: {emails} messages rendered to {tmp_path / 'emails'}/" in out
    stored = int(re.search(r"3\. in-app notifications: (\d+) stored, (\d+) delivered live", out).group(1))  # type: ignore[union-attr]
    assert f"pub/sub: this demo's subscriber received {stored} pushes" in out
    assert "4. workflow: 5 triggers fired" in out
    assert "converter: wrote 1 workflow entry" in out
    assert f"OUTBOUND_EMAIL_SENT {emails}" in out and f"NOTIFICATION_SENT {stored}" in out
    assert "[FAILED]" not in out
    assert out.rstrip().splitlines()[-1].startswith("ok: every step worked")


def test_demo_twice_into_one_folder_counts_only_its_own_mail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A second run into the same folder reports only the messages it wrote."""
    assert run(capsys, "--fake", "--out", str(tmp_path), "--json")[0] == 0
    code, out, _ = run(capsys, "--fake", "--out", str(tmp_path), "--json")
    assert code == 0
    first_and_second = len(list((tmp_path / "emails").glob("*.eml")))
    assert json.loads(out)["counts"]["emails"] * 2 == first_and_second


class RefusingSender:
    """A sender whose every message is refused for good (5xx)."""

    provider = "refusing"

    def __init__(self, folder: Any) -> None:
        self.folder = folder

    async def send(self, message: Any) -> SendResult:
        """Refuse."""
        raise SendError("550 mailbox unavailable", retryable=False, code="550")


def test_demo_failed_step_exits_1_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When mail is refused the email step fails: exit 1 and the message names the step."""
    monkeypatch.setattr(demo_main, "FileSender", RefusingSender)
    code, out, err = run(capsys, "--fake", "--out", str(tmp_path))
    assert code == 1
    assert "bus demo: FAILED step(s): email" in err
    assert "[FAILED] email" in out


def test_demo_unreachable_redis_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A Redis URL nobody answers: exit 3 quickly, naming the step and the fix.

    The time bound is the behaviour (no retry loop); it is generous for a loaded machine.
    """
    started = time.monotonic()
    code, _, err = run(capsys, "--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--out", str(tmp_path))
    assert code == 3
    assert time.monotonic() - started < 20
    assert "step 'connect' failed" in err and "REDIS_URL" in err


def test_demo_bad_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown flag is a usage error."""
    assert run(capsys, "--no-such-flag")[0] == 2


@pytest.mark.integration
async def test_demo_on_real_redis_cleans_up(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    real_client: aioredis.Redis,
    test_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a Redis URL the demo runs there under its prefix, then leaves no keys, groups or workflow entries."""
    import anyio

    # The demo's groups on the shared workflow stream are named after its run id (its first uuid4):
    # record it, so that another run's demo going on meanwhile on the same Redis is not counted.
    made: list[uuid.UUID] = []

    def uuid4() -> uuid.UUID:
        made.append(uuid.uuid4())
        return made[-1]

    monkeypatch.setattr(demo_main, "uuid", SimpleNamespace(uuid4=uuid4))

    def go() -> tuple[int, str, str]:
        return run(capsys, "--redis-url", REAL_REDIS_URL, "--prefix", test_prefix, "--out", str(tmp_path), "--json")

    # In a worker thread: the demo runs its own event loop.
    code, out, err = await anyio.to_thread.run_sync(go)
    assert code == 0, err
    report = json.loads(out)
    check_report(report, tmp_path)
    assert report["backend"].startswith("Redis at")
    assert [k async for k in real_client.scan_iter(match=f"{test_prefix}*")] == []
    assert await real_client.exists(f"processed_events:{report['tenant']}") == 0  # the reference's: never written
    groups: Any = await real_client.xinfo_groups(WORKFLOW_STREAM)
    run_id = made[0].hex[:8]
    assert not [g for g in groups if g["name"].decode().endswith(f"-{run_id}")]
    rows: Any = await real_client.xrange(WORKFLOW_STREAM)
    assert not [r for r in rows if r[1].get(b"tenant") == report["tenant"].encode()]
