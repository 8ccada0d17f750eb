"""`bus dashboard` in a real headless Chromium (Debian's chromium + chromium-driver): numbers, refresh, replay."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import ops
from test_bus._support import open_bus

from ._seed import GROUP, seed

TOKEN = "browser-test-write-token"
REAL_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser() -> Any:
    """Headless Chromium through the system's chromedriver; nothing is downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        message = "the browser test needs Debian's chromium and chromium-driver (apt-get; .ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI it must run
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _screens(tmp_path: Path) -> Path:
    """Where screenshots go: BUS_SCREENSHOTS_DIR (docs/screenshots to refresh the docs'), else the test's tmp dir."""
    target = Path(os.environ.get("BUS_SCREENSHOTS_DIR") or tmp_path).resolve()
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.mark.integration
async def test_dashboard_in_a_real_browser(real_client: aioredis.Redis, test_prefix: str, tmp_path: Path) -> None:
    """Numbers match bus status, the table refreshes live, a dead letter replayed by clicking is back on its stream."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver
    shots = _screens(tmp_path)
    async with open_bus(real_client, test_prefix) as bus:
        s = await seed(bus)
        report = await ops.status(bus, include_empty=False)
        env = {
            **os.environ,
            "REDIS_URL": REAL_REDIS_URL,
            "REDIS_PREFIX": test_prefix,
            "BUS_DASHBOARD_TOKEN": TOKEN,
        }
        cmd = [sys.executable, "-m", "bus", "dashboard", "--port", "0", "--refresh-s", "0.5"]
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)  # noqa: ASYNC220 (a daemon under test)
        try:
            assert proc.stderr is not None
            line = await anyio.to_thread.run_sync(proc.stderr.readline)
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            assert found is not None, line
            base = f"http://127.0.0.1:{found.group(1)}"

            def drive() -> dict[str, Any]:
                seen: dict[str, Any] = {}
                browser = _browser()
                try:
                    wait = WebDriverWait(browser, 20)
                    browser.get(base + "/")
                    row = browser.find_element(
                        By.CSS_SELECTOR, f'tr[data-stream="{s["stream"]}"][data-group="{GROUP}"]'
                    )
                    for col in ("length", "lag", "pending", "consumers", "dead_letters"):
                        seen[col] = int(row.find_element(By.CSS_SELECTOR, f'[data-col="{col}"]').text)
                    wait.until(lambda b: b.find_element(By.ID, "overview").get_attribute("data-refreshed"))
                    browser.save_screenshot(str(shots / "dashboard-overview.png"))
                    browser.get(base + "/stream?key=" + s["stream"])
                    browser.save_screenshot(str(shots / "dashboard-stream.png"))
                    browser.get(base + "/login")
                    browser.find_element(By.ID, "token").send_keys(TOKEN)
                    browser.find_element(By.ID, "login").click()
                    wait.until(lambda b: b.find_elements(By.ID, "logout"))
                    browser.get(base + "/dead-letters?stream=" + s["dead"])
                    browser.save_screenshot(str(shots / "dashboard-dead-letters.png"))
                    first = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{s["dead_ids"][0]}"] a.replay')
                    first.click()
                    wait.until(lambda b: b.find_elements(By.ID, "confirm"))
                    browser.find_element(By.ID, "confirm").click()
                    wait.until(lambda b: b.find_elements(By.ID, "notice"))
                    seen["notice"] = browser.find_element(By.ID, "notice").text
                    browser.get(base + "/catalog/TICKET_CREATED")
                    browser.save_screenshot(str(shots / "dashboard-catalog.png"))
                    seen["example"] = browser.find_element(By.ID, "example").text
                finally:
                    browser.quit()
                return seen

            with anyio.fail_after(120):
                seen = await anyio.to_thread.run_sync(drive)
                stream_len = await real_client.xlen(s["stream"])
                dead_len = await real_client.xlen(s["dead"])
            proc.send_signal(signal.SIGTERM)
            code = await anyio.to_thread.run_sync(lambda: proc.wait(20))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert code == 0
    # The seeded stream's row as bus status reports it (totals would include the shared workflow
    # stream, which other processes on this Redis write to meanwhile).
    (ours,) = [r.stream for r in report.rows if r.stream.stream == s["stream"]]
    (group,) = ours.groups
    assert (
        {k: seen[k] for k in ("length", "lag", "pending", "consumers", "dead_letters")}
        == {
            "length": ours.length,
            "lag": group.lag,
            "pending": group.pending,
            "consumers": len(group.consumers),
            "dead_letters": ours.dead_letter_length,
        }
        == {"length": 5, "lag": 3, "pending": 1, "consumers": 1, "dead_letters": 2}
    )
    assert seen["notice"] == f"replayed 1 of 1 dead letters from {s['dead']}"
    assert (stream_len, dead_len) == (len(s["ids"]) + 1, 1)
    assert '"tenantId"' in seen["example"]
    assert sorted(p.name for p in shots.glob("dashboard-*.png")) == [
        "dashboard-catalog.png",
        "dashboard-dead-letters.png",
        "dashboard-overview.png",
        "dashboard-stream.png",
    ]
