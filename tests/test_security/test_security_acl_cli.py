"""``bus acl``: prints the generated ACL user (password only hashed); its aclfile line works on a
real redis-server (marker ``fault``)."""

from __future__ import annotations

import io
import secrets
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from bus import EventBus
from bus.cli import main
from bus.security import service_acl, tenant_prefix
from bus.testing import Recorder, fast_settings, wait_for_stats

TS = "2026-01-23T10:11:12.345Z"


def test_service_line_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """``bus acl --service email --channel emailservice::v7 --role consume --role notify`` prints the builder's line."""
    code = main(["acl", "--service", "email", "--channel", "emailservice::v7", "--role", "consume", "--role", "notify"])
    expected = service_acl("email", channels=["emailservice::v7"], roles=["consume", "notify"]).command_line()
    assert (code, capsys.readouterr().out) == (0, expected + "\n")


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        pytest.param(["--tenant", "acme*"], "glob character '*'", id="glob-tenant"),
        pytest.param(["--tenant", "a:b"], "separator", id="separator-tenant"),
        pytest.param(["--service", "bad name"], "not a valid service name", id="service-name"),
        pytest.param(["--tenant", "acme", "--channel", "global"], "whole prefix", id="tenant-with-channel"),
        pytest.param(["--tenant", "acme", "--format", "aclfile"], "needs --password-stdin", id="aclfile-no-password"),
    ],
)
def test_usage_errors_exit_2_naming_the_rule(argv: list[str], phrase: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid tenant ids, service names and option combinations exit 2 with the rule on stderr."""
    code = main(["acl", *argv])
    captured = capsys.readouterr()
    assert code == 2 and phrase in captured.err and captured.out == ""


@pytest.mark.fault
async def test_aclfile_line_runs_a_tenant_end_to_end(
    redis_process: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The printed aclfile line lets tenant acme publish and consume 10 events; the password is only hashed."""
    password = secrets.token_urlsafe(18)
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    assert main(["acl", "--tenant", "acme", "--password-stdin", "--format", "aclfile"]) == 0
    line = capsys.readouterr().out
    assert password not in line and line.startswith("user tenant-acme on #")
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("user default on nopass ~* &* +@all\n" + line)
    server = redis_process(appendonly=False, extra=("--aclfile", str(aclfile)))
    settings = fast_settings(f"redis://tenant-acme:{password}@127.0.0.1:{server.port}/0", prefix=tenant_prefix("acme"))
    async with EventBus(settings) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            for _ in range(10):
                payload = {"tenantId": "acme", "occurredAt": TS, "ticketId": str(uuid.uuid4()), "actorType": "SYSTEM"}
                await bus.publish("TICKET_CREATED", payload)
            with anyio.fail_after(10):
                stats = await wait_for_stats(bus, lambda s: s.handled == 10)
            tg.cancel_scope.cancel()
    assert (stats.handled, len(recorder.deliveries)) == (10, 10)
