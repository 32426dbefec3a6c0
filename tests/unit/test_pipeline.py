"""The processing steps without Kafka: each message becomes exactly one output, routed by the model's
confidence, with duplicates dropped and metrics counted."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stream_app import APPROVED_TAGS
from stream_app.classifier import Classifier, event_text
from stream_app.dedupe import DedupeIndex, DedupeVerdict, dedupe_key
from stream_app.drift import DriftMonitor, Reference
from stream_app.metrics import Metrics
from stream_app.pipeline import Admitted, Output, Pipeline, utc_iso
from stream_app.title_index.index import TitleIndex


def make_pipeline(model_dir: Path, threshold: float | None = None) -> tuple[Pipeline, CollectorRegistry]:
    classifier = Classifier.load(model_dir, threshold)
    registry = CollectorRegistry()
    reference = Reference.from_card(classifier.card)
    metrics = Metrics(registry, reference.confidence_bin_edges)
    pipeline = Pipeline(classifier, metrics, DriftMonitor(reference, 100, classifier.threshold))
    return pipeline, registry


def admit(pipeline: Pipeline, value: dict[str, Any] | bytes, offset: int = 0) -> Admitted | Output:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return pipeline.admit(raw, topic="content", partition=0, offset=offset, event_time=1000.0 + offset)


def test_malformed_input_is_dead_lettered_and_valid_input_admitted_with_its_key(trained_model_dir: Path) -> None:
    pipeline, registry = make_pipeline(trained_model_dir)
    letter = admit(pipeline, b'{"id": 1', offset=7)
    assert isinstance(letter, Output) and letter.kind == "deadletter"
    assert (letter.record["error"], letter.record["offset"]) == ("not_json", 7)
    event = admit(pipeline, {"id": 2, "title": "Object detection with YOLO", "extra": {"kept": True}})
    assert isinstance(event, Admitted)
    assert event.dedupe_key == dedupe_key(event.event.title) and event.event.fields["extra"] == {"kept": True}
    assert registry.get_sample_value("content_tagger_events_consumed_total") == 2
    assert registry.get_sample_value("content_tagger_deadletters_total", {"reason": "not_json"}) == 1


def test_a_batch_yields_one_output_per_event_in_order(trained_model_dir: Path) -> None:
    pipeline, registry = make_pipeline(trained_model_dir)
    index = DedupeIndex({}, ttl_seconds=86400)

    def check(item: Admitted) -> DedupeVerdict:
        return index.check_and_add(str(item.event.id), item.event.title, item.event.description, item.event_time)

    titles = [
        "Object detection with YOLO",
        "Sentiment analysis of tweets with BERT",
        "object detection with yolo!",
        "Deploying models with Kubernetes and MLflow",
    ]
    batch = [admit(pipeline, {"id": n, "title": t, "description": ""}, offset=n) for n, t in enumerate(titles)]
    outputs = pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], check)
    assert [o.key for o in outputs] == ["0", "1", "2", "3"]
    assert outputs[2].kind == "duplicate" and outputs[2].record["duplicate_of"] == "0"
    assert {o.kind for o in outputs[:2] + outputs[3:]} <= {"tagged", "review"}
    for output in outputs:
        if output.kind in ("tagged", "review"):
            assert output.record["model_version"] == pipeline.classifier.version
    emitted = sum(
        registry.get_sample_value("content_tagger_events_out_total", {"outcome": k}) or 0
        for k in ("tagged", "review", "duplicate", "deadletter")
    )
    assert emitted == len(outputs)
    assert registry.get_sample_value("content_tagger_drift_window_events") == 3


@pytest.mark.parametrize(("threshold", "kind"), [(0.0, "tagged"), (1.0, "review")])
def test_confidence_against_the_threshold_decides_tagged_or_review(
    trained_model_dir: Path, threshold: float, kind: str
) -> None:
    pipeline, _ = make_pipeline(trained_model_dir, threshold)
    item = admit(pipeline, {"id": "a", "title": "Image segmentation with U-Net"})
    assert isinstance(item, Admitted)
    [output] = pipeline.route_batch([item], lambda i: DedupeVerdict(i.dedupe_key, None, None, 0.0))
    assert output.kind == kind
    if kind == "review":
        assert output.record["reason"] == "low_confidence" and "suggested_tag" in output.record
    else:
        assert output.record["tagged_by"] == "model" and output.record["tag"] in pipeline.classifier.classes


def test_a_swap_publishes_the_new_models_empty_drift_window_at_once(trained_model_dir: Path) -> None:
    """The replaced model's window would otherwise stay published, its drift alerts firing for a model that no
    longer serves, until a batch comes (on a quiet stream, for good)."""
    pipeline, registry = make_pipeline(trained_model_dir)
    for _ in range(300):
        pipeline.drift.observe("mlops", 0.05)
    pipeline.metrics.set_drift(pipeline.drift.snapshot())
    assert registry.get_sample_value("content_tagger_drift_window_events") == 100
    assert (registry.get_sample_value("content_tagger_drift_confidence_psi") or 0.0) > 0.2
    pipeline.swap(Classifier.load(trained_model_dir, 0.9))
    assert registry.get_sample_value("content_tagger_drift_window_events") == 0
    assert registry.get_sample_value("content_tagger_drift_confidence_psi") == 0.0
    assert registry.get_sample_value("content_tagger_drift_tag_psi") == 0.0


def routed_across_a_swap(trained_model_dir: Path) -> tuple[Pipeline, CollectorRegistry, str, list[Output]]:
    """A batch of three checked by the live model (threshold 0), a model with threshold 1 swapped in while the
    batch is classified (the worker classifies on another thread between ``dedupe`` and ``route``), then the
    batch routed: the pipeline, its registry, the replaced model's version and the outputs."""
    pipeline, registry = make_pipeline(trained_model_dir, threshold=0.0)
    live = pipeline.classifier
    items = [admit(pipeline, {"id": n, "title": f"Image segmentation with U-Net {n}"}, n) for n in range(3)]
    checked = pipeline.dedupe(
        [i for i in items if isinstance(i, Admitted)], lambda i: DedupeVerdict(i.dedupe_key, None, None, 0.0)
    )
    pipeline.swap(Classifier(live._session, {**live.card, "version": "next"}, threshold=1.0))
    outputs = pipeline.route(checked, checked.classify())
    assert checked.model_seconds > 0
    return pipeline, registry, live.version, outputs


def test_a_model_swapped_while_a_batch_is_classified_does_not_apply_to_that_batch(trained_model_dir: Path) -> None:
    """The batch's outputs still name, and are routed by the threshold of, the model it was classified with."""
    _, _, live_version, outputs = routed_across_a_swap(trained_model_dir)
    assert [(o.kind, o.record["model_version"]) for o in outputs] == [("tagged", live_version)] * 3


def test_the_drift_window_published_after_a_batch_classified_across_a_swap_is_the_new_models(
    trained_model_dir: Path,
) -> None:
    """The batch observes the replaced model's window; publishing that window would undo the swap's and show the
    old model's drift beside the new model's info until the next batch."""
    pipeline, registry, _, _ = routed_across_a_swap(trained_model_dir)
    assert registry.get_sample_value("content_tagger_drift_window_events") == pipeline.drift.snapshot().events == 0


def test_a_raised_review_threshold_leaves_the_drift_share_at_the_threshold_its_reference_was_measured_at(
    trained_model_dir: Path,
) -> None:
    """``content_tagger_below_threshold_share`` is compared with the card's reference share: counted at a
    raised threshold, it doubled on a calm stream and fired the review-share alert."""
    pipeline, registry = make_pipeline(trained_model_dir)
    raised = Classifier.load(trained_model_dir, threshold=0.99)
    pipeline.swap(raised)
    assert raised.threshold == 0.99 > raised.card_threshold
    pipeline.drift.observe("mlops", (raised.card_threshold + 0.99) / 2)  # to review now, above the card's
    assert pipeline.drift.snapshot().below_threshold_share == 0.0


def test_latency_is_measured_from_a_clock_that_wall_clock_steps_do_not_move(
    trained_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent takes an event's latency as ``time.monotonic()`` at publication less its ``consumed_at``: a wall
    clock stepped back after admission (NTP) made it negative, a false sub-millisecond latency."""
    pipeline, _ = make_pipeline(trained_model_dir)
    monkeypatch.setattr("stream_app.pipeline.time.time", lambda: 4e9)  # the wall clock far ahead at admission
    item = admit(pipeline, {"id": 1, "title": "Image segmentation with U-Net"})
    assert isinstance(item, Admitted)
    assert 0 <= time.monotonic() - item.consumed_at < 60


def test_a_timestamp_no_datetime_holds_gives_an_iso_time_instead_of_an_error() -> None:
    assert utc_iso(-1) == utc_iso(float("nan")) == "1970-01-01T00:00:00.000+00:00"
    assert utc_iso(0) == "1970-01-01T00:00:00.000+00:00"
    assert utc_iso(2**32) == "2106-02-07T06:28:16.000+00:00"
    assert utc_iso(1e15) == utc_iso(float("inf")) == "9999-12-31T23:59:59.000+00:00"
    assert utc_iso(1764633600.123) == "2025-12-02T00:00:00.123+00:00"


def test_an_event_whose_confidence_equals_the_review_threshold_is_tagged(trained_model_dir: Path) -> None:
    """The threshold is the confidence *below which* events go to review (``TAGGER_REVIEW_THRESHOLD``): an event
    at exactly the threshold is auto-tagged."""
    title = "Image segmentation with U-Net"
    [prediction] = Classifier.load(trained_model_dir).predict([event_text(title, None)])
    pipeline, _ = make_pipeline(trained_model_dir, threshold=prediction.confidence)
    assert pipeline.classifier.threshold == prediction.confidence  # above the card's, so served as set
    item = admit(pipeline, {"id": "a", "title": title})
    assert isinstance(item, Admitted)
    [output] = pipeline.route_batch([item], lambda i: DedupeVerdict(i.dedupe_key, None, None, 0.0))
    assert (output.kind, output.record["confidence"]) == ("tagged", prediction.confidence)


def test_every_consumed_message_is_counted_once_by_its_outcome_and_each_copy_by_its_match(
    trained_model_dir: Path,
) -> None:
    """``events_out_total`` sums to ``events_consumed_total`` (a malformed message, an original and its exact copy:
    one dead letter, one duplicate, one classified), and ``duplicates_total`` counts the copy as exact."""
    pipeline, registry = make_pipeline(trained_model_dir)
    index = DedupeIndex({}, ttl_seconds=86400)
    values: list[dict[str, Any] | bytes] = [
        b'{"id": 1',
        {"id": 2, "title": "Object detection with YOLO"},
        {"id": 3, "title": "object detection with yolo!"},  # the same title once case and punctuation are dropped
    ]
    batch = [admit(pipeline, value, offset=n) for n, value in enumerate(values)]
    pipeline.route_batch(
        [item for item in batch if isinstance(item, Admitted)],
        lambda i: index.check_and_add(str(i.event.id), i.event.title, None, i.event_time),
    )
    out = {
        outcome: registry.get_sample_value("content_tagger_events_out_total", {"outcome": outcome}) or 0.0
        for outcome in ("tagged", "review", "duplicate", "deadletter")
    }
    assert registry.get_sample_value("content_tagger_events_consumed_total") == 3
    assert (out["deadletter"], out["duplicate"], out["tagged"] + out["review"]) == (1, 1, 1)
    assert registry.get_sample_value("content_tagger_duplicates_total", {"match": "exact"}) == 1
    assert registry.get_sample_value("content_tagger_duplicates_total", {"match": "near"}) in (None, 0)


def test_a_batch_s_metrics_count_what_it_made(trained_model_dir: Path) -> None:
    """The dashboard's per-tag, confidence and batch panels read these: each classified event once, each
    auto-tagged one under its tag, one ONNX call of the batch's size."""
    pipeline, registry = make_pipeline(trained_model_dir)
    titles = [
        "Object detection with YOLO on drones",
        "Sentiment analysis of tweets with BERT",
        "Serving models with KServe on Kubernetes",
        "A cooking blog",
        "Image segmentation with U-Net",
    ]
    batch = [admit(pipeline, {"id": n, "title": t, "description": ""}, offset=n) for n, t in enumerate(titles)]
    outputs = pipeline.route_batch(
        [item for item in batch if isinstance(item, Admitted)],
        lambda item: DedupeVerdict(item.dedupe_key, None, None, 0.0),
    )
    for tag in APPROVED_TAGS:
        shown = sum(o.kind == "tagged" and o.record["tag"] == tag for o in outputs)
        assert (registry.get_sample_value("content_tagger_tagged_total", {"tag": tag}) or 0) == shown, tag
        predicted = sum(o.record.get("tag", o.record.get("suggested_tag")) == tag for o in outputs)
        assert (registry.get_sample_value("content_tagger_confidence_count", {"tag": tag}) or 0) == predicted, tag
    assert registry.get_sample_value("content_tagger_batch_size_count") == 1
    assert registry.get_sample_value("content_tagger_batch_size_sum") == len(titles)
    assert registry.get_sample_value("content_tagger_inference_batch_duration_seconds_count") == 1


def test_events_a_second_look_finds_copies_leave_the_batch_with_their_predictions(trained_model_dir: Path) -> None:
    """The batch is classified while the second look waits; an event it turns into a copy goes out as a duplicate,
    and every other event keeps its own prediction."""
    pipeline, registry = make_pipeline(trained_model_dir)
    titles = ["Object detection with YOLO", "Sentiment analysis of tweets with BERT", "Serving models with KServe"]
    batch = [admit(pipeline, {"id": n, "title": t, "description": ""}, offset=n) for n, t in enumerate(titles)]
    fresh = [item for item in batch if isinstance(item, Admitted)]
    checked = pipeline.dedupe(fresh, lambda item: DedupeVerdict(item.dedupe_key, None, None, 0.0))
    predictions = checked.classify()
    copy = DedupeVerdict(fresh[1].dedupe_key, "other-worker-7", "exact", 1.0)

    left = checked.turn_copies({1: copy}, predictions)

    assert left == [predictions[0], predictions[2]] and checked.texts == [checked.texts[0], checked.texts[1]]
    outputs = pipeline.route(checked, left)
    assert [output.kind == "duplicate" for output in outputs] == [False, True, False]
    assert outputs[1].record["duplicate_of"] == "other-worker-7"
    assert [outputs[n].record["confidence"] for n in (0, 2)] == [round(predictions[n].confidence, 6) for n in (0, 2)]
    assert registry.get_sample_value("content_tagger_duplicates_total", {"match": "exact"}) == 1


def test_a_message_without_a_timestamp_is_dated_when_it_is_admitted_and_checked_as_any(
    trained_model_dir: Path,
) -> None:
    """Faust gives a record of Kafka's message formats before 0.10 the timestamp None; the check's
    ``max(event_time, ...)`` then raised TypeError, which stops the worker, at every restart."""
    pipeline, _ = make_pipeline(trained_model_dir)
    before = time.time()
    raw = json.dumps({"id": 5, "title": "Object detection with YOLO"}).encode()
    event = pipeline.admit(raw, topic="content", partition=0, offset=0, event_time=None)
    assert isinstance(event, Admitted) and before <= event.event_time <= time.time()
    index = TitleIndex(86400.0, 300.0)
    index.finish_loading()
    ((verdict, changes),) = index.check_many([("5", event.event.title, None, event.event_time)])
    assert verdict.duplicate_of is None and len(changes) == 1
