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
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from schemas import WORKFLOW_FIELDS, EventValidationError, Payload, encode_bus_event, is_uuid

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

# -- timestamps: the ISO string is built once per millisecond -------------------------------------

#: ``[(millisecond, its ISO string)]``; replaced whole, so a reader never sees half an update.
_NOW: list[tuple[int, str]] = [(-1, "")]
_SECOND: list[tuple[int, str]] = [(-1, "")]


def now_iso() -> str:
    """The current UTC time as JavaScript's ``toISOString()`` writes it: ``2026-01-23T10:11:12.345Z``."""
    ms = time.time_ns() // 1_000_000
    cached = _NOW[0]
    if cached[0] == ms:
        return cached[1]
    sec, frac = divmod(ms, 1000)
    head = _SECOND[0]
    if head[0] != sec:
        head = _SECOND[0] = (sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)))
    text = f"{head[1]}{frac:03d}Z"
    _NOW[0] = (ms, text)
    return text


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


_VIEW_KEYS = ("tenantId", "tenant", "actorUserId", "userId", "eventName")
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
        wanted = set(_VIEW_KEYS)
        pairs = _STRUCT_VIEWS[cls] = tuple(
            (f.encode_name, f.name) for f in msgspec.structs.fields(cls) if f.encode_name in wanted
        )
    out: dict[str, Any] = {}
    for wire, attr in pairs:
        value = getattr(payload, attr)
        if value is not msgspec.UNSET:
            out[wire] = value
    return out


_UUID_RULE = "Expected a uuid (8-4-4-4-12 hex digits)"
_KNOWN_UUIDS: set[str] = set()


def _is_uuid_cached(value: object) -> bool:
    """``is_uuid`` with a bounded memo of the strings that passed (user ids repeat across events)."""
    if value in _KNOWN_UUIDS:
        return True
    if not is_uuid(value):
        return False
    if len(_KNOWN_UUIDS) >= 4096:
        _KNOWN_UUIDS.clear()
    _KNOWN_UUIDS.add(value)  # type: ignore[arg-type]  # is_uuid: a str
    return True


def workflow_entry(
    event_id: str,
    event_type: str,
    timestamp: str,
    payload: Mapping[str, Any],
    payload_json: bytes,
    *,
    execution_id: str | None = None,
    correlation_key: str | None = None,
    event_name: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
) -> tuple[bytes, ...]:
    """The 11 workflow entry values in wire order, by the rules of ``WorkflowEvent.from_bus_event``.

    The same derivations (tenant, user, event name; ``""`` for absent values) and checks
    (event_id, execution_id and user_id are uuids) without building the Struct: this is the hot
    path. A test holds the two equal. ``event_id`` and ``timestamp`` are checked by the caller.
    """
    user = payload.get("actorUserId") or payload.get("userId") or None
    if user is not None and not _is_uuid_cached(user):
        raise EventValidationError(event_type, "$.user_id", _UUID_RULE)
    if execution_id and not is_uuid(execution_id):
        raise EventValidationError(event_type, "$.execution_id", _UUID_RULE)
    tenant = payload.get("tenantId") or payload.get("tenant") or ""
    name = event_name or payload.get("eventName") or event_type
    return (
        event_id.encode(),
        execution_id.encode() if execution_id else b"",
        correlation_key.encode() if correlation_key else b"",
        (name if isinstance(name, str) else str(name)).encode(),
        event_type.encode(),
        (tenant if isinstance(tenant, str) else str(tenant)).encode(),
        timestamp.encode(),
        user.encode() if user else b"",
        from_state.encode() if from_state else b"",
        to_state.encode() if to_state else b"",
        payload_json,
    )


def workflow_pairs(values: tuple[bytes, ...]) -> list[bytes]:
    """``[field, value, ...]`` of a workflow entry (for the idempotency script)."""
    out: list[bytes] = []
    for (_, key), value in zip(_WF_NAMES, values, strict=True):
        out.append(key)
        out.append(value)
    return out


_WF_NAMES = tuple((name, name.encode()) for name in WORKFLOW_FIELDS)
_WF_HEADS = tuple(bulk(key) for _, key in _WF_NAMES)
assert WORKFLOW_FIELDS == (
    "event_id",
    "execution_id",
    "workflow_correlation_key",
    "event_name",
    "event_type",
    "tenant",
    "timestamp",
    "user_id",
    "from_state",
    "to_state",
    "payload_json",
), "XaddPacker.workflow packs these fields in this order"
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
        "wf_ctail",
        "wf_cts",
        "wf_cuser",
        "wf_cuser0",
        "wf_default",
        "wf_head",
        "wf_name",
        "wf_tenant",
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
        self.streams = (WORKFLOW_STREAM, *streams) if workflow else streams
        self.n_commands = len(streams) + (1 if workflow else 0)
        h = _WF_HEADS
        etype = event_type.encode()
        self.wf_head = packer.workflow_prefix(WORKFLOW_STREAM) + h[0] + _UUID_LEN
        # After event_id: execution_id "", workflow_correlation_key "", then the event_name field's
        # head; its value, then event_type and the tenant field's head (wf_tenant). wf_default is
        # all of that with the event type as the name (no eventName in the payload).
        self.wf_name = CRLF + h[1] + _EMPTY + h[2] + _EMPTY + h[3]
        self.wf_tenant = CRLF + h[4] + bulk(etype) + h[5]
        self.wf_default = self.wf_name + bulk(etype) + h[4] + bulk(etype) + h[5]
        self.wf_cts = CRLF + h[6]
        self.wf_cuser = CRLF + h[7] + _UUID_LEN
        self.wf_cuser0 = CRLF + h[7] + _EMPTY[:-2]
        self.wf_ctail = CRLF + h[8] + _EMPTY + h[9] + _EMPTY + h[10]

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
        hooks; raises :class:`EventValidationError` as :func:`workflow_entry` does), or given
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
            get = payload.get
            user = get("actorUserId") or get("userId") or None
            if user is None:
                cuser, ub = self.wf_cuser0, b""
            elif _is_uuid_cached(user):
                cuser, ub = self.wf_cuser, user.encode()  # a uuid str (checked)
            else:
                raise EventValidationError(self.event_type, "$.user_id", _UUID_RULE)
            tenant = get("tenantId") or get("tenant") or ""
            tb = (tenant if isinstance(tenant, str) else str(tenant)).encode()
            name = get("eventName")
            if not name:
                n1, n2, n3, n4 = self.wf_default, b"", b"", b""
            else:
                nb = (name if isinstance(name, str) else str(name)).encode()
                n1, n2, n3, n4 = self.wf_name, _blen(nb), nb, self.wf_tenant
            wf = (
                self.wf_head,
                eid,
                n1,
                n2,
                n3,
                n4,
                _blen(tb),
                tb,
                self.wf_cts,
                _blen(ts),
                ts,
                cuser,
                ub,
                self.wf_ctail,
            )
            if len(copies) == 1:
                prefix, suffix = copies[0]
                return b"".join(
                    (*wf, dlen, data, CRLF, prefix, blen, _ENV_ID, eid, middle, ts, _ENV_PAYLOAD, data, suffix)
                )
            parts = [*wf, dlen, data, CRLF]
        if copy_ids is None:
            for prefix, suffix in copies:
                parts += (prefix, blen, _ENV_ID, eid, middle, ts, _ENV_PAYLOAD, data, suffix)
        else:
            for (prefix, suffix), cid in zip(copies, copy_ids, strict=True):
                parts += (prefix, blen, _ENV_ID, cid, middle, ts, _ENV_PAYLOAD, data, suffix)
        return b"".join(parts)


def _blen_n(n: int) -> bytes:
    return _LEN_PREFIX[n] if n < 2048 else b"$%d\r\n" % n
