"""The dashboard over HTTP (in-process): numbers match bus status, secrets masked, writes need token and CSRF."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from bus import ConfigurationError, EventBus, ops
from bus.dashboard import DashboardSettings, dashboard_app
from test_bus._support import open_bus

from ._seed import GROUP, SECRET, seed

TOKEN = "a-long-enough-write-token"


@pytest.fixture
async def seeded(backend: aioredis.Redis, test_prefix: str) -> AsyncIterator[tuple[EventBus, dict[str, Any]]]:
    async with open_bus(backend, test_prefix) as bus:
        yield bus, await seed(bus)


def client_for(bus: EventBus, token: str | None = TOKEN) -> httpx.AsyncClient:
    app = dashboard_app(bus, DashboardSettings(write_token=token))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def login(http: httpx.AsyncClient) -> str:
    """Log in; the CSRF token of the confirm forms."""
    r = await http.post("/login", data={"token": TOKEN})
    assert r.status_code == 303
    return http.cookies["bus_dashboard_session"]


async def test_overview_numbers_match_bus_status(seeded: tuple[EventBus, dict[str, Any]]) -> None:
    """The seeded stream's row on / is ops.status's; the empty stream is hidden unless ?all=1."""
    bus, s = seeded
    report = await ops.status(bus, include_empty=False)
    async with client_for(bus) as http:
        with anyio.fail_after(10):
            page = (await http.get("/")).text
            everything = (await http.get("/?all=1")).text
    (ours,) = [r.stream for r in report.rows if r.stream.stream == s["stream"]]
    row = re.search(rf'data-stream="{re.escape(s["stream"])}" data-group="{GROUP}">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = dict(re.findall(r'data-col="(\w+)">\s*(?:<a [^>]*>)?(\d+)', row.group(1)))
    expected = {"length": ours.length, "lag": ours.groups[0].lag, "pending": ours.groups[0].pending}
    assert {k: int(cells[k]) for k in expected} == expected == {"length": 5, "lag": 3, "pending": 1}
    assert int(cells["dead_letters"]) == ours.dead_letter_length == 2
    assert s["empty"] not in page and s["empty"] in everything


async def test_totals_are_bus_status_totals(fake_client: aioredis.Redis, test_prefix: str) -> None:
    """On a Redis of its own (fakeredis), every total on / equals ops.status's."""
    async with open_bus(fake_client, test_prefix) as bus:
        await seed(bus)
        report = await ops.status(bus, include_empty=False)
        async with client_for(bus) as http:
            with anyio.fail_after(10):
                page = (await http.get("/")).text
    for name in ("streams", "groups", "length", "lag", "pending", "dead_letters"):
        assert re.search(rf'data-total="{name}">{getattr(report.totals, name)}<', page), name


async def test_stream_page_masks_secrets(seeded: tuple[EventBus, dict[str, Any]]) -> None:
    """A stream page decodes recent entries and never shows a secret-like field's value."""
    bus, s = seeded
    async with client_for(bus) as http:
        with anyio.fail_after(10):
            r = await http.get("/stream", params={"key": s["stream"]})
    assert r.status_code == 200
    assert s["ids"][-1].decode() in r.text and "TICKET_CREATED" in r.text
    assert SECRET not in r.text and "password" in r.text


async def test_writes_need_the_token_and_csrf(seeded: tuple[EventBus, dict[str, Any]]) -> None:
    """Replay without login: 403; logged in without CSRF: 403; read-only dashboard: 403; nothing replayed."""
    bus, s = seeded
    form = {"stream": s["dead"], "id": s["dead_ids"][0]}
    async with client_for(bus) as http, client_for(bus, token=None) as readonly:
        with anyio.fail_after(10):
            assert (await http.post("/actions/replay", data={**form, "csrf": "x"})).status_code == 403
            await login(http)
            assert (await http.post("/actions/replay", data=form)).status_code == 403
            assert (await http.post("/actions/purge", data={**form, "csrf": "wrong"})).status_code == 403
            assert (await readonly.post("/login", data={"token": TOKEN})).status_code == 403
            assert (await readonly.post("/actions/replay", data={**form, "csrf": ""})).status_code == 403
            assert (await http.post("/login", data={"token": "not-the-token-at-all"})).status_code == 403
    assert await bus.client.xlen(s["dead"]) == 2


async def test_replay_after_confirmation_puts_the_entry_back(seeded: tuple[EventBus, dict[str, Any]]) -> None:
    """Logged in: the confirm page's form replays one dead letter onto its stream; purge deletes the other."""
    bus, s = seeded
    async with client_for(bus) as http:
        with anyio.fail_after(10):
            await login(http)
            confirm = await http.get(
                "/confirm", params={"action": "replay", "stream": s["dead"], "id": s["dead_ids"][0]}
            )
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', confirm.text)
            assert confirm.status_code == 200 and csrf is not None
            before = await bus.client.xlen(s["stream"])
            done = await http.post(
                "/actions/replay", data={"csrf": csrf.group(1), "stream": s["dead"], "id": s["dead_ids"][0]}
            )
            assert done.status_code == 303 and "replayed+1+of+1" in done.headers["location"]
            assert await bus.client.xlen(s["stream"]) == before + 1
            purged = await http.post(
                "/actions/purge", data={"csrf": csrf.group(1), "stream": s["dead"], "id": s["dead_ids"][1]}
            )
            assert purged.status_code == 303
    assert await bus.client.xlen(s["dead"]) == 0


async def test_catalog_pages(seeded: tuple[EventBus, dict[str, Any]]) -> None:
    """The catalog lists the types; a type's page shows its fields, a valid example and its schema; unknown: 404."""
    bus, _ = seeded
    async with client_for(bus) as http:
        with anyio.fail_after(10):
            listing = (await http.get("/catalog")).text
            page = (await http.get("/catalog/TICKET_CREATED")).text
            missing = await http.get("/catalog/TICKET_CREATD")
    assert listing.count('href="/catalog/') == 282
    assert 'id="example"' in page and "payload.TicketCreated.v1" in page and "tenantId" in page
    assert missing.status_code == 404


@pytest.mark.integration
async def test_metrics_oldest_pending_age_matches_xpending(real_client: aioredis.Redis, test_prefix: str) -> None:
    """/metrics: the group's oldest-pending-age gauge is the age of XPENDING's oldest entry, within 1 s."""
    async with open_bus(real_client, test_prefix) as bus:
        s = await seed(bus)
        async with client_for(bus) as http:
            with anyio.fail_after(10):
                text = (await http.get("/metrics")).text
                pending: Any = await real_client.xpending_range(s["stream"], GROUP, "-", "+", 1)
                seconds, micros = await real_client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        expected = (now_ms - int(pending[0]["message_id"].decode().split("-")[0])) / 1000
    values = {
        (sample.name, sample.labels.get("group")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("stream") == s["stream"]
    }
    assert abs(values[("bus_group_oldest_pending_age_seconds", GROUP)] - expected) < 1
    assert values[("bus_group_pending", GROUP)] == 1 and values[("bus_group_lag", GROUP)] == 3
    assert values[("bus_stream_dead_letters", None)] == 2


def test_a_non_loopback_host_needs_a_token() -> None:
    """Binding beyond loopback without a write token is refused; with one (16+ chars) it is allowed."""
    with pytest.raises(ConfigurationError, match="loopback"):
        DashboardSettings(host="0.0.0.0")
    assert not DashboardSettings(host="0.0.0.0", write_token=TOKEN).is_loopback
    assert DashboardSettings(host="::1").is_loopback
    with pytest.raises(ConfigurationError, match="16"):
        DashboardSettings(write_token="short")
