"""Dead letters: after max deliveries, for poison input and for Reject; original bytes kept, acked."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from bus import EventBus, Keys, Reject
from bus.testing import (
    Recorder,
    fast_settings,
    reference_fields,
    ticket_created_payload,
    wait_for_stats,
    xadd_raw,
    xadd_reference,
)

TS = "2026-01-23T10:11:12.345Z"


def make_bus(client: aioredis.Redis, prefix: str, **overrides: Any) -> EventBus:
    """A bus on the test's backend with fast timings and keys under the test prefix."""
    return EventBus(fast_settings(prefix=prefix, **overrides), client=client)


def envelope(event_type: str, payload: object, timestamp: str = TS) -> bytes:
    """A compact reference envelope with a fresh id."""
    doc = {"id": str(uuid.uuid4()), "eventType": event_type, "timestamp": timestamp, "payload": payload}
    return json.dumps(doc, separators=(",", ":")).encode()


async def test_always_failing_entry_is_dead_lettered_after_exactly_max_deliveries(
    backend: aioredis.Redis, test_prefix: str
) -> None:
    """An always-failing entry is dead-lettered after exactly max_deliveries runs, bytes kept, not pending."""
    async with make_bus(backend, test_prefix, max_deliveries=3, handler_retries=0) as bus:
        recorder = Recorder(fail={n: RuntimeError(f"boom {n}") for n in range(1, 10)})
        bus.subscribe("TICKET_CREATED", recorder, subscriber_id="always-fails")
        stream = bus.keys.stream("global", "TICKET_CREATED")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            entry_id, _ = await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            source: Any = await backend.xrange(stream)
            [(_, original)] = source
            with anyio.fail_after(10):
                stats = await wait_for_stats(bus, lambda s: s.dead_lettered == 1)
            tg.cancel_scope.cancel()
        assert recorder.calls == 3
        [letter] = await bus.dead_letters("TICKET_CREATED")
        assert letter.fields == original  # byte for byte
        assert (letter.source_stream, letter.source_message_id, letter.deliveries) == (stream, entry_id, 3)
        assert (letter.reason, letter.last_error) == ("max-deliveries", "always-fails: RuntimeError: boom 3")
        assert letter.dead_lettered_at.endswith("Z")
        letters: Any = await backend.xrange(Keys.dead_letter(stream))
        [(_, raw)] = letters
        assert list(raw)[: len(original)] == list(original)  # original fields first, in order
        assert {b"sourceStream", b"sourceMessageId", b"deliveries", b"deadLetteredAt"} <= set(raw)
        assert (await bus.status()).pending == 0
        assert (stats.failed, stats.acked) == (3, 1)


POISON = [
    pytest.param({b"channel": b"global"}, "no `event` field", id="missing-event-field"),
    pytest.param({b"event": b"{not json", b"channel": b"global"}, "JSON is malformed", id="bad-json"),
    pytest.param(
        {b"event": envelope("NOT_A_TYPE", {}), b"channel": b"global"}, "unknown event type 'NOT_A_TYPE'", id="unknown"
    ),
    pytest.param(
        {b"event": envelope("TICKET_CREATED", {**ticket_created_payload(), "ticketId": "nope"})},
        "TICKET_CREATED: invalid $.payload.ticketId",
        id="schema-invalid",
    ),
    pytest.param(
        {b"event": envelope("TICKET_CREATED", ticket_created_payload(), "2026-01-23T10:11:12+00:00")},
        "$.timestamp",
        id="offset-timestamp",
    ),
    pytest.param(
        {b"event": envelope("TICKET_UPDATED", ticket_created_payload())},
        "does not match the stream's event type TICKET_CREATED",
        id="wrong-stream",
    ),
]


@pytest.mark.parametrize(("fields", "reason"), POISON)
async def test_poison_input_is_dead_lettered_with_its_reason(
    backend: aioredis.Redis, test_prefix: str, fields: dict[bytes, bytes], reason: str
) -> None:
    """Poison input is dead-lettered after one attempt with the reason, never handled, never silently dropped."""
    async with make_bus(backend, test_prefix) as bus:
        recorder = Recorder()
        bus.subscribe("TICKET_CREATED", recorder)
        stream = bus.keys.stream("global", "TICKET_CREATED")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            bad_id = await xadd_raw(backend, stream, fields)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
            with anyio.fail_after(5):
                stats = await wait_for_stats(bus, lambda s: s.dead_lettered == 1 and s.handled == 1)
            tg.cancel_scope.cancel()
        [letter] = await bus.dead_letters("TICKET_CREATED")
        assert (letter.reason, letter.deliveries, letter.source_message_id) == ("invalid", 1, bad_id)
        assert reason in letter.last_error
        assert letter.fields == fields
        assert len(recorder.deliveries) == 1 and stats.invalid == 1
        assert (await bus.status()).pending == 0


async def test_reject_dead_letters_at_once(backend: aioredis.Redis, test_prefix: str) -> None:
    """A handler raising Reject dead-letters the entry on its first delivery, with the handler's reason."""
    async with make_bus(backend, test_prefix, handler_retries=3) as bus:
        recorder = Recorder(fail={1: Reject("customer unknown")})
        bus.subscribe("TICKET_CREATED", recorder, subscriber_id="mailer")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys, force=True)
            with anyio.fail_after(5):
                await wait_for_stats(bus, lambda s: s.dead_lettered == 1)
            tg.cancel_scope.cancel()
        [letter] = await bus.dead_letters("TICKET_CREATED")
        assert (letter.reason, letter.last_error) == ("rejected", "mailer: Reject: customer unknown")
        assert letter.fields[b"force"] == b"1" and recorder.calls == 1


async def test_dead_letters_past_the_cap_are_kept_counted_and_warned_once(
    backend: aioredis.Redis, test_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Past BUS_DEAD_LETTER_MAXLEN nothing is trimmed: every dead letter kept, those past it counted, one warning."""
    async with make_bus(backend, test_prefix, dead_letter_max_len=3) as bus:
        bus.subscribe(
            "TICKET_CREATED", Recorder(fail={n: Reject("nope") for n in range(1, 10)}), subscriber_id="rejects"
        )
        stream = bus.keys.stream("global", "TICKET_CREATED")
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            for n in range(1, 6):  # one at a time: each flush sees the length its dead letter made
                await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=bus.keys)
                with anyio.fail_after(5):
                    await wait_for_stats(bus, lambda s, n=n: s.dead_lettered == n)  # type: ignore[misc]
            tg.cancel_scope.cancel()
        assert int(await backend.xlen(Keys.dead_letter(stream))) == 5  # none trimmed
        assert bus.stats.dead_lettered_over_cap == 2
        warnings = [r.getMessage() for r in caplog.records if "BUS_DEAD_LETTER_MAXLEN" in r.getMessage()]
        assert len(warnings) == 1 and Keys.dead_letter(stream) in warnings[0] and "4 entries" in warnings[0]
        [row] = (await bus.status()).streams
        assert row.dead_letter_length == 5


def test_reference_fields_match_the_reference_layout() -> None:
    """reference_fields writes compact JSON with id, eventType, timestamp, payload in that order, then channel."""
    fields = reference_fields("TICKET_CREATED", {"a": "é"}, channel="emailservice::v7", event_id="e", timestamp=TS)
    event = '{"id":"e","eventType":"TICKET_CREATED","timestamp":"2026-01-23T10:11:12.345Z","payload":{"a":"é"}}'
    assert fields == {b"event": event.encode(), b"channel": b"emailservice::v7"}


@pytest.mark.parametrize("fmt", ["per-type", "workflow"])
def test_both_dead_letter_formats_redact_alike(fmt: str) -> None:
    """A known secret in the fields or the error and a URL password in the error are masked by both
    formats (per-type ``{stream}:dead-letter`` and the workflow DLQ); the rest is kept."""
    from bus.consume import Failure, PerTypeDeadLetters, WorkflowDeadLetters
    from bus.security import register_secret

    secret = f"s3cret-{uuid.uuid4().hex}"
    register_secret(secret)
    fields = {b"event_id": b"e-1", b"note": f"token {secret}".encode()}
    error = f"boom with {secret} at redis://user:hunter2@db:6379"
    failure = Failure("rejected", f"h: RuntimeError: {error}", error, f"Traceback ...\nRuntimeError: {error}")
    if fmt == "per-type":
        target, out = PerTypeDeadLetters(group="g").build("s", "1-1", fields, 2, failure)
        assert target == "s:dead-letter" and out[b"consumerGroup"] == b"g"
        texts = [out[b"note"], out[b"lastError"]]
        assert out[b"event_id"] == b"e-1"
    else:
        target, out = WorkflowDeadLetters("dlq").build("s", "1-1", fields, 2, failure)
        assert target == "dlq" and set(out) == {
            b"original_message",
            b"error_message",
            b"error_stack",
            b"source_stream",
            b"original_id",
            b"moved_at",
        }
        original = json.loads(out[b"original_message"])
        assert original["event_id"] == "e-1"
        texts = [original["note"].encode(), out[b"error_message"], out[b"error_stack"]]
    for text in texts:
        assert secret.encode() not in text and b"hunter2" not in text, text
