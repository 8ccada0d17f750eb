"""The consume fast path: the envelope split, the raw XREADGROUP reader and its field helpers."""

from __future__ import annotations

import pytest

from schemas import EventValidationError, decode_bus_event
from schemas._envelope import split_bus_event

HEAD = b'{"id":"5f0c6d3e-9b1a-4c2e-8f7d-2a3b4c5d6e7f","eventType":"TICKET_CREATED","timestamp":"2026-01-23T10:11:12.345Z"'


@pytest.mark.parametrize("payload", [b'{"a":1}', b" \n\t{}", b"{}"])
def test_split_bus_event_returns_the_payload_bytes(payload: bytes) -> None:
    """The payload comes back as its exact bytes (no leading blanks), the envelope as decode_bus_event gives it."""
    data = HEAD + b',"payload":' + payload + b"}"
    event, raw = split_bus_event(data)
    assert raw == payload.strip()
    assert event == decode_bus_event(data)


def test_split_bus_event_without_payload_is_an_empty_object() -> None:
    """A missing payload is ``{}``, as for decode_bus_event."""
    assert split_bus_event(HEAD + b"}")[1] == b"{}"


@pytest.mark.parametrize("payload", [b"[1]", b' "x"', b"1", b"null", b"true"])
def test_a_payload_that_is_not_an_object_is_rejected(payload: bytes) -> None:
    """Both decoders reject a non-object payload at ``$.payload``, blanks before it or not."""
    data = HEAD + b',"payload":' + payload + b"}"
    for decode in (decode_bus_event, split_bus_event):
        with pytest.raises(EventValidationError, match=r"\$\.payload: Expected `object`"):
            decode(data)
