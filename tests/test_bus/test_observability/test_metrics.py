"""BusMetrics: plain counters and histograms rendered as Prometheus text that prometheus_client parses back."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bus.observability import METRICS, BusMetrics


def scrape(metrics: BusMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` parsed from the rendered text."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_counters_render_with_their_labels() -> None:
    """inc() by label tuple shows up as bus_<name>_total with the metric's label names."""
    m = BusMetrics()
    m.inc("handled", ("TICKET_CREATED", "global", "g1"), 3)
    m.inc("handled", ("TICKET_CREATED", "global", "g1"))
    m.inc("dead_lettered", ("TICKET_CREATED", "global", "g1", "invalid"))
    samples = scrape(m)
    key = (("channel", "global"), ("event_type", "TICKET_CREATED"), ("group", "g1"))
    assert samples["bus_handled_total"][key] == 4
    assert samples["bus_dead_lettered_total"][(*key[:2], ("group", "g1"), ("reason", "invalid"))] == 1
    assert m.value("handled", ("TICKET_CREATED", "global", "g1")) == 4


def test_histograms_are_cumulative_with_sum_and_count() -> None:
    """observe() fills the right bucket; the text has cumulative buckets, _count and _sum."""
    m = BusMetrics(buckets=(0.01, 0.1, 1.0))
    labels = ("TICKET_CREATED", "global", "g1")
    for value in (0.005, 0.05, 0.05, 0.5, 5.0):
        m.observe("handler_duration_seconds", labels, value)
    samples = scrape(m)
    base = (("channel", "global"), ("event_type", "TICKET_CREATED"), ("group", "g1"))
    buckets = {dict(k)["le"]: v for k, v in samples["bus_handler_duration_seconds_bucket"].items()}
    assert buckets == {"0.01": 1, "0.1": 3, "1.0": 4, "+Inf": 5}
    assert samples["bus_handler_duration_seconds_count"][base] == 5
    assert samples["bus_handler_duration_seconds_sum"][base] == pytest.approx(5.605)


def test_gauges_and_a_second_registry() -> None:
    """set() drives a gauge; register() exposes the same values through a service's own registry."""
    m = BusMetrics()
    m.set("ready", 1)
    other = CollectorRegistry()
    m.register(other)
    assert other.get_sample_value("bus_ready") == 1.0
    m.set("ready", 0)
    assert other.get_sample_value("bus_ready") == 0.0


def test_no_label_is_an_id() -> None:
    """Label names are bounded categories: no tenant, event or entry ids."""
    names = {label for spec in METRICS.values() for label in spec.labels}
    assert names == {"event_type", "channel", "group", "reason", "role"}


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([0.0001, 0.0002, 0.0003], id="one-bucket"),
        pytest.param([0.0005, 0.001, 0.0011, 0.3, 7.0, 61.0, 0.0, 2.5], id="spread-and-on-bounds"),
        pytest.param([i / 997 for i in range(2000)], id="many"),
        pytest.param([], id="empty"),
    ],
)
def test_observe_many_equals_one_observe_per_value(values: list[float]) -> None:
    """observe_many (per-batch: sort and bisect per bucket, or one add) gives the buckets and sum of observe()."""
    one, many = BusMetrics(), BusMetrics()
    for v in values:
        one.observe("handler_duration_seconds", ("T", "c", "g"), v)
    many.observe_many("handler_duration_seconds", ("T", "c", "g"), list(values))
    a, b = scrape(one), scrape(many)
    assert a.get("bus_handler_duration_seconds_bucket") == b.get("bus_handler_duration_seconds_bucket")
    assert a.get("bus_handler_duration_seconds_sum") == pytest.approx(b.get("bus_handler_duration_seconds_sum"))


@pytest.mark.parametrize(
    "ages_ms",
    [
        pytest.param([1, 2, 3, 4], id="one-bucket"),
        pytest.param([0, 3, 600, 2_000, 45_000, 120_000, 7], id="spread"),
        pytest.param([-5, 10, 30_000], id="a-stamp-in-the-future"),
    ],
)
def test_observe_ages_equals_one_observe_per_age(ages_ms: list[int]) -> None:
    """observe_ages of entry-id stamps (ms) equals observe() of each age, a future stamp counting as 0."""
    now_ms = 1_800_000_000_000
    one, many = BusMetrics(), BusMetrics()
    for age in ages_ms:
        one.observe("end_to_end_latency_seconds", ("T", "c", "g"), max(age, 0) / 1000)
    many.observe_ages("end_to_end_latency_seconds", ("T", "c", "g"), now_ms / 1000, [now_ms - a for a in ages_ms])
    a, b = scrape(one), scrape(many)
    assert a["bus_end_to_end_latency_seconds_bucket"] == b["bus_end_to_end_latency_seconds_bucket"]
    assert a["bus_end_to_end_latency_seconds_sum"] == pytest.approx(b["bus_end_to_end_latency_seconds_sum"])
