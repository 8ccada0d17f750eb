"""``bus status``, ``bus dlq``, ``bus publish`` and ``bus tail`` against the real Redis.

Each test works under its own key prefix; the CLI runs in a worker thread (it starts its own
event loop) while the test's loop drives a bus: consumers, groups, fixtures.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import WORKFLOW_STREAM, Delivery, EventBus, Keys
from bus.ops import REPLAY_SCRIPT
from bus.testing import fast_settings, reference_fields, wait_for_stats
from tests.conftest import REAL_REDIS_URL
from tests.test_cli._main import exit_code

pytestmark = pytest.mark.integration

TICKET_ID = "5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f"
USER_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
TS = "2026-01-23T10:11:12.345Z"


def payload(tenant: str = "acme", **overrides: Any) -> dict[str, Any]:
    """A valid TICKET_CREATED payload (domain shape)."""
    doc: dict[str, Any] = {"tenantId": tenant, "occurredAt": TS, "ticketId": TICKET_ID, "actorUserId": USER_ID}
    doc.update(overrides)
    return doc


class Cli:
    """Runs ``bus.cli.main`` in a thread with the real Redis URL and the test's prefix."""

    def __init__(self, capsys: pytest.CaptureFixture[str], prefix: str) -> None:
        self.capsys = capsys
        self.prefix = prefix

    async def __call__(self, *argv: str, conn: bool = True) -> tuple[int, str, str]:
        """(exit code, stdout, stderr); argparse exits become their code."""
        args = list(argv)
        if conn:
            args += ["--redis-url", REAL_REDIS_URL, "--prefix", self.prefix]
        with anyio.fail_after(30):
            code = await anyio.to_thread.run_sync(exit_code, args)
        out = self.capsys.readouterr()
        return code, out.out, out.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], test_prefix: str) -> Cli:
    """The CLI bound to the real Redis and the test's prefix."""
    return Cli(capsys, test_prefix)


@asynccontextmanager
async def open_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> AsyncIterator[EventBus]:
    """A bus with fast test settings on the test's real-Redis client and prefix."""
    async with EventBus(fast_settings(prefix=prefix, **overrides), client=client) as bus:
        yield bus


def rows(text: str) -> list[list[str]]:
    """A table's rows split on runs of two or more spaces (header first)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


async def xrange(client: aioredis.Redis, stream: str) -> list[Any]:
    """Every entry of a stream as ``(id, fields)`` (bytes)."""
    entries: Any = await client.xrange(stream)
    return list(entries)


async def lagging_stream(client: aioredis.Redis, bus: EventBus) -> tuple[str, list[str]]:
    """5 entries; group ``g-lag`` read 2 without acking (lag 3, pending 2); ``g-done`` read and acked all."""
    ids = [(await bus.publish("TICKET_CREATED", payload())).event_id for _ in range(5)]
    stream = bus.keys.stream("global", "TICKET_CREATED")
    await client.xgroup_create(stream, "g-lag", id="0")
    await client.xgroup_create(stream, "g-done", id="0")
    await client.xreadgroup("g-lag", "worker-1", {stream: ">"}, count=2)
    done: Any = await client.xreadgroup("g-done", "worker-2", {stream: ">"})
    await client.xack(stream, "g-done", *[eid for eid, _ in done[0][1]])
    await client.xadd(Keys.dead_letter(stream), {"event": "{}", "deadLetterReason": "invalid"})
    await anyio.sleep(0.05)
    return stream, ids


# ----------------------------------------------------------------------------- help, connection


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["status"], id="status"),
        pytest.param(["dlq"], id="dlq"),
        pytest.param(["dlq", "list"], id="dlq-list"),
        pytest.param(["dlq", "show"], id="dlq-show"),
        pytest.param(["dlq", "replay"], id="dlq-replay"),
        pytest.param(["dlq", "purge"], id="dlq-purge"),
        pytest.param(["publish"], id="publish"),
        pytest.param(["tail"], id="tail"),
    ],
)
async def test_help_everywhere(cli: Cli, argv: list[str]) -> None:
    """``--help`` prints a usage line and exits 0 for every operator command."""
    code, out, _ = await cli(*argv, "--help", conn=False)
    assert code == 0
    assert out.startswith("usage: bus")


async def test_unreachable_redis_exits_3_without_secrets(cli: Cli) -> None:
    """A refused connection is exit 3 with one line naming host and port; the password never shows."""
    code, out, err = await cli("status", "--redis-url", "redis://ops:s3cret-pw@127.0.0.1:1/0", conn=False)
    assert code == 3
    assert out == ""
    assert "cannot reach Redis at 127.0.0.1:1" in err
    assert "s3cret-pw" not in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


async def test_wrong_password_exits_3_without_secrets(cli: Cli) -> None:
    """Credentials Redis rejects are exit 3 with a clear message; the password never shows."""
    url = REAL_REDIS_URL.replace("redis://", "redis://nobody-here:s3cret-pw@", 1)
    code, _, err = await cli("status", "--redis-url", url, conn=False)
    assert code == 3
    assert "refused" in err
    assert "s3cret-pw" not in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("http://127.0.0.1:6379", "REDIS_URL", id="scheme"),
        pytest.param("redis://u:s3cret-pw@[::1", "Invalid IPv6 URL", id="malformed"),
    ],
)
async def test_invalid_settings_are_a_usage_error(cli: Cli, url: str, message: str) -> None:
    """A bad URL is exit 2 with one line naming the problem, no traceback, no password."""
    code, _, err = await cli("status", "--redis-url", url, conn=False)
    assert code == 2
    assert message in err
    assert "s3cret-pw" not in err
    assert len(err.strip().splitlines()) == 1


async def test_publish_validates_before_connecting(cli: Cli) -> None:
    """An invalid payload is exit 1 even when Redis is unreachable (a valid one is exit 3)."""
    url = "redis://127.0.0.1:1/0"
    bad = json.dumps(payload(occurredAt="yesterday"))
    code, _, err = await cli("publish", "TICKET_CREATED", "--payload", bad, "--redis-url", url, conn=False)
    assert code == 1
    assert "$.payload.occurredAt" in err
    code, _, _ = await cli(
        "publish", "TICKET_CREATED", "--payload", json.dumps(payload()), "--redis-url", url, conn=False
    )
    assert code == 3


# ----------------------------------------------------------------------------- status


async def test_status_table_shows_lag_pending_and_consumers(
    cli: Cli, real_client: aioredis.Redis, test_prefix: str
) -> None:
    """The table has one row per group with length, DLQ, lag, pending, oldest pending, and a consumers table."""
    async with open_bus(real_client, test_prefix) as bus:
        stream, _ = await lagging_stream(real_client, bus)
    code, out, err = await cli("status", "--no-workflow")
    assert code == 0
    main_table, consumers = out.split("\n\n")
    table = rows(main_table)
    assert table[0] == [
        "STREAM",
        "LENGTH",
        "DLQ",
        "GROUP",
        "LAG",
        "PENDING",
        "OLDEST PENDING",
        "OLDEST IDLE",
        "TRIMMED",
        "CONSUMERS",
    ]
    by_group = {r[3]: r for r in table[1:]}
    assert set(by_group) == {"g-lag", "g-done"}
    lag = by_group["g-lag"]
    assert lag[:6] == [stream, "5", "1", "g-lag", "3", "2"]
    assert lag[6].endswith(("ms", "s"))
    assert lag[8:] == ["0", "1"]
    assert by_group["g-done"][:6] == [stream, "5", "1", "g-done", "0", "0"]
    assert by_group["g-done"][6] == "-"
    consumer_rows = rows(consumers)
    assert consumer_rows[0] == ["STREAM", "GROUP", "CONSUMER", "PENDING", "IDLE", "INACTIVE"]
    assert sorted(r[:4] for r in consumer_rows[1:]) == [
        [stream, "g-done", "worker-2", "0"],
        [stream, "g-lag", "worker-1", "2"],
    ]
    assert "1 streams, 2 groups, 3 unread, 2 pending, 1 dead letters, 0 trimmed unread" in err


async def test_status_json_reports_the_lagging_group(cli: Cli, real_client: aioredis.Redis, test_prefix: str) -> None:
    """``--json`` gives per-group lag, pending, oldest pending id and age, consumers, and totals."""
    async with open_bus(real_client, test_prefix) as bus:
        stream, _ = await lagging_stream(real_client, bus)
        first: Any = await real_client.xrange(stream, count=1)
    code, out, _ = await cli("status", "--json", "--no-workflow")
    assert code == 0
    doc = json.loads(out)
    (s,) = doc["streams"]
    assert (s["stream"], s["kind"], s["channel"], s["event_type"]) == (stream, "per-type", "global", "TICKET_CREATED")
    assert (s["length"], s["dead_letter_length"], s["dead_letter_stream"]) == (5, 1, stream + ":dead-letter")
    groups = {g["name"]: g for g in s["groups"]}
    lag = groups["g-lag"]
    assert (lag["lag"], lag["pending"], lag["trimmed_unread"]) == (3, 2, 0)
    assert lag["oldest_pending_id"] == first[0][0].decode()
    assert lag["oldest_pending_age_ms"] >= 50
    assert [(c["name"], c["pending"]) for c in lag["consumers"]] == [("worker-1", 2)]
    assert lag["consumers"][0]["idle_ms"] >= 0
    assert (groups["g-done"]["lag"], groups["g-done"]["pending"], groups["g-done"]["oldest_pending_id"]) == (0, 0, None)
    assert doc["totals"] == {
        "streams": 1,
        "groups": 2,
        "length": 5,
        "lag": 3,
        "pending": 2,
        "dead_letters": 1,
        "trimmed_unread": 0,
    }


async def test_status_filters_and_workflow_stream(cli: Cli, real_client: aioredis.Redis, test_prefix: str) -> None:
    """``--channel`` and ``--type`` narrow the streams; the workflow stream is listed unless filtered out."""
    async with open_bus(real_client, test_prefix) as bus:
        await bus.publish("TICKET_CREATED", payload())
        await bus.publish("TICKET_CREATED", payload(), channel="internal-notifications")
        await bus.publish("TICKET_CLOSED", payload(closedAt=TS), channel="internal-notifications")
    code, out, _ = await cli("status", "--json")
    assert code == 0
    listed = {(s["kind"], s["channel"], s["event_type"]) for s in json.loads(out)["streams"]}
    assert listed == {
        ("per-type", "global", "TICKET_CREATED"),
        ("per-type", "internal-notifications", "TICKET_CREATED"),
        ("per-type", "internal-notifications", "TICKET_CLOSED"),
        ("workflow", "", ""),
    }
    wf = next(s for s in json.loads(out)["streams"] if s["kind"] == "workflow")
    assert (wf["stream"], wf["dead_letter_stream"]) == (WORKFLOW_STREAM, "workflow:events:global:dlq")
    code, out, _ = await cli("status", "--json", "--channel", "internal-notifications")
    assert {s["event_type"] for s in json.loads(out)["streams"]} == {"TICKET_CREATED", "TICKET_CLOSED"}
    code, out, _ = await cli("status", "--json", "--type", "ticket_created")
    assert {s["channel"] for s in json.loads(out)["streams"]} == {"global", "internal-notifications"}
    code, _, err = await cli("status", "--type", "TICKET_CREATD")
    assert code == 2
    assert "TICKET_CREATED" in err


# ----------------------------------------------------------------------------- dead letters


async def test_replayed_dead_letter_is_handled_and_removed(
    cli: Cli, real_client: aioredis.Redis, test_prefix: str
) -> None:
    """A handler fails until a flag flips: the event dead-letters; after the flip ``dlq replay`` makes the
    running consumer handle it, and the dead letter is gone."""
    works = anyio.Event()
    handled: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        if not works.is_set():
            raise RuntimeError("downstream unavailable")
        handled.append(delivery)

    async with open_bus(real_client, test_prefix, max_deliveries=2, handler_retries=0, claim_idle_ms=50) as bus:
        bus.subscribe("TICKET_CREATED", handler, subscriber_id="flaky")
        stream = bus.keys.stream("global", "TICKET_CREATED")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            published = await bus.publish("TICKET_CREATED", payload())
            with anyio.fail_after(10):
                await wait_for_stats(bus, lambda s: s.dead_lettered == 1)
            original: Any = await real_client.xrange(stream)

            code, out, err = await cli("dlq", "list", "TICKET_CREATED")
            assert code == 0, err
            (header, row) = rows(out)
            assert header == ["ID", "SOURCE STREAM", "EVENT TYPE", "DELIVERIES", "REASON", "DEAD-LETTERED AT", "ERROR"]
            dl_id = row[0]
            assert row[1:5] == [stream, "TICKET_CREATED", "2", "max-deliveries"]
            assert "downstream unavailable" in row[6]

            works.set()
            code, out, err = await cli("dlq", "replay", dl_id)
            assert code == 0, err
            assert out.startswith(f"replayed {dl_id} -> {stream} ")
            with anyio.fail_after(10):
                await wait_for_stats(bus, lambda s: s.handled == 1)
            tg.cancel_scope.cancel()

    assert [d.event_id for d in handled] == [published.event_id]
    assert await real_client.xlen(Keys.dead_letter(stream)) == 0
    entries: Any = await real_client.xrange(stream)
    assert len(entries) == 2
    assert entries[1][1] == original[0][1]  # the original fields, byte for byte
    code, out, _ = await cli("dlq", "list", "--json")
    assert (code, json.loads(out)) == (0, [])


async def dead_letters(client: aioredis.Redis, keys: Keys, n: int, event_type: str = "TICKET_CREATED") -> list[str]:
    """``n`` dead letters in our format (original reference fields plus metadata), oldest first."""
    stream = keys.stream("global", event_type)
    out = []
    for i in range(n):
        fields = reference_fields(event_type, payload(), force=i == 0)
        fields.update(
            {
                b"sourceStream": stream.encode(),
                b"sourceMessageId": f"{1000 + i}-0".encode(),
                b"deliveries": b"10",
                b"deadLetteredAt": TS.encode(),
                b"lastError": b"handler: RuntimeError: boom",
                b"deadLetterReason": b"max-deliveries",
            }
        )
        entry_id: Any = await client.xadd(Keys.dead_letter(stream), fields)  # type: ignore[arg-type]
        out.append(entry_id.decode())
    return out


async def test_dlq_show_and_json(cli: Cli, real_client: aioredis.Redis, test_prefix: str) -> None:
    """``dlq show`` prints metadata and the original fields; ``--json`` has the parsed envelope."""
    keys = Keys(test_prefix)
    (dl_id,) = await dead_letters(real_client, keys, 1)
    code, out, _ = await cli("dlq", "show", dl_id)
    assert code == 0
    assert out.startswith(f"dead letter {dl_id}\n")
    facts = {r[0]: r[1] for r in rows(out) if len(r) == 2}
    assert (facts["reason"], facts["deliveries"]) == ("max-deliveries", "10")
    assert facts["error"] == "handler: RuntimeError: boom"
    assert '"eventType": "TICKET_CREATED"' in out
    assert "  force: 1" in out
    code, out, _ = await cli("dlq", "show", dl_id, "--json")
    doc = json.loads(out)
    assert doc["deliveries"] == 10
    assert doc["source_id"] == "1000-0"
    assert doc["original"]["event"]["payload"] == payload()
    assert set(doc["original"]) == {"event", "channel", "force"}
    code, _, err = await cli("dlq", "show", "1-0")
    assert code == 1
    assert "no dead letter 1-0" in err
    code, _, err = await cli("dlq", "show", "not-an-id")
    assert code == 2


async def test_dlq_replay_all_restores_original_bytes(cli: Cli, real_client: aioredis.Redis, test_prefix: str) -> None:
    """``replay --all`` writes every dead letter's original fields (order, bytes, ``force``) and empties the DLQ."""
    keys = Keys(test_prefix)
    stream = keys.stream("global", "TICKET_CREATED")
    ids = await dead_letters(real_client, keys, 3)
    before: Any = await real_client.xrange(Keys.dead_letter(stream))
    code, out, err = await cli("dlq", "replay", "--all", "--stream", "TICKET_CREATED", "--json")
    assert code == 0, err
    results = json.loads(out)
    assert [(r["id"], r["status"]) for r in results] == [(i, "replayed") for i in ids]
    written: Any = await real_client.xrange(stream)
    assert [e[0].decode() for e in written] == [r["entry_id"] for r in results]
    meta = {b"sourceStream", b"sourceMessageId", b"deliveries", b"deadLetteredAt", b"lastError", b"deadLetterReason"}
    for (_, replayed), (_, dead) in zip(written, before, strict=True):
        assert list(replayed.items()) == [(k, v) for k, v in dead.items() if k not in meta]
    assert await real_client.xlen(Keys.dead_letter(stream)) == 0
    code, _, err = await cli("dlq", "replay", "--all", "--stream", "TICKET_CREATED")
    assert code == 1
    assert "nothing to replay" in err


async def test_dlq_replay_refused_write_keeps_the_dead_letter(
    cli: Cli, real_client: aioredis.Redis, test_prefix: str
) -> None:
    """When the source stream key holds another type, replay fails (exit 1) and deletes nothing."""
    keys = Keys(test_prefix)
    stream = keys.stream("global", "TICKET_CREATED")
    (dl_id,) = await dead_letters(real_client, keys, 1)
    await real_client.set(stream, "not a stream")
    code, _, err = await cli("dlq", "replay", dl_id)
    assert code == 1
    assert "WRONGTYPE" in err
    assert await real_client.xlen(Keys.dead_letter(stream)) == 1


async def test_dlq_replay_usage_errors(cli: Cli, real_client: aioredis.Redis, test_prefix: str) -> None:
    """IDs and ``--all`` together, or neither, are usage errors; an unknown id is exit 1."""
    (dl_id,) = await dead_letters(real_client, Keys(test_prefix), 1)
    assert (await cli("dlq", "replay", dl_id, "--all"))[0] == 2
    assert (await cli("dlq", "replay"))[0] == 2
    code, _, err = await cli("dlq", "replay", "99-0", "--stream", "TICKET_CREATED")
    assert code == 1
    assert "no dead letter 99-0" in err


async def test_dlq_workflow_format_replays_the_flat_fields(
    cli: Cli, real_client: aioredis.Redis, test_prefix: str
) -> None:
    """A workflow-consumer dead letter (``original_message``) lists with its type and replays its flat fields."""
    source = f"{test_prefix}workflow:events:global"
    dlq = f"{source}:dlq"
    flat = {"event_id": str(uuid.uuid4()), "event_type": "TICKET_CREATED", "tenant": "acme", "payload_json": "{}"}
    await real_client.xadd(
        dlq,
        {
            "original_message": json.dumps(flat),
            "error_message": "trigger failed",
            "error_stack": "Traceback ...",
            "source_stream": source,
            "original_id": "5-0",
            "moved_at": TS,
        },
    )
    code, out, _ = await cli("dlq", "list", dlq)
    assert code == 0
    row = rows(out)[1]
    assert row[1:] == [source, "TICKET_CREATED", "-", "failed", TS, "trigger failed"]
    code, out, err = await cli("dlq", "replay", row[0], "--stream", dlq)
    assert code == 0, err
    (entry,) = await xrange(real_client, source)
    assert entry[1] == {k.encode(): v.encode() for k, v in flat.items()}
    assert await real_client.xlen(dlq) == 0


async def test_dlq_purge(cli: Cli, real_client: aioredis.Redis, test_prefix: str, monkeypatch: Any) -> None:
    """Purge needs ``--yes`` when not interactive (exit 2), honours a "no" on a terminal, deletes with --yes."""
    keys = Keys(test_prefix)
    dlq = Keys.dead_letter(keys.stream("global", "TICKET_CREATED"))
    ids = await dead_letters(real_client, keys, 3)
    code, _, err = await cli("dlq", "purge", ids[0])
    assert code == 2
    assert "--yes" in err
    assert await real_client.xlen(dlq) == 3

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, _, err = await cli("dlq", "purge", ids[0])
    assert code == 1
    assert "[y/N]" in err
    assert await real_client.xlen(dlq) == 3
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, out, _ = await cli("dlq", "purge", ids[0])
    assert (code, out) == (0, f"purged 1 dead letters from {dlq}\n")
    code, out, _ = await cli("dlq", "purge", "--all", "--stream", "TICKET_CREATED", "--yes")
    assert (code, out) == (0, f"purged 2 dead letters from {dlq}\n")
    assert await real_client.xlen(dlq) == 0


# ----------------------------------------------------------------------------- publish


async def test_publish_valid_prints_ids_and_writes(
    cli: Cli, real_client: aioredis.Redis, test_prefix: str, tmp_path: Path
) -> None:
    """A valid publish prints the event id and an entry id per stream (global also writes the workflow entry)."""
    keys = Keys(test_prefix)
    doc = payload(tenant="ignored")
    code, out, err = await cli("publish", "ticket_created", "--payload", json.dumps(doc), "--tenant", "acme")
    assert code == 0, err
    lines = out.splitlines()
    event_id = lines[0].removeprefix("published TICKET_CREATED ")
    entries = dict(line.split() for line in lines[1:])
    stream = keys.stream("global", "TICKET_CREATED")
    assert set(entries) == {WORKFLOW_STREAM, stream}
    (entry,) = await xrange(real_client, stream)
    assert entry[0].decode() == entries[stream]
    envelope = json.loads(entry[1][b"event"])
    assert (envelope["id"], envelope["payload"]["tenantId"]) == (event_id, "acme")

    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload()))
    fixed = str(uuid.uuid4())
    code, out, _ = await cli(
        "publish", "TICKET_CREATED", "--payload", f"@{path}", "--channel", "internal-notifications",
        "--event-id", fixed, "--json",
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["event_id"] == fixed
    assert list(doc["entries"]) == [keys.stream("internal-notifications", "TICKET_CREATED")]


async def test_publish_from_stdin_with_fanout(
    cli: Cli, real_client: aioredis.Redis, test_prefix: str, monkeypatch: Any
) -> None:
    """``--payload -`` reads stdin; ``--fanout`` writes the reference's copies, each with its own event id."""

    class Stdin(io.StringIO):
        buffer = io.BytesIO(json.dumps(payload()).encode())

    monkeypatch.setattr("sys.stdin", Stdin())
    code, out, err = await cli("publish", "TICKET_CREATED", "--payload", "-", "--fanout", "--json")
    assert code == 0, err
    doc = json.loads(out)
    keys = Keys(test_prefix)
    assert set(doc["entries"]) == {
        WORKFLOW_STREAM,
        keys.stream("global", "TICKET_CREATED"),
        keys.stream("internal-notifications", "TICKET_CREATED"),
        keys.stream("emailservice::v7", "TICKET_CREATED"),
    }
    ids = {}
    for stream in doc["entries"]:
        if stream != WORKFLOW_STREAM:
            (entry,) = await xrange(real_client, stream)
            ids[stream] = json.loads(entry[1][b"event"])["id"]
    assert ids == {s: i for s, i in doc["event_ids"].items() if s != WORKFLOW_STREAM}
    assert len(set(ids.values())) == 3 and ids[keys.stream("global", "TICKET_CREATED")] == doc["event_id"]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        pytest.param(
            ["TICKET_CREATED", "--payload", json.dumps(payload(occurredAt="2026-01-23T10:11:12+00:00"))],
            1,
            "TICKET_CREATED: invalid $.payload.occurredAt",
            id="schema",
        ),
        pytest.param(
            ["TICKET_CREATED", "--payload", json.dumps({"ticketId": TICKET_ID})],
            1,
            "TICKET_CREATED: invalid $.payload",
            id="missing-tenant",
        ),
        pytest.param(["TICKET_CREATED", "--payload", "{nope"], 1, "not JSON", id="json"),
        pytest.param(["TICKET_CREATED", "--payload", "[1]"], 1, "Expected `object`", id="array"),
        pytest.param(
            ["TICKET_CREATED", "--payload", json.dumps(payload()), "--event-id", "42"], 1, "$.id", id="event-id"
        ),
        pytest.param(["TICKET_CREATD", "--payload", "{}"], 2, "TICKET_CREATED", id="unknown-type"),
        pytest.param(["TICKET_CREATED", "--payload", "@/nonexistent/x.json"], 2, "cannot read", id="no-file"),
    ],
)
async def test_publish_invalid_writes_nothing(
    cli: Cli, real_client: aioredis.Redis, test_prefix: str, argv: list[str], code: int, message: str
) -> None:
    """Invalid input exits 1 (2 for an unknown type or unreadable file) with the path/rule; nothing is written."""
    got, out, err = await cli("publish", *argv)
    assert (got, out) == (code, "")
    assert message in err
    assert [k async for k in real_client.scan_iter(match=f"{test_prefix}*")] == []


# ----------------------------------------------------------------------------- tail


async def test_tail_prints_json_lines_without_a_group(cli: Cli, real_client: aioredis.Redis, test_prefix: str) -> None:
    """``tail TYPE --count N`` prints the last N entries oldest first as JSON lines and creates no group."""
    async with open_bus(real_client, test_prefix) as bus:
        ids = [(await bus.publish("TICKET_CREATED", payload())).event_id for _ in range(3)]
    stream = Keys(test_prefix).stream("global", "TICKET_CREATED")
    code, out, _ = await cli("tail", "TICKET_CREATED", "--count", "2")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["fields"]["event"]["id"] for line in lines] == ids[1:]
    assert {line["stream"] for line in lines} == {stream}
    assert lines[0]["fields"]["channel"] == "global"
    code, out, _ = await cli("tail", stream, "--count", "1", "--raw")
    assert isinstance(json.loads(out)["fields"]["event"], str)
    assert await real_client.xinfo_groups(stream) == []
    code, _, err = await cli("tail", f"{test_prefix}nothing:here")
    assert code == 1
    assert "no stream" in err


async def test_tail_follow_prints_new_entries(cli: Cli, real_client: aioredis.Redis, test_prefix: str) -> None:
    """``tail --follow --max N`` prints the backlog, then entries added while it waits, and never acks."""
    async with open_bus(real_client, test_prefix) as bus:
        first = (await bus.publish("TICKET_CREATED", payload())).event_id
        stream = bus.keys.stream("global", "TICKET_CREATED")
        async with anyio.create_task_group() as tg:
            result: list[tuple[int, str, str]] = []

            async def follow() -> None:
                result.append(await cli("tail", "TICKET_CREATED", "--follow", "--count", "5", "--max", "3"))

            tg.start_soon(follow)
            later = []
            for _ in range(2):
                await anyio.sleep(0.2)
                later.append((await bus.publish("TICKET_CREATED", payload())).event_id)
    ((code, out, _),) = result
    assert code == 0
    assert [json.loads(line)["fields"]["event"]["id"] for line in out.splitlines()] == [first, *later]
    assert await real_client.xinfo_groups(stream) == []


async def test_replay_script_skips_a_dead_letter_already_gone(real_client: aioredis.Redis, test_prefix: str) -> None:
    """The replay script writes nothing and returns nil when the dead letter was replayed or purged meanwhile."""
    keys = Keys(test_prefix)
    stream = keys.stream("global", "TICKET_CREATED")
    (dl_id,) = await dead_letters(real_client, keys, 1)
    await real_client.xdel(Keys.dead_letter(stream), dl_id)
    reply = await real_client.eval(REPLAY_SCRIPT, 2, Keys.dead_letter(stream), stream, dl_id, "event", "{}")
    assert reply is None
    assert await real_client.exists(stream) == 0


async def test_status_flags_dead_letter_streams_past_the_cap(
    cli: Cli, real_client: aioredis.Redis, test_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``status`` shows the dead-letter length, marks a stream past BUS_DEAD_LETTER_MAXLEN and warns once."""
    keys = Keys(test_prefix)
    await dead_letters(real_client, keys, 3)
    stream = keys.stream("global", "TICKET_CREATED")
    await real_client.xadd(stream, reference_fields("TICKET_CREATED", payload()))  # type: ignore[arg-type]
    dlq = Keys.dead_letter(stream)
    monkeypatch.setenv("BUS_DEAD_LETTER_MAXLEN", "2")
    code, out, err = await cli("status", "--no-workflow")
    assert code == 0
    assert any(r[:3] == [stream, "1", "3!"] for r in rows(out)), out
    assert f"warning: {dlq} is past BUS_DEAD_LETTER_MAXLEN (2)" in err and "writes" not in err
    code, out, _ = await cli("status", "--json", "--no-workflow")
    doc = json.loads(out)
    assert (doc["dead_letter_cap"], doc["dead_letter_streams_over_cap"], doc["writes_refused"]) == (2, [dlq], "")
    monkeypatch.setenv("BUS_DEAD_LETTER_MAXLEN", "3")
    code, out, err = await cli("status", "--no-workflow")
    assert "3!" not in out and "BUS_DEAD_LETTER_MAXLEN" not in err
