"""``bus.ops.status``: rows per stream with kind and dead-letter stream, totals, empty streams left out."""

from __future__ import annotations

import redis.asyncio as aioredis

from bus import WORKFLOW_DLQ, WORKFLOW_STREAM, EventBus, Keys, ops
from bus.testing import fake_bus, fast_settings, ticket_created_payload, xadd_raw, xadd_reference


async def test_status_leaves_out_streams_that_hold_nothing(backend: aioredis.Redis, test_prefix: str) -> None:
    """A stream with only an empty group is hidden unless include_empty; a caught-up group of a stream with entries
    stays, and so does a stream emptied by XDEL while an entry is still pending."""
    async with EventBus(fast_settings(prefix=test_prefix), client=backend) as bus:
        keys = bus.keys
        empty = keys.stream("global", "TICKET_CLOSED")
        await backend.xgroup_create(empty, "converter", id="$", mkstream=True)
        full = keys.stream("global", "TICKET_CREATED")
        await xadd_reference(backend, "TICKET_CREATED", ticket_created_payload(), keys=keys)
        await backend.xgroup_create(full, "done", id="$")
        pending = keys.stream("global", "TICKET_UPDATED")
        entry_id = await xadd_raw(backend, pending, {b"event": b"{}"})
        await backend.xgroup_create(pending, "slow", id="0")
        await backend.xreadgroup("slow", "c1", {pending: ">"})
        await backend.xdel(pending, entry_id)

        shown = await ops.status(bus, include_workflow=False, include_empty=False)
        assert [r.stream.stream for r in shown.rows] == sorted([full, pending])
        assert shown.hidden_empty == 1
        assert [g.name for g in shown.rows[0].stream.groups] == ["done"]
        every = await ops.status(bus, include_workflow=False)
        assert [r.stream.stream for r in every.rows] == sorted([empty, full, pending])
        assert (every.hidden_empty, every.totals.streams, every.totals.groups) == (0, 3, 3)
        assert ops.is_empty(next(r.stream for r in every.rows if r.stream.stream == empty))


async def test_status_rows_totals_and_the_workflow_stream() -> None:
    """Per-type rows name {stream}:dead-letter, the workflow row its :dlq; totals add lag, pending, dead letters."""
    async with fake_bus() as bus:
        await bus.publish("TICKET_CREATED", ticket_created_payload())
        stream = bus.keys.stream("global", "TICKET_CREATED")
        await bus.client.xgroup_create(stream, "g", id="0")
        await bus.client.xadd(Keys.dead_letter(stream), {"event": "{}"})
        await bus.client.xadd(WORKFLOW_DLQ, {"original_message": "{}"})

        report = await ops.status(bus)
        kinds = {(r.kind, r.stream.stream, r.dead_letter_stream) for r in report.rows}
        assert kinds == {
            ("per-type", stream, stream + ":dead-letter"),
            ("workflow", WORKFLOW_STREAM, WORKFLOW_DLQ),
        }
        workflow = next(r.stream for r in report.rows if r.kind == "workflow")
        assert (workflow.channel, workflow.event_type, workflow.dead_letter_length) == ("", "", 1)
        assert report.totals == ops.StatusTotals(
            streams=2, groups=1, length=2, lag=1, pending=0, dead_letters=2, trimmed_unread=0
        )
        assert [r.kind for r in (await ops.status(bus, event_type="TICKET_CREATED")).rows] == ["per-type"]
        assert [r.kind for r in (await ops.status(bus, channel="emailservice::v7")).rows] == []
        assert [r.kind for r in (await ops.status(bus, include_workflow=False)).rows] == ["per-type"]
