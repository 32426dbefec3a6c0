"""Metric names follow Prometheus conventions, every known label reads 0 at start, and each call moves
the right series."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from stream_app import APPROVED_TAGS
from stream_app.drift import DriftSnapshot
from stream_app.errors import DEADLETTER_REASONS
from stream_app.metrics import OUTCOMES, Metrics

EDGES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, EDGES)


def test_names_are_prefixed_counters_end_in_total_and_times_are_seconds(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    families = list(registry.collect())
    assert families
    for family in families:
        assert family.name.startswith("content_tagger_")
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        assert "millis" not in family.name and "_ms" not in family.name
        for sample in family.samples:
            assert set(sample.labels) <= {"outcome", "tag", "reason", "match", "le", "version", "threshold",
                                          "partition"}


def test_known_label_values_read_zero_from_the_start(registry: CollectorRegistry, metrics: Metrics) -> None:
    for outcome in OUTCOMES:
        assert registry.get_sample_value("content_tagger_events_out_total", {"outcome": outcome}) == 0
    for tag in APPROVED_TAGS:
        assert registry.get_sample_value("content_tagger_tagged_total", {"tag": tag}) == 0
        assert registry.get_sample_value("content_tagger_confidence_count", {"tag": tag}) == 0
    for reason in DEADLETTER_REASONS:
        assert registry.get_sample_value("content_tagger_deadletters_total", {"reason": reason}) == 0
    for match in ("exact", "near"):
        assert registry.get_sample_value("content_tagger_duplicates_total", {"match": match}) == 0


def test_each_call_moves_its_own_series(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.consumed(3)
    metrics.emitted("review")
    metrics.tagged("mlops")
    metrics.dead_lettered("not_json")
    metrics.duplicate("near")
    metrics.classified("mlops", 0.93)
    metrics.batch(4, 0.002)
    metrics.latency(0.004)
    value = registry.get_sample_value
    assert value("content_tagger_events_consumed_total") == 3
    assert value("content_tagger_events_out_total", {"outcome": "review"}) == 1
    assert value("content_tagger_events_out_total", {"outcome": "tagged"}) == 0
    assert value("content_tagger_tagged_total", {"tag": "mlops"}) == 1
    assert value("content_tagger_deadletters_total", {"reason": "not_json"}) == 1
    assert value("content_tagger_duplicates_total", {"match": "near"}) == 1
    assert value("content_tagger_confidence_bucket", {"tag": "mlops", "le": "0.9"}) == 0
    assert value("content_tagger_confidence_bucket", {"tag": "mlops", "le": "0.95"}) == 1
    assert value("content_tagger_inference_message_duration_seconds_sum") == pytest.approx(0.0005)
    assert value("content_tagger_batch_size_sum") == 4
    assert value("content_tagger_processing_latency_seconds_count") == 1


def test_confidence_buckets_are_the_model_cards_bins(registry: CollectorRegistry, metrics: Metrics) -> None:
    bounds = {
        float(s.labels["le"])
        for family in registry.collect() if family.name == "content_tagger_confidence"
        for s in family.samples if s.name.endswith("_bucket")
    }
    assert bounds == {*EDGES[1:], float("inf")}


def test_model_info_shows_only_the_current_model(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_model("aaa", 0.6, 0.2)
    metrics.set_model("bbb", 0.7, 0.25)
    assert registry.get_sample_value("content_tagger_model_info", {"version": "aaa", "threshold": "0.6000"}) is None
    assert registry.get_sample_value("content_tagger_model_info", {"version": "bbb", "threshold": "0.7000"}) == 1
    assert registry.get_sample_value("content_tagger_reference_below_threshold_share") == 0.25


def test_gauges_publish_drift_lag_and_state(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_drift(DriftSnapshot(0.3, 0.05, 0.4, 700))
    metrics.set_lag(2, 15)
    metrics.set_dedupe_entries(1234)
    metrics.set_last_event(1_700_000_000.0)
    value = registry.get_sample_value
    assert (value("content_tagger_drift_confidence_psi"), value("content_tagger_drift_tag_psi")) == (0.3, 0.05)
    assert value("content_tagger_below_threshold_share") == 0.4
    assert value("content_tagger_consumer_lag", {"partition": "2"}) == 15
    assert value("content_tagger_dedupe_entries") == 1234
    assert value("content_tagger_last_event_timestamp_seconds") == 1_700_000_000.0
