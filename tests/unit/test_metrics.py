"""Metric names follow Prometheus conventions, every known label reads 0 at start, and each call moves
the right series and no other."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream_app import APPROVED_TAGS
from stream_app.batch_histogram import BatchHistogram
from stream_app.drift import DriftSnapshot
from stream_app.errors import DEADLETTER_REASONS, MODEL_REFUSAL_REASONS, SKIP_REASONS
from stream_app.metric_labels import MATCHES, MAX_JUDGED_VERSIONS, OUTCOMES, ROUTES, SKIPPED_TOPICS, VERDICTS
from stream_app.metrics import Metrics

EDGES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
BOUNDED_LABELS = {
    "outcome",
    "tag",
    "reason",
    "match",
    "le",
    "version",
    "threshold",
    "partition",
    "verdict",
    "route",
    "topic",
    "model",
}
# The names the README, the dashboard and the alerts rely on.
CONTRACT = {
    "content_tagger_events_consumed_total": "counter",
    "content_tagger_events_out_total": "counter",
    "content_tagger_tagged_total": "counter",
    "content_tagger_deadletters_total": "counter",
    "content_tagger_duplicates_total": "counter",
    "content_tagger_processing_latency_seconds": "histogram",
    "content_tagger_inference_batch_duration_seconds": "histogram",
    "content_tagger_inference_message_duration_seconds": "histogram",
    "content_tagger_batch_size": "histogram",
    "content_tagger_confidence": "histogram",
    "content_tagger_drift_confidence_psi": "gauge",
    "content_tagger_drift_tag_psi": "gauge",
    "content_tagger_below_threshold_share": "gauge",
    "content_tagger_reference_below_threshold_share": "gauge",
    "content_tagger_review_threshold": "gauge",
    "content_tagger_drift_window_events": "gauge",
    "content_tagger_dedupe_entries": "gauge",
    "content_tagger_index_replication_delay_seconds": "histogram",
    "content_tagger_index_barrier_timeouts_total": "counter",
    "content_tagger_second_look_copies_total": "counter",
    "content_tagger_model_info": "gauge",
    "content_tagger_last_event_timestamp_seconds": "gauge",
    "content_tagger_consumer_lag": "gauge",
    "content_tagger_start_time_seconds": "gauge",
    "content_tagger_feedback_decisions_total": "counter",
    "content_tagger_online_judged_total": "counter",
    "content_tagger_online_shown_total": "counter",
    "content_tagger_online_correct_total": "counter",
    "content_tagger_review_backlog": "gauge",
    "content_tagger_review_board_full": "gauge",
    "content_tagger_review_sign_ins_total": "counter",
    "content_tagger_model_refusals_total": "counter",
    "content_tagger_model_promotions_total": "counter",
    "content_tagger_retrains_skipped_total": "counter",
    "content_tagger_skipped_records_total": "counter",
    "content_tagger_model_served_total": "counter",
    "content_tagger_registry_reachable": "gauge",
    "content_tagger_shadow_compared_total": "counter",
    "content_tagger_shadow_agreed_total": "counter",
    "content_tagger_shadow_review_total": "counter",
}
Key = tuple[str, tuple[tuple[str, str], ...]]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, EDGES)


def samples(registry: CollectorRegistry) -> dict[Key, float]:
    """Every sample of the registry except the timestamps of when it was made (``_created``, the start time)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created") and s.name != "content_tagger_start_time_seconds"
    }


def test_the_registry_exposes_exactly_contracted_names(registry: CollectorRegistry, metrics: Metrics) -> None:
    exposed = {f.name + ("_total" if f.type == "counter" else ""): f.type for f in registry.collect()}
    assert exposed == CONTRACT


def test_the_readme_documents_every_metric_with_its_type() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = {}  # a row may name several metrics of one type: | `a`, `b` | gauge | ...
    for cells in (line.split("|") for line in readme.splitlines() if line.startswith("| `content_tagger_")):
        documented.update({name.strip().strip("`"): cells[2].strip() for name in cells[1].split(",")})
    assert {name: documented.get(name) for name in CONTRACT} == CONTRACT


def test_names_are_prefixed_counters_end_in_total_and_units_are_base(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.set_lag(0, 0)
    for family in registry.collect():
        assert family.name.startswith("content_tagger_"), family.name
        assert not family.name.endswith(("_ms", "_millis", "_milliseconds", "_minutes")), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        else:
            assert not family.name.endswith("_total"), family.name
        for sample in family.samples:
            assert set(sample.labels) <= BOUNDED_LABELS, sample


def test_known_label_values_read_zero_from_the_start(registry: CollectorRegistry, metrics: Metrics) -> None:
    value = registry.get_sample_value
    assert value("content_tagger_events_consumed_total") == 0
    for outcome in OUTCOMES:
        assert value("content_tagger_events_out_total", {"outcome": outcome}) == 0
    for tag in APPROVED_TAGS:
        assert value("content_tagger_tagged_total", {"tag": tag}) == 0
        assert value("content_tagger_confidence_count", {"tag": tag}) == 0
    for reason in DEADLETTER_REASONS:
        assert value("content_tagger_deadletters_total", {"reason": reason}) == 0
    for match in MATCHES:
        assert value("content_tagger_duplicates_total", {"match": match}) == 0
    for reason in MODEL_REFUSAL_REASONS:
        assert value("content_tagger_model_refusals_total", {"reason": reason}) == 0
    assert value("content_tagger_model_promotions_total") == 0
    for topic, reason in itertools.product(SKIPPED_TOPICS, SKIP_REASONS):
        assert value("content_tagger_skipped_records_total", {"topic": topic, "reason": reason}) == 0
    for verdict in VERDICTS:
        assert value("content_tagger_feedback_decisions_total", {"verdict": verdict}) == 0
    metrics.set_model("v1", 0.6, 0.2)
    for route, tag in itertools.product(ROUTES, APPROVED_TAGS):
        labels = {"version": "v1", "route": route, "tag": tag}
        assert value("content_tagger_online_judged_total", labels) == 0
        assert value("content_tagger_online_correct_total", labels) == 0


def test_a_judgement_counts_the_verdict_and_whether_the_model_was_right(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    value = registry.get_sample_value
    metrics.judged("corrected", "v1", "review", "mlops", correct=False)
    metrics.judged("accepted", "v1", "review", "mlops", correct=True)
    metrics.judged("reported", "v2", "tagged", "other", correct=False)
    metrics.judged("reported", None, None, None, correct=False)  # the prediction is not known: only the verdict
    assert value("content_tagger_online_judged_total", {"version": "v1", "route": "review", "tag": "mlops"}) == 2
    assert value("content_tagger_online_correct_total", {"version": "v1", "route": "review", "tag": "mlops"}) == 1
    assert value("content_tagger_online_judged_total", {"version": "v2", "route": "tagged", "tag": "other"}) == 1
    assert value("content_tagger_feedback_decisions_total", {"verdict": "reported"}) == 2
    judged = [value("content_tagger_online_judged_total", {"version": v, "route": r, "tag": t}) or 0
              for v, r, t in itertools.product(("v1", "v2"), ROUTES, APPROVED_TAGS)]  # fmt: skip
    assert sum(judged) == 3


def versions_in(registry: CollectorRegistry, metric_name: str) -> set[str]:
    """The model versions that have series of the metric ``metric_name``."""
    return {
        sample.labels["version"]
        for metric in registry.collect()
        if metric.name == metric_name
        for sample in metric.samples
    }


def test_model_versions_read_off_records_are_bounded_in_the_judged_counters(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    value = registry.get_sample_value
    for n in range(MAX_JUDGED_VERSIONS + 10):  # hostile tagged records, each naming another model version
        metrics.judged("accepted", f"v{n}", "tagged", "mlops", correct=True)
    metrics.judged("accepted", "v0", "tagged", "mlops", correct=True)  # a version already counted goes on
    assert versions_in(registry, "content_tagger_online_judged") == {f"v{n}" for n in range(MAX_JUDGED_VERSIONS)}
    assert value("content_tagger_online_judged_total", {"version": "v0", "route": "tagged", "tag": "mlops"}) == 2
    assert value("content_tagger_feedback_decisions_total", {"verdict": "accepted"}) == MAX_JUDGED_VERSIONS + 11
    metrics.set_served_model("served")  # the bound is full, but the model the platform serves is counted
    metrics.judged("corrected", "served", "tagged", "mlops", correct=False)
    assert value("content_tagger_online_judged_total", {"version": "served", "route": "tagged", "tag": "mlops"}) == 1


def test_model_versions_read_off_records_are_bounded_in_the_shown_counter(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    value = registry.get_sample_value
    for n in range(MAX_JUDGED_VERSIONS + 10):  # hostile tagged records, each naming another model version
        metrics.shown(f"v{n}")
    metrics.shown("v0")
    metrics.shown("v0")  # a version already counted goes on
    assert versions_in(registry, "content_tagger_online_shown") == {f"v{n}" for n in range(MAX_JUDGED_VERSIONS)}
    assert value("content_tagger_online_shown_total", {"version": "v0"}) == 3
    assert value("content_tagger_online_shown_total", {"version": f"v{MAX_JUDGED_VERSIONS}"}) is None
    metrics.set_served_model("served")  # the bound is full, but the model the platform serves is counted
    metrics.shown("served")
    metrics.shown("served")
    assert value("content_tagger_online_shown_total", {"version": "served"}) == 2


@pytest.mark.parametrize(
    ("call", "moved"),
    [
        (lambda m: m.consumed(3), {("content_tagger_events_consumed_total", ()): 3}),
        (lambda m: m.emitted("review"), {("content_tagger_events_out_total", (("outcome", "review"),)): 1}),
        (
            lambda m: m.emitted("duplicate", 5),
            {("content_tagger_events_out_total", (("outcome", "duplicate"),)): 5},
        ),
        (lambda m: m.tagged("mlops"), {("content_tagger_tagged_total", (("tag", "mlops"),)): 1}),
        (
            lambda m: m.dead_lettered("not_json"),
            {("content_tagger_deadletters_total", (("reason", "not_json"),)): 1},
        ),
        (
            lambda m: m.skipped("feedback", "tombstone"),
            {("content_tagger_skipped_records_total", (("reason", "tombstone"), ("topic", "feedback"))): 1},
        ),
        (lambda m: m.duplicate("near"), {("content_tagger_duplicates_total", (("match", "near"),)): 1}),
        (lambda m: m.track_dedupe_entries(lambda: 1234), {("content_tagger_dedupe_entries", ()): 1234}),
        (lambda m: m.set_last_event(1.7e9, now=1.8e9), {("content_tagger_last_event_timestamp_seconds", ()): 1.7e9}),
    ],
)
def test_each_count_moves_its_own_series_and_no_other(
    registry: CollectorRegistry, metrics: Metrics, call: Callable[[Metrics], None], moved: dict[Key, float]
) -> None:
    before = samples(registry)
    call(metrics)
    after = samples(registry)
    changed = {key: v for key, v in after.items() if before.get(key) != v}
    assert changed == moved


def test_classified_fills_its_tags_confidence_bucket(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.classified("mlops", 0.93)
    metrics.classified("mlops", 0.3)  # an edge belongs to the bucket it bounds (le)
    value = registry.get_sample_value
    bucket = "content_tagger_confidence_bucket"
    assert value(bucket, {"tag": "mlops", "le": "0.3"}) == 1
    assert value(bucket, {"tag": "mlops", "le": "0.9"}) == 1
    assert value(bucket, {"tag": "mlops", "le": "0.95"}) == 2
    assert value("content_tagger_confidence_count", {"tag": "mlops"}) == 2
    assert value("content_tagger_confidence_count", {"tag": "other"}) == 0
    # Review events are classified but not tagged.
    assert value("content_tagger_tagged_total", {"tag": "mlops"}) == 0


def test_confidence_buckets_are_the_model_cards_bins(registry: CollectorRegistry, metrics: Metrics) -> None:
    bounds = {
        float(s.labels["le"])
        for family in registry.collect()
        if family.name == "content_tagger_confidence"
        for s in family.samples
        if s.name.endswith("_bucket")
    }
    assert bounds == {*EDGES[1:], float("inf")}


def test_batch_observes_size_call_time_and_event_time(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.batch(4, 0.002)
    metrics.batch(1, 0.001)
    value = registry.get_sample_value
    assert value("content_tagger_batch_size_sum") == 5
    assert value("content_tagger_batch_size_bucket", {"le": "2.0"}) == 1
    assert value("content_tagger_inference_batch_duration_seconds_sum") == pytest.approx(0.003)
    assert value("content_tagger_inference_message_duration_seconds_sum") == pytest.approx(0.0005 + 0.001)
    assert value("content_tagger_inference_message_duration_seconds_count") == 2


def test_latency_covers_half_a_millisecond_to_a_second(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.latency(0.0004)
    metrics.latency(0.8)
    value = registry.get_sample_value
    assert value("content_tagger_processing_latency_seconds_bucket", {"le": "0.0005"}) == 1
    assert value("content_tagger_processing_latency_seconds_bucket", {"le": "0.5"}) == 1
    assert value("content_tagger_processing_latency_seconds_bucket", {"le": "1.0"}) == 2
    assert value("content_tagger_processing_latency_seconds_count") == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.emitted("elsewhere"),
        lambda m: m.tagged("cooking"),
        lambda m: m.classified("cooking", 0.9),
        lambda m: m.dead_lettered("bad_vibes"),
        lambda m: m.duplicate("similar"),
        lambda m: m.sign_in("guessed"),
    ],
)
def test_an_unknown_label_value_raises_instead_of_adding_a_series(
    registry: CollectorRegistry, metrics: Metrics, call: Callable[[Metrics], None]
) -> None:
    before = samples(registry)
    with pytest.raises(KeyError):
        call(metrics)
    assert samples(registry) == before


def test_sign_ins_are_counted_by_outcome_each_from_zero(registry: CollectorRegistry, metrics: Metrics) -> None:
    value = registry.get_sample_value
    assert value("content_tagger_review_sign_ins_total", {"outcome": "limited"}) == 0  # alertable before the first
    metrics.sign_in("wrong")
    metrics.sign_in("wrong")
    metrics.sign_in("signed_in")
    counts = {
        o: value("content_tagger_review_sign_ins_total", {"outcome": o}) for o in ("signed_in", "wrong", "limited")
    }
    assert counts == {"signed_in": 1, "wrong": 2, "limited": 0}


def test_model_info_shows_only_the_current_model(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_model("aaa", 0.6, 0.2)
    metrics.set_model("bbb", 0.7, 0.25)
    value = registry.get_sample_value
    assert value("content_tagger_model_info", {"version": "aaa", "threshold": "0.6000"}) is None
    assert value("content_tagger_model_info", {"version": "bbb", "threshold": "0.7000"}) == 1
    assert value("content_tagger_review_threshold") == 0.7
    assert value("content_tagger_reference_below_threshold_share") == 0.25


def test_an_event_dated_ahead_of_the_worker_s_clock_is_published_at_the_worker_s_time(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    """The dashboard's event age is ``time() - last_event``: a producer's clock in 2100 made it negative (a
    stall behind it showed green) until a later event came."""
    metrics.set_last_event(4_102_444_800.0, now=1.8e9)
    assert registry.get_sample_value("content_tagger_last_event_timestamp_seconds") == 1.8e9


def test_drift_and_lag_are_published_as_gauges(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_drift(DriftSnapshot(confidence_psi=0.3, tag_psi=0.05, below_threshold_share=0.4, events=700))
    metrics.set_lag(2, 15)
    metrics.set_lag(2, 9)
    metrics.set_lag(0, 1)
    value = registry.get_sample_value
    assert value("content_tagger_drift_confidence_psi") == 0.3
    assert value("content_tagger_drift_tag_psi") == 0.05
    assert value("content_tagger_below_threshold_share") == 0.4
    assert value("content_tagger_drift_window_events") == 700
    assert value("content_tagger_consumer_lag", {"partition": "2"}) == 9
    assert value("content_tagger_consumer_lag", {"partition": "0"}) == 1
    metrics.keep_lags({0, 3})  # partition 2 moved to another worker, which publishes it now
    assert value("content_tagger_consumer_lag", {"partition": "2"}) is None
    assert value("content_tagger_consumer_lag", {"partition": "0"}) == 1
    metrics.set_lag(2, 4)  # given back
    assert value("content_tagger_consumer_lag", {"partition": "2"}) == 4


def test_each_start_publishes_the_time_it_started_at() -> None:
    """The restart alert counts the changes of this gauge: each worker process must show its own start."""
    first = CollectorRegistry()
    before = time.time()
    Metrics(first, EDGES)
    after = time.time()
    started = first.get_sample_value("content_tagger_start_time_seconds")
    assert started is not None and before <= started <= after
    second = CollectorRegistry()
    Metrics(second, EDGES)
    again = second.get_sample_value("content_tagger_start_time_seconds")
    assert again is not None and again >= after


def test_two_workers_metrics_do_not_collide_in_separate_registries() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first, EDGES).consumed(2)
    Metrics(second, EDGES)
    assert first.get_sample_value("content_tagger_events_consumed_total") == 2
    assert second.get_sample_value("content_tagger_events_consumed_total") == 0


# Bounds of 0 and up, as the worker's are: with a negative bound, neither has a sum, and the client keeps a count.
_BOUNDS = st.lists(st.floats(0, 10), min_size=1, max_size=6, unique=True).map(sorted)
_VALUES = st.lists(st.one_of(st.floats(-20, 20), st.sampled_from([0.0, 1.0, 2.5, float("inf")])), max_size=30)


@given(_BOUNDS, st.lists(st.tuples(st.sampled_from(["a", "b"]), _VALUES), max_size=4))
def test_a_batch_histogram_exposes_what_the_client_s_histogram_does_for_the_same_values(
    bounds: list[float], batches: list[tuple[str, list[float]]]
) -> None:
    """Scraped text, bucket for bucket: the dashboards and alerts read these histograms as they read the client's
    (NaN values left out of both: the client's adds them to the sum)."""
    theirs_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    theirs = Histogram("h", "A histogram.", ["tag"], buckets=bounds, registry=theirs_registry)
    ours = BatchHistogram("h", "A histogram.", bounds, ["tag"], registry=ours_registry)
    for tag, values in batches:
        child = theirs.labels(tag)
        for value in values:
            child.observe(value)
        ours.labels(tag).observe_many(values)

    def scraped(registry: CollectorRegistry) -> list[bytes]:
        return sorted(line for line in generate_latest(registry).splitlines() if b"_created" not in line)

    assert scraped(ours_registry) == scraped(theirs_registry)


def test_a_batch_histogram_leaves_nan_out_and_refuses_a_wrong_number_of_labels() -> None:
    registry = CollectorRegistry()
    histogram = BatchHistogram("h", "A histogram.", [1.0], registry=registry)
    histogram.observe_many([0.5, float("nan"), 2.0])
    assert registry.get_sample_value("h_count") == 2
    assert registry.get_sample_value("h_sum") == 2.5
    assert registry.get_sample_value("h_bucket", {"le": "1.0"}) == 1
    with pytest.raises(ValueError, match="takes labels"):
        BatchHistogram("g", "Another.", [1.0], ["tag"]).labels("a", "b")


def test_a_batch_s_counts_move_each_series_as_one_call_per_event_would(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    other = CollectorRegistry()
    one_by_one = Metrics(other, EDGES)
    outcomes = ["tagged", "review", "tagged", "duplicate", "tagged"]
    matches = ["exact", "near", "exact"]
    tagged = ["mlops", "mlops", "other"]
    served = [("v1", "tagged"), ("v1", "review"), ("v1", "tagged"), ("v2", "tagged")]
    tags, confidences = ["mlops", "other", "mlops"], [0.91, 0.35, 0.99]
    metrics.routed(outcomes, matches, tagged, served)
    metrics.classified_many(tags, confidences)
    metrics.latencies([0.001, 0.2, 3.0])
    for outcome in outcomes:
        one_by_one.emitted(outcome)
    for match in matches:
        one_by_one.duplicate(match)
    for tag in tagged:
        one_by_one.tagged(tag)
    for version, route in served:
        one_by_one.served(version, route)
    for tag, confidence in zip(tags, confidences, strict=True):
        one_by_one.classified(tag, confidence)
    for seconds in (0.001, 0.2, 3.0):
        one_by_one.latency(seconds)
    assert samples(registry) == samples(other)
    assert registry.get_sample_value("content_tagger_tagged_total", {"tag": "mlops"}) == 2
    assert registry.get_sample_value("content_tagger_confidence_count", {"tag": "mlops"}) == 2
