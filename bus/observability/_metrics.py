"""Process metrics of the bus, kept as plain numbers on the hot paths and rendered for Prometheus
only when scraped.

The consume and publish paths run on one event loop; an update is a dict lookup and an integer
add (a histogram adds a ``bisect``), with no lock and no ``prometheus_client`` child object per
event. :class:`BusMetrics` is a ``prometheus_client`` collector: register it in any registry (the
daemons' own, or a service's) and it renders the current values at scrape time.

Labels are bounded by construction: event type, channel, group, reason, operation. Tenant ids,
event ids and entry ids are never labels.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from typing import Final, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["METRICS", "BusMetrics", "MetricSpec"]

Kind = Literal["counter", "histogram", "gauge"]

#: Latency buckets (seconds) shared by the histograms: sub-millisecond handlers to slow workflows.
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricSpec:
    """One metric: kind, name (without the namespace), help text and label names."""

    __slots__ = ("help", "kind", "labels", "name")

    def __init__(self, kind: Kind, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.name = name
        self.help = help_text
        self.labels = labels


_TYPE = ("event_type", "channel")
_CONSUMED = ("event_type", "channel", "group")

#: Every metric the bus exports, by name.
METRICS: Final[dict[str, MetricSpec]] = {
    s.name: s
    for s in (
        MetricSpec("counter", "published", "Entries written by publishes, per channel copy.", _TYPE),
        MetricSpec("counter", "publish_failed", "Publishes that raised (nothing or not all written).", ("event_type",)),
        MetricSpec("counter", "handled", "Deliveries whose handlers all succeeded (acked).", _CONSUMED),
        MetricSpec("counter", "failed", "Handler failures (each attempt).", _CONSUMED),
        MetricSpec("counter", "retried", "In-process handler retries.", _CONSUMED),
        MetricSpec("counter", "handler_timeouts", "Handlers that exceeded handler_timeout_s.", _CONSUMED),
        MetricSpec("counter", "dead_lettered", "Entries moved to a dead-letter stream.", (*_CONSUMED, "reason")),
        MetricSpec(
            "counter",
            "dead_lettered_over_cap",
            "Entries dead-lettered into a stream already past BUS_DEAD_LETTER_MAXLEN (kept, never trimmed).",
            _CONSUMED,
        ),
        MetricSpec("counter", "duplicates_skipped", "Deliveries skipped as already processed.", _CONSUMED),
        MetricSpec("counter", "reclaimed", "Pending entries claimed from idle consumers.", _CONSUMED),
        MetricSpec("counter", "trimmed_unread", "Entries trimmed before the group read them.", _CONSUMED),
        MetricSpec(
            "counter", "trimmed_pending", "Pending entries trimmed or deleted before they were processed.", _CONSUMED
        ),
        MetricSpec("counter", "reconnects", "Transport failures of the consume loop, retried.", ("role",)),
        MetricSpec(
            "counter",
            "connection_attempts",
            "Socket connects to Redis tried (role: pool = the bus's pool, read = the blocking read connection).",
            ("role",),
        ),
        MetricSpec("histogram", "handler_duration_seconds", "Time the handlers of one delivery took.", _CONSUMED),
        MetricSpec("histogram", "publish_round_trip_seconds", "One publish round trip (MULTI/EXEC) to Redis."),
        MetricSpec("histogram", "end_to_end_latency_seconds", "From the envelope's timestamp to handled.", _CONSUMED),
        MetricSpec("gauge", "backend_paused", "Consume loops of this process paused because Redis refuses writes."),
        MetricSpec("gauge", "ready", "1 when the process is ready (Redis reachable, consuming, not draining)."),
        MetricSpec("gauge", "draining", "1 while a graceful shutdown drains in-flight deliveries."),
    )
}


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * (n_buckets + 1)  # the last one is +Inf
        self.total = 0.0


class BusMetrics(Collector):
    """The bus's counters, histograms and gauges; a ``prometheus_client`` collector.

    ``metrics.inc("handled", (event_type, channel, group))`` and
    ``metrics.observe("handler_duration_seconds", labels, seconds)`` on the hot paths; register
    it with :meth:`register` (default: a registry of its own, :attr:`registry`).
    """

    def __init__(self, namespace: str = "bus", buckets: Sequence[float] = BUCKETS) -> None:
        self.namespace = namespace
        self.buckets = tuple(buckets)
        self._counters: dict[str, dict[tuple[str, ...], float]] = {}
        self._histograms: dict[str, dict[tuple[str, ...], _Histogram]] = {}
        self._gauges: dict[str, float] = {}
        for spec in METRICS.values():
            if spec.kind == "counter":
                self._counters[spec.name] = {}
            elif spec.kind == "histogram":
                self._histograms[spec.name] = {}
            else:
                self._gauges[spec.name] = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def register(self, registry: CollectorRegistry) -> None:
        """Also expose these metrics through ``registry`` (a service's own)."""
        registry.register(self)

    def inc(self, name: str, labels: tuple[str, ...] = (), n: float = 1) -> None:
        """Add ``n`` to a counter (label values in the metric's label order)."""
        series = self._counters[name]
        series[labels] = series.get(labels, 0) + n

    def observe(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """Record one observation of a histogram."""
        series = self._histograms[name]
        h = series.get(labels)
        if h is None:
            h = series[labels] = _Histogram(len(self.buckets))
        h.counts[bisect_left(self.buckets, value)] += 1
        h.total += value

    def histogram(self, name: str, labels: tuple[str, ...]) -> _Histogram:
        """One histogram series (its ``counts`` per bucket of :attr:`buckets`, +Inf last, and ``total``),
        for a caller that records many values in a loop without a lookup per value."""
        series = self._histograms[name]
        h = series.get(labels)
        if h is None:
            h = series[labels] = _Histogram(len(self.buckets))
        return h

    def observe_many(self, name: str, labels: tuple[str, ...], values: list[float]) -> None:
        """Record many observations of one series at once (sorts ``values`` in place): a sort and one
        bisection per bucket instead of one per value, for the consume path's per-batch updates."""
        if not values:
            return
        h = self.histogram(name, labels)
        h.total += sum(values)
        bounds = self.buckets
        top = bisect_left(bounds, max(values))
        if bisect_left(bounds, min(values)) == top:  # all in one bucket (fast handlers): no sort
            h.counts[top] += len(values)
            return
        values.sort()
        counts, prev = h.counts, 0
        for i, bound in enumerate(self.buckets):
            below = bisect_right(values, bound)  # values <= bound
            counts[i] += below - prev
            prev = below
        counts[-1] += len(values) - prev

    def observe_ages(self, name: str, labels: tuple[str, ...], now_s: float, stamps_ms: list[int]) -> None:
        """Record the age ``now_s - stamp / 1000`` of each of ``stamps_ms`` (ms since the epoch; sorted in
        place) as :meth:`observe_many` does; a stamp in the future (clock skew) counts as age 0."""
        if not stamps_ms:
            return
        h = self.histogram(name, labels)
        n, now_ms = len(stamps_ms), now_s * 1000
        oldest, newest = min(stamps_ms), max(stamps_ms)
        bounds = self.buckets
        top = bisect_left(bounds, (now_ms - oldest) / 1000)
        if newest <= now_ms and bisect_left(bounds, (now_ms - newest) / 1000) == top:  # one bucket: no sort
            h.counts[top] += n
            h.total += (n * now_ms - sum(stamps_ms)) / 1000
            return
        stamps_ms.sort()
        counts, prev = h.counts, 0
        for i, bound in enumerate(self.buckets):
            young = n - bisect_left(stamps_ms, now_ms - bound * 1000)  # stamps >= threshold: age <= bound
            counts[i] += young - prev
            prev = young
        counts[-1] += n - prev
        past = bisect_right(stamps_ms, now_ms)  # the others are in the future: age 0
        h.total += (past * now_ms - sum(stamps_ms[:past])) / 1000

    def set(self, name: str, value: float) -> None:
        """Set a gauge."""
        self._gauges[name] = value

    def value(self, name: str, labels: tuple[str, ...] = ()) -> float:
        """A counter's or gauge's current value (0 when never set), or a histogram's count."""
        if name in self._counters:
            return self._counters[name].get(labels, 0)
        if name in self._histograms:
            h = self._histograms[name].get(labels)
            return float(sum(h.counts)) if h is not None else 0.0
        return self._gauges[name]

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        ns = self.namespace
        for name, series in self._counters.items():
            spec = METRICS[name]
            family = CounterMetricFamily(f"{ns}_{name}", spec.help, labels=spec.labels)
            for labels, value in list(series.items()):
                family.add_metric(labels, value)
            yield family
        bounds = [*(repr(float(b)) for b in self.buckets), "+Inf"]
        for name, hseries in self._histograms.items():
            spec = METRICS[name]
            hfamily = HistogramMetricFamily(f"{ns}_{name}", spec.help, labels=spec.labels)
            for labels, h in list(hseries.items()):
                cumulative, running = [], 0
                for bound, count in zip(bounds, h.counts, strict=True):
                    running += count
                    cumulative.append((bound, running))
                hfamily.add_metric(labels, cumulative, h.total)
            yield hfamily
        for name, value in self._gauges.items():
            yield GaugeMetricFamily(f"{ns}_{name}", METRICS[name].help, value=value)
