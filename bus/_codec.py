"""Wire encoding of stream entries: envelopes, timestamps, event ids, XADD commands.

The only place the publish path touches JSON on the wire. Everything here is pure and
allocation-light: the envelope is spliced around the payload bytes the registry already
produced (ids, event types and timestamps are validated before they get here, so they need no
escaping), and the constant parts of an XADD (stream key, trim arguments, field names, channel)
are packed once per stream and reused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from schemas import (
    WORKFLOW_FIELDS,
    WORKFLOW_OPTIONAL_FIELDS,
    WORKFLOW_PAYLOAD_KEYS,
    Payload,
    encode_bus_event,
    utc_now_iso,
    workflow_from_payload,
)
from schemas import workflow_values as workflow_entry

from ._keys import CHANNEL_GLOBAL, WORKFLOW_STREAM
from .wire import bulk, header

__all__ = [
    "Route",
    "XaddPacker",
    "encode_envelope",
    "new_event_id",
    "now_iso",
    "payload_view",
    "workflow_entry",
    "workflow_pairs",
]

TrimPolicy = Literal["approx", "safe", "none"]

_SAFE_TYPE = re.compile(r"[A-Za-z0-9_.:\-]+\Z")

# -- event ids: version-4 uuids cut from a pooled random buffer -----------------------------------

_IDS_PER_POOL = 256
#: Where each of the 32 hex digits of 16 random bytes goes in ``xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx``.
_HEX_POS = [j + (j >= 8) + (j >= 12) + (j >= 16) + (j >= 20) for j in range(32)]
#: The variant digit (RFC 4122: 10xx): any random hex digit -> 8, 9, a or b, each equally likely.
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
_ID_TEMPLATE = b"00000000-0000-4000-8000-000000000000" * _IDS_PER_POOL
_IDS: list[str] = []


def _refill_ids() -> None:
    """Cut ``_IDS_PER_POOL`` uuid4 strings from one ``os.urandom`` call (strided copies, one decode)."""
    digits = os.urandom(16 * _IDS_PER_POOL).hex().encode()
    out = bytearray(_ID_TEMPLATE)
    for j, k in enumerate(_HEX_POS):
        if j == 12:
            continue  # the version digit: the template's 4
        column = digits[j::32]
        out[k::36] = column.translate(_VARIANT) if j == 16 else column
    text = out.decode()
    _IDS.extend([text[i : i + 36] for i in range(0, 36 * _IDS_PER_POOL, 36)])


def new_event_id() -> str:
    """A random (version 4, RFC 4122 variant) uuid string, 122 random bits from ``os.urandom``.

    Taken from a pool refilled 256 ids at a time (~0.25 us per id, ``str(uuid.uuid4())`` costs
    ~2.4 us). ``list.pop`` is atomic, so threads never share an id; a forked child starts with
    an empty pool (it must not replay its parent's ids).
    """
    try:
        return _IDS.pop()
    except IndexError:
        _refill_ids()
        return _IDS.pop()


os.register_at_fork(after_in_child=_IDS.clear)

#: The current UTC time, ``...Z`` (``schemas.utc_now_iso``: one implementation for every layer).
now_iso = utc_now_iso

_ENVELOPE_MIDDLE: dict[str, bytes] = {}
_ENV_ID = b'{"id":"'
_ENV_PAYLOAD = b'","payload":'


def _envelope_middle(event_type: str) -> bytes | None:
    """``","eventType":"<type>","timestamp":"`` (cached), or None when the type needs JSON escaping."""
    middle = _ENVELOPE_MIDDLE.get(event_type)
    if middle is None:
        if not _SAFE_TYPE.match(event_type):
            return None
        middle = _ENVELOPE_MIDDLE[event_type] = b'","eventType":"' + event_type.encode() + b'","timestamp":"'
    return middle


def encode_envelope(event_id: str, event_type: str, timestamp: str, payload: bytes) -> bytes:
    """The compact envelope JSON ``{"id","eventType","timestamp","payload"}`` around payload bytes.

    ``event_id`` must be a validated uuid and ``timestamp`` a validated ISO string (neither can
    hold characters that JSON escapes). Byte-for-byte equal to ``schemas.encode_bus_event``.
    """
    middle = _envelope_middle(event_type)
    if middle is None:
        return encode_bus_event(event_id, event_type, timestamp, payload)
    return b"".join((_ENV_ID, event_id.encode(), middle, timestamp.encode(), _ENV_PAYLOAD, payload, b"}"))


_STRUCT_VIEWS: dict[type[Any], tuple[tuple[str, str], ...]] = {}


def payload_view(payload: Mapping[str, Any] | Payload) -> Mapping[str, Any]:
    """The payload keys the workflow entry reads (tenant, user, event name), by wire name.

    A mapping is returned as is; a Struct yields a small dict of just those keys.
    """
    if isinstance(payload, Mapping):
        return payload
    cls = type(payload)
    pairs = _STRUCT_VIEWS.get(cls)
    if pairs is None:
        wanted = set(WORKFLOW_PAYLOAD_KEYS)
        pairs = _STRUCT_VIEWS[cls] = tuple(
            (f.encode_name, f.name) for f in msgspec.structs.fields(cls) if f.encode_name in wanted
        )
    out: dict[str, Any] = {}
    for wire, attr in pairs:
        value = getattr(payload, attr)
        if value is not msgspec.UNSET:
            out[wire] = value
    return out


def workflow_pairs(values: tuple[bytes, ...]) -> list[bytes]:
    """``[field, value, ...]`` of a workflow entry (for the idempotency script)."""
    out: list[bytes] = []
    for (_, key), value in zip(_WF_NAMES, values, strict=True):
        out.append(key)
        out.append(value)
    return out


_WF_NAMES = tuple((name, name.encode()) for name in WORKFLOW_FIELDS)
#: The field heads in wire order: ``XaddPacker.workflow`` pairs head i with value i.
_WF_HEADS = tuple(bulk(key) for _, key in _WF_NAMES)
#: What a global publish without hooks fills per event; ``Route`` packs everything else once
#: (the event type; the hook fields, ``""``). ``Route.pack`` fills them in this order.
_WF_PER_EVENT = ("event_id", "event_name", "tenant", "timestamp", "user_id", "payload_json")
_WF_HOOKED = WORKFLOW_OPTIONAL_FIELDS - {"user_id"}
assert tuple(f for f in WORKFLOW_FIELDS if f not in _WF_HOOKED and f != "event_type") == _WF_PER_EVENT, (
    "Route.pack fills the per-event workflow fields in WORKFLOW_FIELDS order"
)
CRLF = b"\r\n"
_LEN_PREFIX = tuple(b"$%d\r\n" % n for n in range(2048))


def _blen(value: bytes) -> bytes:
    n = len(value)
    return _LEN_PREFIX[n] if n < 2048 else b"$%d\r\n" % n


class XaddPacker:
    """Packs XADD commands with the bus's trim policy; constant parts are cached per stream."""

    def __init__(self, max_len: int, trim_policy: TrimPolicy = "approx") -> None:
        # "safe" trimming must not drop entries a lagging group never read, which XADD's MAXLEN
        # cannot know: the consume side trims those streams; the publisher does not.
        self.trim: tuple[bytes, ...] = (b"MAXLEN", b"~", str(max_len).encode()) if trim_policy == "approx" else ()
        self._trim_resp = b"".join(bulk(a) for a in self.trim)
        self._per_type: dict[tuple[str, str, bool], tuple[bytes, bytes]] = {}
        self._wf_prefix: dict[str, bytes] = {}

    def per_type_parts(self, stream: str, channel: str, force: bool = False) -> tuple[bytes, bytes]:
        """The constant ``(prefix, suffix)`` of a per-type XADD: the envelope's bulk string goes between."""
        cache_key = (stream, channel, force)
        parts = self._per_type.get(cache_key)
        if parts is None:
            if len(self._per_type) > 4096:
                self._per_type.clear()
            count = 2 + len(self.trim) + 1 + 4 + (2 if force else 0)
            prefix = header(count) + bulk(b"XADD") + bulk(stream.encode()) + self._trim_resp + bulk(b"*")
            prefix += bulk(b"event")
            suffix = bulk(b"channel") + bulk(channel.encode())
            if force:
                suffix += bulk(b"force") + bulk(b"1")
            parts = self._per_type[cache_key] = (prefix, suffix)
        return parts

    def per_type(self, stream: str, channel: str, envelope: bytes, force: bool = False) -> bytes:
        """``XADD stream [MAXLEN ~ n] * event <envelope> channel <channel> [force 1]``."""
        prefix, suffix = self.per_type_parts(stream, channel, force)
        return b"".join((prefix, _blen(envelope), envelope, CRLF, suffix))

    def per_type_fields(self, channel: str, envelope: bytes, force: bool = False) -> list[bytes]:
        """The fields of a per-type entry as ``[field, value, ...]`` (for the idempotent script)."""
        out = [b"event", envelope, b"channel", channel.encode()]
        if force:
            out += [b"force", b"1"]
        return out

    def workflow_prefix(self, stream: str) -> bytes:
        """``XADD <stream> [MAXLEN ~ n] *`` with the array header of a workflow entry (cached)."""
        prefix = self._wf_prefix.get(stream)
        if prefix is None:
            count = 2 + len(self.trim) + 1 + 2 * len(_WF_NAMES)
            prefix = self._wf_prefix[stream] = (
                header(count) + bulk(b"XADD") + bulk(stream.encode()) + self._trim_resp + bulk(b"*")
            )
        return prefix

    def workflow(self, stream: str, values: tuple[bytes, ...]) -> bytes:
        """``XADD workflow:events:global [MAXLEN ~ n] * event_id .. payload_json ..`` from :func:`workflow_entry`."""
        prefix = self.workflow_prefix(stream)
        eid, exe, key, name, etype, tenant, ts, user, frm, to, pj = values
        h = _WF_HEADS
        return b"".join(
            (
                prefix,
                h[0], _blen(eid), eid, CRLF,
                h[1], _blen(exe), exe, CRLF,
                h[2], _blen(key), key, CRLF,
                h[3], _blen(name), name, CRLF,
                h[4], _blen(etype), etype, CRLF,
                h[5], _blen(tenant), tenant, CRLF,
                h[6], _blen(ts), ts, CRLF,
                h[7], _blen(user), user, CRLF,
                h[8], _blen(frm), frm, CRLF,
                h[9], _blen(to), to, CRLF,
                h[10], _blen(pj), pj, CRLF,
            )
        )  # fmt: skip


_EMPTY = b"$0\r\n\r\n"
_UUID_LEN = b"$36\r\n"
_EMPTY_LEN = b"$0\r\n"


class Route:
    """Everything constant about one kind of publish, packed once: event type, channels, force flag,
    with or without the workflow entry.

    :meth:`pack` then builds the whole command (the workflow XADD, then one XADD per channel) with
    one ``bytes.join`` of constant parts and the event's own values: id, timestamp, payload
    bytes and, for the workflow entry, tenant, user and event name. The envelope is spliced
    around the payload where it goes, never built on its own (ids, the event type and
    timestamps are validated and need no JSON escaping; a type that would is not routed here).
    """

    __slots__ = (
        "chans",
        "copies",
        "env_middle",
        "env_size",
        "event_type",
        "n_commands",
        "primary",
        "streams",
        "type_blen",
        "type_bytes",
        "wf_segments",
        "workflow",
    )

    def __init__(
        self,
        packer: XaddPacker,
        event_type: str,
        chans: tuple[str, ...],
        streams: tuple[str, ...],
        *,
        force: bool,
        workflow: bool,
        workflow_stream: str = WORKFLOW_STREAM,
    ) -> None:
        middle = _envelope_middle(event_type)
        self.event_type = event_type
        #: None when the event type needs JSON escaping: such an event is not packed here.
        self.env_middle = middle
        #: The envelope's size without its id, timestamp and payload.
        self.env_size = len(_ENV_ID) + len(middle or b"") + len(_ENV_PAYLOAD) + 1
        self.chans = chans
        self.workflow = workflow
        #: The copy that carries the caller's (or first) id: ``global`` when routed there, since
        #: the workflow entry's event_id must equal the global copy's id.
        self.primary = chans.index(CHANNEL_GLOBAL) if CHANNEL_GLOBAL in chans else 0
        #: ``(prefix, suffix)`` per channel copy: ``suffix`` closes the envelope (``}``) and its bulk.
        self.copies = tuple(
            (prefix, b"}" + CRLF + suffix)
            for prefix, suffix in (packer.per_type_parts(st, ch, force) for ch, st in zip(chans, streams, strict=True))
        )
        self.streams = (workflow_stream, *streams) if workflow else streams
        self.n_commands = len(streams) + (1 if workflow else 0)
        etype = self.type_bytes = event_type.encode()
        self.type_blen = _blen(etype)
        # The workflow XADD as constant segments around the per-event values (_WF_PER_EVENT):
        # segment i ends with the head of per-event field i, the last one closes payload_json.
        segments: list[bytes] = []
        segment = packer.workflow_prefix(workflow_stream)
        for (name, _), head in zip(_WF_NAMES, _WF_HEADS, strict=True):
            segment += head
            if name == "event_type":
                segment += bulk(etype)
            elif name in _WF_HOOKED:
                segment += _EMPTY
            else:
                segments.append(segment)
                segment = CRLF
        segments.append(segment)
        self.wf_segments = tuple(segments)

    def pack(
        self,
        eid: bytes,
        ts: bytes,
        data: bytes,
        env_len: int,
        payload: Mapping[str, Any] | None = None,
        workflow: bytes | None = None,
        copy_ids: Sequence[bytes] | None = None,
    ) -> bytes:
        """The command of one publish: ``env_len`` is the envelope's size, ``eid`` a validated uuid.

        The workflow entry (when the route has one) is derived from the dict ``payload`` (no
        hooks; raises :class:`EventValidationError` as :func:`schemas.workflow_values` does), or given
        packed as ``workflow``. ``copy_ids``: one id per channel copy (all of ``eid``'s length;
        ``eid`` at :attr:`primary`) when the copies do not share ``eid``.
        """
        lp = _LEN_PREFIX
        n = len(data)
        dlen = lp[n] if n < 2048 else b"$%d\r\n" % n
        blen = lp[env_len] if env_len < 2048 else b"$%d\r\n" % env_len
        middle = self.env_middle
        assert middle is not None
        copies = self.copies
        if not self.workflow:
            if len(copies) == 1:
                prefix, suffix = copies[0]
                return b"".join((prefix, blen, _ENV_ID, eid, middle, ts, _ENV_PAYLOAD, data, suffix))
            parts: list[bytes] = []
        elif workflow is not None:
            parts = [workflow]
        else:
            assert payload is not None
            event_type = self.event_type
            tenant, user, name = workflow_from_payload(payload, event_type)
            tb = tenant.encode()
            if name is event_type:
                nlen, nb = self.type_blen, self.type_bytes
            else:
                nb = name.encode()
                nlen = _blen(nb)
            # A user id is a checked uuid: its length is fixed.
            if user is None:
                ulen, ub = _EMPTY_LEN, b""
            else:
                ulen, ub = _UUID_LEN, user.encode()
            s0, s1, s2, s3, s4, s5, s6 = self.wf_segments
            wf = (s0, _UUID_LEN, eid, s1, nlen, nb, s2, _blen(tb), tb, s3, _blen(ts), ts, s4, ulen, ub, s5)
            if len(copies) == 1:
                prefix, suffix = copies[0]
                return b"".join(
                    (*wf, dlen, data, s6, prefix, blen, _ENV_ID, eid, middle, ts, _ENV_PAYLOAD, data, suffix)
                )
            parts = [*wf, dlen, data, s6]
        if copy_ids is None:
            for prefix, suffix in copies:
                parts += (prefix, blen, _ENV_ID, eid, middle, ts, _ENV_PAYLOAD, data, suffix)
        else:
            for (prefix, suffix), cid in zip(copies, copy_ids, strict=True):
                parts += (prefix, blen, _ENV_ID, cid, middle, ts, _ENV_PAYLOAD, data, suffix)
        return b"".join(parts)


def _blen_n(n: int) -> bytes:
    return _LEN_PREFIX[n] if n < 2048 else b"$%d\r\n" % n
