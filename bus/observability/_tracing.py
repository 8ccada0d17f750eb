"""OpenTelemetry traces of the bus (the ``otel`` extra: ``pip install 'psa-event-bus[otel]'``).

A producer span per publish (``send {stream}``, kind PRODUCER) and a consumer span per handled
delivery (``process {stream}``, kind CONSUMER), attributed per the OpenTelemetry messaging
semantic conventions. The W3C trace context of the producer span travels in two extra fields of
every entry the publish writes (``traceparent`` and, when not empty, ``tracestate``): the
reference reads only the fields it names (wire-format.md), so it ignores them, and our consumer
makes its span a child of the producer's.

This module is the only one that imports ``opentelemetry``; the publish and consume paths hold a
:class:`Tracing` or None and take a tracing-free path when it is None (the default), so a process
without the extra pays nothing.

```python
from bus.observability import Tracing

bus = EventBus(settings, tracing=Tracing())  # spans go to the global tracer provider
```
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["TRACE_FIELDS", "Tracing"]

#: The entry fields that carry the W3C trace context (the reference reads neither).
TRACE_FIELDS: Final = ("traceparent", "tracestate")
_SYSTEM: Final = "redis"


class _FieldsGetter(Getter[Mapping[bytes, bytes]]):
    """Reads the trace context from an entry's fields (``bytes`` names and values)."""

    def get(self, carrier: Mapping[bytes, bytes], key: str) -> list[str] | None:
        value = carrier.get(key.encode())
        return None if value is None else [value.decode(errors="replace")]

    def keys(self, carrier: Mapping[bytes, bytes]) -> list[str]:
        return [k.decode(errors="replace") for k in carrier]


_GETTER: Final = _FieldsGetter()


class Tracing:
    """The bus's spans: pass one to ``EventBus(tracing=...)`` (and to a ``Consumer``).

    ``tracer_provider``: where the spans go (default: the global one, which
    ``opentelemetry-instrument`` or the service's own SDK set-up configures).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("psa-event-bus", tracer_provider=tracer_provider)
        #: W3C Trace Context only (``traceparent``/``tracestate``): baggage is not carried.
        self.propagator = TraceContextTextMapPropagator()

    # -- producer ------------------------------------------------------------------------

    def start_send(
        self, event_type: str, stream: str, event_id: str, streams: Sequence[str]
    ) -> tuple[Span, list[bytes]]:
        """Start the producer span of one publish (``stream``: its primary per-type stream; ``streams``:
        every stream written) and the extra entry fields ``[name, value, ...]`` that carry its context."""
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": stream,
            "messaging.message.id": event_id,
            "bus.event_type": event_type,
        }
        if len(streams) > 1:
            attributes["messaging.batch.message_count"] = len(streams)
            attributes["bus.streams"] = list(streams)
        span = self.tracer.start_span(f"send {stream}", kind=SpanKind.PRODUCER, attributes=attributes)
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        fields: list[bytes] = []
        for name in TRACE_FIELDS:
            value = carrier.get(name)
            if value:
                fields += (name.encode(), value.encode())
        return span, fields

    @staticmethod
    def end_send(span: Span, outcome: object) -> None:
        """End a producer span with the publish's outcome (a result, or the exception that failed it)."""
        if isinstance(outcome, BaseException):
            Tracing.failed(span, outcome)
        span.end()

    # -- consumer ------------------------------------------------------------------------

    @contextmanager
    def process(
        self,
        stream: str,
        group: str,
        fields: Mapping[bytes, bytes],
        delivery: Any,
        delivery_count: int,
        entry_id: bytes,
    ) -> Iterator[Span]:
        """The consumer span of one delivery, current while its handlers run; a child of the producer
        span whose context the entry carries (a root span when it carries none)."""
        parent = self.propagator.extract(fields, getter=_GETTER) if fields else None
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": stream,
            "messaging.consumer.group.name": group,
            "bus.entry_id": entry_id.decode(),
            "bus.delivery_count": delivery_count,
        }
        event_id = getattr(delivery, "event_id", None)
        if event_id:
            attributes["messaging.message.id"] = event_id
        event_type = getattr(delivery, "event_type", None)
        if event_type:
            attributes["bus.event_type"] = event_type
        with self.tracer.start_as_current_span(
            f"process {stream}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            yield span

    @staticmethod
    def failed(span: Span, error: BaseException) -> None:
        """Mark ``span`` failed by ``error`` (status ERROR, ``error.type``, the exception event)."""
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.set_attribute("error.type", type(error).__qualname__)
        span.record_exception(error)
