"""bus dashboard: a non-loopback host without a write token exits 2 naming the rule; --help describes it."""

from __future__ import annotations

import pytest

from bus.cli import main


@pytest.mark.integration
def test_non_loopback_without_token_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--host 0.0.0.0 with no BUS_DASHBOARD_TOKEN: exit 2, and the message says why."""
    monkeypatch.delenv("BUS_DASHBOARD_TOKEN", raising=False)
    code = main(["dashboard", "--host", "0.0.0.0", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a loopback address" in err and "BUS_DASHBOARD_TOKEN" in err


@pytest.mark.integration
def test_unreadable_token_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """--token-file naming a missing file: exit 2 naming the flag."""
    code = main(["dashboard", "--token-file", "/nonexistent/token", "--port", "0"])
    assert code == 2 and "--token-file" in capsys.readouterr().err


def test_help_names_the_token_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """bus dashboard --help mentions the write token's variable and the loopback rule."""
    with pytest.raises(SystemExit) as info:
        main(["dashboard", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "BUS_DASHBOARD_TOKEN" in out and "loopback" in out
