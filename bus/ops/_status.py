"""``status``: every stream with its groups, consumers and dead letters, and the totals.

Built on :mod:`bus._inspect` (the per-stream XINFO reading that :meth:`EventBus.status` and the
consume engine's trimming check share). On top of it: the never-prefixed workflow stream with its
``workflow:events:global:dlq`` (the bus's :attr:`~bus.Keys.workflow_stream` and
:attr:`~bus.Keys.workflow_dlq`: tagged with ``BUS_KEY_HASHTAG``), filters by channel, event
type and group, totals, and leaving out streams that hold nothing (no entries, no dead letters,
nothing pending): once the workflow converter has created its group on every per-type stream,
those are most of the streams.

Two warnings ride along: dead-letter streams past ``BUS_DEAD_LETTER_MAXLEN`` (a threshold: they
are never trimmed), and whether Redis refuses writes right now (one write probe: out of memory,
read-only replica, loading, failed save). While it does, every consume loop on it is paused
(it reads and claims nothing, and resumes by itself once writes succeed; see
:mod:`bus.consume._health`), so the consumers listed stop reading until then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from .._inspect import StreamStatus, discover_streams, inspect_streams
from .._keys import CHANNEL_GLOBAL, Keys
from .._redis import redis_errors
from ..consume._health import write_refusal

if TYPE_CHECKING:
    from .._bus import EventBus

__all__ = ["StatusReport", "StatusRow", "StatusTotals", "is_empty", "status"]


class StatusRow(msgspec.Struct, frozen=True, kw_only=True):
    """One stream in a status report, with the kind of stream and where its dead letters go."""

    kind: Literal["per-type", "workflow"]
    dead_letter_stream: str
    stream: StreamStatus


class StatusTotals(msgspec.Struct, frozen=True, kw_only=True):
    """Sums over the rows of a report (unknown lag and trimmed counts count as 0)."""

    streams: int
    groups: int
    length: int
    lag: int
    pending: int
    dead_letters: int
    trimmed_unread: int


class StatusReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`status` found: the rows shown, their totals, and how many empty streams were left out."""

    server_time_ms: int
    rows: tuple[StatusRow, ...]
    totals: StatusTotals
    #: Streams left out because they hold nothing (``include_empty=False``).
    hidden_empty: int = 0
    #: ``BUS_DEAD_LETTER_MAXLEN``, and the dead-letter streams (of the rows shown) past it.
    dead_letter_cap: int = 0
    over_cap: tuple[str, ...] = ()
    #: Empty while Redis accepts writes; else its refusal (consumers on it are paused meanwhile).
    writes_refused: str = ""


def is_empty(stream: StreamStatus) -> bool:
    """True when a stream holds nothing: no entries, no dead letters, no group with pending entries."""
    return stream.length == 0 and stream.dead_letter_length == 0 and all(g.pending == 0 for g in stream.groups)


def _totals(streams: list[StreamStatus]) -> StatusTotals:
    return StatusTotals(
        streams=len(streams),
        groups=sum(len(s.groups) for s in streams),
        length=sum(s.length for s in streams),
        lag=sum(g.lag or 0 for s in streams for g in s.groups),
        pending=sum(g.pending for s in streams for g in s.groups),
        dead_letters=sum(s.dead_letter_length for s in streams),
        trimmed_unread=sum(g.trimmed_unread or 0 for s in streams for g in s.groups),
    )


async def status(
    bus: EventBus,
    *,
    channel: str | None = None,
    event_type: str | None = None,
    group: str | None = None,
    include_workflow: bool = True,
    include_empty: bool = True,
) -> StatusReport:
    """The status of every per-type stream under the bus's prefix (found by SCAN), plus the
    workflow stream unless ``include_workflow`` is false or a channel other than ``global`` or
    an event type is asked for.

    ``channel`` / ``event_type`` (exact registry name) narrow the streams, ``group`` the groups;
    ``include_empty=False`` leaves out streams that hold nothing (:func:`is_empty`) and counts
    them in ``hidden_empty``. Raises the bus's backend errors (unreachable, timeout, auth).
    """
    client, keys = bus.client, bus.keys
    names = await discover_streams(client, keys, channel)
    if event_type is not None:
        names = [n for n in names if (keys.parse_stream(n) or ("", ""))[1] == event_type]
    found = await inspect_streams(client, keys, names, group=group)
    rows = [StatusRow(kind="per-type", dead_letter_stream=Keys.dead_letter(s.stream), stream=s) for s in found.streams]
    if include_workflow and event_type is None and channel in (None, CHANNEL_GLOBAL):
        wf = await inspect_streams(client, keys, [keys.workflow_stream], group=group)
        if wf.streams:
            with redis_errors(f"XLEN {keys.workflow_dlq}"):
                dl_len = int(await client.xlen(keys.workflow_dlq))
            fixed = msgspec.structs.replace(wf.streams[0], channel="", event_type="", dead_letter_length=dl_len)
            rows.append(StatusRow(kind="workflow", dead_letter_stream=keys.workflow_dlq, stream=fixed))
    shown = rows if include_empty else [r for r in rows if not is_empty(r.stream)]
    cap = bus.settings.dead_letter_max_len
    refused = await write_refusal(client)
    return StatusReport(
        server_time_ms=found.server_time_ms,
        rows=tuple(shown),
        totals=_totals([r.stream for r in shown]),
        hidden_empty=len(rows) - len(shown),
        dead_letter_cap=cap,
        over_cap=tuple(r.dead_letter_stream for r in shown if r.stream.dead_letter_length > cap),
        writes_refused=str(refused) if refused is not None else "",
    )
