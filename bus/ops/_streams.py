"""Naming streams the way operators do: a stream key, or an event type on a channel."""

from __future__ import annotations

from typing import Any

from schemas import REGISTRY

from .._keys import CHANNEL_GLOBAL, WORKFLOW_DLQ, WORKFLOW_STREAM, Keys
from .._text import text

__all__ = ["DEAD_LETTER_SUFFIX", "WORKFLOW_DLQ_SUFFIX", "dead_letter_stream_of", "event_type_of", "stream_of"]

#: Per-type dead-letter streams: ``{stream}:dead-letter`` (ours and the reference's).
DEAD_LETTER_SUFFIX = ":dead-letter"
#: The workflow consumer's dead letters: ``{workflow stream}:dlq``.
WORKFLOW_DLQ_SUFFIX = ":dlq"


def s(value: Any) -> str:
    """A reply value as text (bytes decoded leniently)."""
    return text(value, errors="replace")


def b(value: Any) -> bytes:
    """A reply value as bytes."""
    return value if isinstance(value, bytes) else str(value).encode()


def event_type_of(name: str) -> str:
    """A registry event type given in any case; an unknown name raises ``UnknownEventTypeError``
    (a ``schemas`` error) with the closest names."""
    return REGISTRY.get(name.upper() if name.upper() in REGISTRY else name).event_type


def stream_of(keys: Keys, name: str, channel: str | None = None) -> str:
    """``name`` as a stream key: a key (it has a ``:``) as is, else the event type's stream on
    ``channel`` (default ``global``). ``workflow:events:global`` stands for the bus's workflow
    stream (:attr:`Keys.workflow_stream`: the tagged one with ``BUS_KEY_HASHTAG``)."""
    if name == WORKFLOW_STREAM:
        return keys.workflow_stream
    if ":" in name:
        return name
    return keys.stream(channel or CHANNEL_GLOBAL, event_type_of(name))


def dead_letter_stream_of(keys: Keys, name: str, channel: str | None = None) -> str:
    """The dead-letter stream ``name`` stands for: a dead-letter key as is, else the dead-letter
    stream of a source stream key or of an event type's stream on ``channel``."""
    if name == WORKFLOW_DLQ:
        return keys.workflow_dlq
    if name.endswith((DEAD_LETTER_SUFFIX, WORKFLOW_DLQ_SUFFIX)):
        return name
    stream = stream_of(keys, name, channel)
    return keys.workflow_dlq if stream == keys.workflow_stream else Keys.dead_letter(stream)
