"""Stream and group gauges for Prometheus, computed once for the whole deployment at scrape time.

One scrape is one :func:`bus.ops.status` pass: a SCAN over the per-type stream keys, then per
stream EXISTS + XLEN of its dead letters, XINFO STREAM + XINFO GROUPS, and per group XPENDING
(summary), XPENDING (oldest entry) and XINFO CONSUMERS, in one pipeline per stream; a group whose
lag Redis's counters cannot tell adds one XRANGE of at most 10,000 ids. So for N streams with G
groups each: 1 TIME, the SCAN, 4N + 3NG commands in N + 2 round trips (plus the workflow stream's).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..ops import StatusReport

__all__ = ["render_status_metrics"]

_STREAM = ("stream", "channel", "event_type")
_GROUP = ("stream", "group")


class _Snapshot(Collector):
    def __init__(self, report: StatusReport, namespace: str) -> None:
        self.report = report
        self.ns = namespace

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        ns = self.ns
        length = GaugeMetricFamily(f"{ns}_stream_length", "Entries in the stream (XLEN).", labels=_STREAM)
        dead = GaugeMetricFamily(f"{ns}_stream_dead_letters", "Entries in its dead-letter stream.", labels=_STREAM)
        lag = GaugeMetricFamily(f"{ns}_group_lag", "Entries not yet delivered to the group.", labels=_GROUP)
        pending = GaugeMetricFamily(f"{ns}_group_pending", "Delivered, not acknowledged.", labels=_GROUP)
        oldest = GaugeMetricFamily(
            f"{ns}_group_oldest_pending_age_seconds",
            "Age of the group's oldest pending entry (server time minus the time in its id): a stuck consumer.",
            labels=_GROUP,
        )
        idle = GaugeMetricFamily(
            f"{ns}_group_oldest_pending_idle_seconds",
            "Time since the oldest pending entry was last delivered (XPENDING idle).",
            labels=_GROUP,
        )
        consumers = GaugeMetricFamily(f"{ns}_group_consumers", "Consumers of the group.", labels=_GROUP)
        consumer_idle = GaugeMetricFamily(
            f"{ns}_consumer_idle_seconds", "Time since the consumer's last attempt.", labels=(*_GROUP, "consumer")
        )
        trimmed = GaugeMetricFamily(
            f"{ns}_group_trimmed_unread", "Entries trimmed before the group read them.", labels=_GROUP
        )
        for row in self.report.rows:
            s = row.stream
            labels = (s.stream, s.channel, s.event_type)
            length.add_metric(labels, s.length)
            dead.add_metric(labels, s.dead_letter_length)
            for g in s.groups:
                gl = (s.stream, g.name)
                if g.lag is not None:
                    lag.add_metric(gl, g.lag)
                pending.add_metric(gl, g.pending)
                oldest.add_metric(gl, (g.oldest_pending_age_ms or 0) / 1000)
                idle.add_metric(gl, (g.oldest_pending_idle_ms or 0) / 1000)
                consumers.add_metric(gl, len(g.consumers))
                if g.trimmed_unread is not None:
                    trimmed.add_metric(gl, g.trimmed_unread)
                for c in g.consumers:
                    consumer_idle.add_metric((*gl, c.name), c.idle_ms / 1000)
        yield from (length, dead, lag, pending, oldest, idle, consumers, consumer_idle, trimmed)


def render_status_metrics(report: StatusReport, namespace: str = "bus") -> bytes:
    """The Prometheus text of ``report``'s gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(report, namespace))
    return generate_latest(registry)
