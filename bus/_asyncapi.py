"""An AsyncAPI 3.0 document of the bus: every channel stream, the workflow stream, each event
type's message with its payload schemas, the fan-out and the consumer groups as operations.

- **Channels**: one per per-type stream a publish can write (``global`` for every type, and the
  fan-out channels for the types the reference copies there), addressed by the stream key; the
  workflow stream; each with its dead-letter stream as ``x-dead-letter``.
- **Messages**: one per event type; the payload is the envelope (``id``, ``eventType``,
  ``timestamp``, ``payload``) whose ``payload`` is the bus shape (an ``anyOf`` of the legacy and
  domain shapes for unions, legacy first); ``x-catalog-payload`` is the catalog shape the
  workflow side validates; the entry's other fields (``channel``, ``force``) are headers.
- **Operations**: ``send`` per channel copy (``x-fanout``: the copies one default publish
  writes, ``global`` first), ``send`` of the workflow entry, and ``receive`` per channel in the
  reference's consumer groups (``x-consumer-group``).

Every Struct is one shared component (``#/components/schemas/...``), so the document stays
valid JSON Schema wherever a payload is referenced.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from schemas import REGISTRY, WORKFLOW_FIELDS, Registry, payload_components

from ._keys import CHANNEL_GLOBAL, WORKFLOW_DLQ, WORKFLOW_GROUP, WORKFLOW_STREAM, Keys
from .routing import fanout_sets

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
#: The reference's consumer group on per-type streams.
EVENT_GROUP = "event-processors"

_UUID = {"type": "string", "format": "uuid", "pattern": "^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"}
_TIMESTAMP = {"type": "string", "format": "date-time", "pattern": "Z$"}


def _slug(channel: str) -> str:
    """A channel name as an AsyncAPI key (``[\\w.-]`` only): ``emailservice::v7`` -> ``emailservice--v7``."""
    return re.sub(r"[^\w.\-]", "-", channel)


def asyncapi_document(
    *,
    fanout: Mapping[str, Collection[str]] | None = None,
    keys: Keys | None = None,
    registry: Registry = REGISTRY,
    version: str = "0.0.0",
    server: str = "127.0.0.1:6379",
) -> dict[str, Any]:
    """The document; ``fanout`` maps each channel besides ``global`` to the types a default publish copies
    there (default: the :mod:`bus.routing` table)."""
    fanout = fanout_sets() if fanout is None else fanout
    keys = keys or Keys()
    per_type, schemas = payload_components(registry=registry)
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "PSA event bus",
            "version": version,
            "description": "Redis Streams event bus of the professional-services platform, as psa-event-bus "
            "and the reference TypeScript bus write and read it. Each stream entry carries the envelope as "
            "compact JSON in its `event` field.",
        },
        "defaultContentType": "application/json",
        "servers": {"redis": {"host": server, "protocol": "redis", "description": "Redis 7 (Streams)"}},
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    routes: dict[str, list[str]] = {}  # event type -> channels, global first
    for spec in registry:
        t = spec.event_type
        bus_shape, catalog_shape = per_type[t]
        messages[t] = {
            "name": t,
            "title": spec.name,
            "summary": spec.description,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {"channel": {"type": "string"}, "force": {"type": "string", "const": "1"}},
                "required": ["channel"],
            },
            "payload": {
                "type": "object",
                "required": ["id", "eventType", "timestamp", "payload"],
                "properties": {
                    "id": _UUID,
                    "eventType": {"type": "string", "const": t},
                    "timestamp": _TIMESTAMP,
                    "payload": bus_shape,
                },
            },
            "x-schema-ref": spec.schema_ref,
            "x-catalog-payload": catalog_shape,
            "x-status": spec.status,
        }
        routes[t] = [CHANNEL_GLOBAL, *(ch for ch, types in fanout.items() if t in types)]
    for t, chans in routes.items():
        for channel in chans:
            cid = f"{_slug(channel)}.{t}"
            stream = keys.stream(channel, t)
            channels[cid] = {
                "address": stream,
                "title": f"{t} on {channel}",
                "messages": {t: {"$ref": f"#/components/messages/{t}"}},
                "x-dead-letter": keys.dead_letter(stream),
            }
            operations[f"send.{cid}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{cid}"},
                "messages": [{"$ref": f"#/channels/{cid}/messages/{t}"}],
                "summary": f"Publish {t} on {channel}"
                + (" (also writes the workflow entry)" if channel == CHANNEL_GLOBAL else " (fan-out copy)"),
                "x-fanout": chans,
            }
            operations[f"receive.{cid}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{cid}"},
                "messages": [{"$ref": f"#/channels/{cid}/messages/{t}"}],
                "x-consumer-group": EVENT_GROUP,
            }
    messages["WorkflowEntry"] = {
        "name": "WorkflowEntry",
        "title": "Workflow stream entry",
        "summary": "Flat string fields; an absent optional value is written as an empty string.",
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "properties": {name: {"type": "string"} for name in WORKFLOW_FIELDS},
            "required": list(WORKFLOW_FIELDS),
        },
    }
    channels["workflow"] = {
        "address": WORKFLOW_STREAM,
        "title": "Workflow stream",
        "messages": {"WorkflowEntry": {"$ref": "#/components/messages/WorkflowEntry"}},
        "x-dead-letter": WORKFLOW_DLQ,
    }
    ref = [{"$ref": "#/channels/workflow/messages/WorkflowEntry"}]
    operations["send.workflow"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/workflow"},
        "messages": ref,
        "summary": "Written with every publish on global, before (reference) or with (ours) the per-type entry",
    }
    operations["receive.workflow"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/workflow"},
        "messages": ref,
        "x-consumer-group": WORKFLOW_GROUP,
    }
    doc["channels"] = channels
    doc["operations"] = operations
    doc["components"] = {"schemas": schemas, "messages": messages}
    return doc
