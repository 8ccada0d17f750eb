"""The probes of a process group: the children's metrics merged into one exposition."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from bus.observability import BusMetrics
from bus.observability._group import merge_metrics


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text.decode())
        for s in f.samples
    }


def _child(handled: int, seconds: float, ready: bool, draining: bool) -> str:
    metrics = BusMetrics()
    metrics.inc("handled", ("TICKET_CREATED", "global", "g"), handled)
    metrics.observe("handler_duration_seconds", ("TICKET_CREATED", "global", "g"), seconds)
    metrics.set("ready", 1.0 if ready else 0.0)
    metrics.set("draining", 1.0 if draining else 0.0)
    return generate_latest(metrics.registry).decode()


def test_counters_and_histograms_sum_ready_is_the_minimum_draining_the_maximum() -> None:
    """Two children: handled and the histogram's buckets, count and sum add up; the group is ready only when
    both are, draining when one is; extra families are appended."""
    labels = (("channel", "global"), ("event_type", "TICKET_CREATED"), ("group", "g"))
    extra = GaugeMetricFamily("bus_processes", "n", value=2)
    merged = _samples(merge_metrics([_child(3, 0.002, True, False), _child(4, 0.3, False, True)], [extra]))
    assert merged[("bus_handled_total", labels)] == 7
    assert merged[("bus_handler_duration_seconds_count", labels)] == 2
    assert merged[("bus_handler_duration_seconds_sum", labels)] == 0.302
    assert merged[("bus_handler_duration_seconds_bucket", (*labels[:2], ("group", "g"), ("le", "0.0025")))] == 1
    assert merged[("bus_handler_duration_seconds_bucket", (*labels[:2], ("group", "g"), ("le", "+Inf")))] == 2
    assert merged[("bus_ready", ())] == 0
    assert merged[("bus_draining", ())] == 1
    assert merged[("bus_processes", ())] == 2
