"""Guarded promotion without Kafka: the offline rule, the admission checks on real exported models, the shadow
run, and the hot swap of the pipeline's model between batches."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import stream_app.classifier as classifier_module
import stream_app.lifecycle.candidates as candidates_module
import stream_app.lifecycle.retrain as retrain_module
from model_export.promote import (
    ITEMS_OF_SLACK,
    Scores,
    not_worse,
    weighted_precision,
    weighted_precision_per_item,
)
from stream_app import APPROVED_TAGS
from stream_app.classifier import Classifier
from stream_app.dedupe import DedupeVerdict
from stream_app.drift import DriftSnapshot
from stream_app.errors import ModelError
from stream_app.lifecycle.candidates import ModelLifecycle, Refusal, admit, promoted_newest_first, start_model_from
from stream_app.lifecycle.fleet import start_model
from stream_app.lifecycle.retrain import Retrainer
from stream_app.lifecycle.shadow import Shadow, shadow_verdict
from stream_app.pipeline import Admitted
from stream_app.review.labels import LabelStore
from stream_app.settings import Settings
from tests.unit.test_pipeline import admit as admit_event
from tests.unit.test_pipeline import make_pipeline

LIVE = Scores(0.90, 0.96, 0.80, 0.50, 20, test_auto_tagged=50, weighted_precision_per_item=0.01)


def test_a_candidate_as_good_as_the_live_model_is_not_worse() -> None:
    assert not_worse(LIVE, LIVE) == (True, [])


def test_a_candidate_within_the_allowed_test_items_is_not_worse_and_one_more_item_is() -> None:
    n = ITEMS_OF_SLACK
    within = dataclasses.replace(
        LIVE, test_weighted_precision=0.90 - n * 0.01, test_precision_at_threshold=0.96 - n / 50
    )
    assert not_worse(LIVE, within) == (True, [])
    beyond = dataclasses.replace(
        LIVE, test_weighted_precision=0.90 - (n + 1) * 0.01, test_precision_at_threshold=0.96 - (n + 1) / 50
    )
    passed, reasons = not_worse(LIVE, beyond)
    assert not passed and len(reasons) == 2, reasons


def test_a_candidate_that_auto_tags_fewer_items_is_worse_beyond_the_allowed_items() -> None:
    """A candidate precise only because it sends most items to people (its threshold raised) is not better."""
    test_items = LIVE.test_auto_tagged / LIVE.test_coverage  # 62.5: LIVE auto-tags 50 at coverage 0.8
    error = (LIVE.test_coverage * (1 - LIVE.test_coverage) / test_items) ** 0.5  # 0.0506, 3.2 items
    within = dataclasses.replace(LIVE, test_coverage=LIVE.test_coverage - 3 / test_items)
    assert error > 3 / test_items and not_worse(LIVE, within) == (True, [])
    beyond = dataclasses.replace(LIVE, test_coverage=LIVE.test_coverage - 4 / test_items)
    passed, reasons = not_worse(LIVE, beyond)
    assert not passed and reasons[0].startswith("test coverage"), reasons
    timid = dataclasses.replace(LIVE, test_coverage=0.12, test_precision_at_threshold=1.0, test_auto_tagged=8)
    assert not not_worse(LIVE, timid)[0]


def test_one_items_worth_of_weighted_precision_is_the_largest_drop_one_changed_prediction_makes() -> None:
    classes = list(APPROVED_TAGS)
    rng = np.random.default_rng(3)
    labels = rng.choice(classes, size=60, p=[0.4, 0.1, 0.4, 0.1])
    predicted = np.where(rng.random(60) < 0.8, labels, rng.choice(classes, size=60))
    base = weighted_precision(labels, predicted, classes)
    drops = []
    for i in range(len(labels)):
        for other in classes:
            if other != predicted[i]:
                changed = predicted.copy()
                changed[i] = other
                drops.append(base - weighted_precision(labels, changed, classes))
    assert weighted_precision_per_item(labels, predicted, classes) == pytest.approx(max(drops))
    assert 0 < max(drops) < 0.1


def test_each_rule_refuses_a_worse_candidate_and_says_why() -> None:
    cases = {
        "test weighted precision": dataclasses.replace(LIVE, test_weighted_precision=0.85),
        "test precision at threshold": dataclasses.replace(LIVE, test_precision_at_threshold=0.90),
        "feedback holdout accuracy": dataclasses.replace(LIVE, feedback_accuracy=0.45),
    }
    for reason, candidate in cases.items():
        passed, reasons = not_worse(LIVE, candidate)
        assert not passed and len(reasons) == 1 and reasons[0].startswith(reason), reasons
    no_holdout = dataclasses.replace(LIVE, feedback_accuracy=None, feedback_count=0)
    assert not_worse(no_holdout, no_holdout)[0]


def candidate(tmp_path: Path, model_dir: Path, name: str, *, same_bytes: bool = False, **promotion: Any) -> Path:
    """A real exported model as a candidate folder, its card given a ``promotion`` section: the model's answers in
    other bytes (another doc string), so another version, unless ``same_bytes``."""
    folder = tmp_path / "candidates" / name
    shutil.copytree(model_dir, folder)
    card = json.loads((folder / "model.json").read_text())
    if promotion:
        card["promotion"] = promotion
    (folder / "model.json").write_text(json.dumps(card))
    if same_bytes:
        return folder
    model = onnx.load(folder / "model.onnx")
    model.doc_string = f"candidate {name}"
    return rehashed(folder, model)


def test_admission_refuses_unreadable_tampered_unapproved_worse_and_stale_models(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    live = Classifier.load(trained_model_dir)
    passed = {"passed": True, "live_version": live.version, "reasons": []}
    assert isinstance(admit(candidate(tmp_path, trained_model_dir, "good", **passed), live.version), Classifier)

    tampered = candidate(tmp_path, trained_model_dir, "tampered", **passed)
    data = bytearray((tampered / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / "model.onnx").write_bytes(bytes(data))
    unapproved = candidate(tmp_path, trained_model_dir, "unapproved", **passed)
    card = json.loads((unapproved / "model.json").read_text())
    card["classes"] = [*card["classes"][:-1], "robotics"]
    (unapproved / "model.json").write_text(json.dumps(card))
    corrupt = candidate(tmp_path, trained_model_dir, "corrupt", **passed)
    (corrupt / "model.json").write_text("{not json")
    worse = candidate(tmp_path, trained_model_dir, "worse", passed=False, live_version=live.version, reasons=["x"])
    unjudged = candidate(tmp_path, trained_model_dir, "unjudged")
    stale = candidate(tmp_path, trained_model_dir, "stale", passed=True, live_version="0123456789ab", reasons=[])
    # The live model's own bytes with another card (here a threshold of 0: nothing to review) passes any comparison
    # with itself.
    itself = candidate(tmp_path, trained_model_dir, "itself", same_bytes=True, **passed)
    card = json.loads((itself / "model.json").read_text())
    (itself / "model.json").write_text(json.dumps({**card, "threshold": 0.0}))

    expected = {tampered: "tampered", unapproved: "not_approved", corrupt: "corrupt", worse: "worse_offline",
                unjudged: "worse_offline", stale: "stale", itself: "worse_offline"}  # fmt: skip
    for folder, reason in expected.items():
        refusal = admit(folder, live.version)
        assert isinstance(refusal, Refusal) and refusal.reason == reason, (folder.name, refusal)


def test_a_shadow_of_the_same_model_agrees_and_passes(trained_model_dir: Path) -> None:
    model = Classifier.load(trained_model_dir)
    shadow = Shadow(model, events=3)
    texts = ["BERT for text classification", "YOLO object detection", "Kubeflow pipelines on Kubernetes"]
    shadow.observe(texts, model.predict(texts), model.threshold)
    assert shadow.done
    passed, figures = shadow.verdict()
    assert passed and figures["agreement"] == 1.0 and figures["events"] == 3


@pytest.mark.parametrize(("candidate_review", "passes"), [(30, True), (25, True), (24, False), (35, True), (36, False)])
def test_a_shadow_may_send_at_most_5_points_more_or_fewer_events_to_review(candidate_review: int, passes: bool) -> None:
    """Fewer too: a shadow has no labels, so a candidate that auto-tags much more than the live model has shown
    nothing of its precision."""
    passed, figures = shadow_verdict(100, 100, candidate_review, 30)
    assert passed is passes, figures["reasons"]


def test_a_shadow_that_disagrees_fails(trained_model_dir: Path) -> None:
    model = Classifier.load(trained_model_dir)
    shadow = Shadow(model, events=4)
    texts = ["BERT for text classification", "YOLO object detection", "Kubeflow pipelines", "A survey"]
    theirs = [dataclasses.replace(p, tag=next(t for t in APPROVED_TAGS if t != p.tag)) for p in model.predict(texts)]
    shadow.observe(texts, theirs, model.threshold)
    passed, figures = shadow.verdict()
    assert not passed and figures["agreement"] == 0.0


def test_a_promoted_candidate_serves_from_the_next_batch_and_after_a_restart(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    pipeline, registry = make_pipeline(trained_model_dir)
    live_version = pipeline.classifier.version
    folder = candidate(tmp_path, trained_model_dir, "next", passed=True, live_version=live_version, reasons=[])
    # Same bytes as the live model, so tell the two apart by a threshold the card sets.
    card = json.loads((folder / "model.json").read_text())
    card["threshold"] = 0.5
    (folder / "model.json").write_text(json.dumps(card))
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=5)
    asyncio.run(lifecycle.poll())
    assert pipeline.shadow is not None and pipeline.classifier.threshold != 0.5

    def unique(item: Admitted) -> DedupeVerdict:
        return DedupeVerdict(item.dedupe_key, None, None, 0.0)

    batch = [admit_event(pipeline, {"id": n, "title": f"Graph neural networks {n}"}, n) for n in range(5)]
    assert all(isinstance(item, Admitted) for item in batch)
    before = pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
    asyncio.run(lifecycle.poll())  # the shadow saw 5 events: decide
    assert pipeline.shadow is None and pipeline.classifier.threshold == 0.5
    assert registry.get_sample_value("content_tagger_model_promotions_total") == 1
    assert registry.get_sample_value("content_tagger_review_threshold") == 0.5
    assert all(out.record["model_version"] == live_version for out in before)
    promoted = tmp_path / "candidates" / "promoted" / "next"
    assert (promoted / "decision.json").exists()
    assert start_model_from(trained_model_dir, tmp_path / "candidates", None)[1] == promoted


@pytest.mark.parametrize("name", ["model.json", "model.onnx"])
def test_a_candidate_whose_card_or_model_is_a_fifo_is_refused_without_waiting_for_a_writer(
    trained_model_dir: Path, tmp_path: Path, name: str
) -> None:
    """A FIFO (or a device) in a candidate folder would block the thread that reads it, and model management with
    it, for good, and keep the worker from exiting."""
    live = Classifier.load(trained_model_dir)
    folder = candidate(tmp_path, trained_model_dir, "fifo", passed=True, live_version=live.version, reasons=[])
    (folder / name).unlink()
    os.mkfifo(folder / name)
    found: list[Classifier | Refusal] = []
    reader = threading.Thread(target=lambda: found.append(admit(folder, live.version)), daemon=True)
    reader.start()
    reader.join(timeout=30)  # a daemon thread: if it blocks, the test fails rather than hangs
    assert len(found) == 1, "admission blocked on the FIFO"
    assert isinstance(found[0], Refusal) and found[0].reason == "corrupt"


def nan_candidate(tmp_path: Path, model_dir: Path, name: str, *, alone: bool = False, **promotion: Any) -> Path:
    """A candidate that passes every check at load (its probe runs two texts, and one alone) and gives NaN
    probabilities to every batch of three texts or more; with ``alone``, to one text alone, and to no batch. Made
    of the exporter's own operators, as a served model must be."""
    folder = candidate(tmp_path, model_dir, name, **promotion)
    model = onnx.load(folder / "model.onnx")
    softmax = next(node for node in model.graph.node if "probabilities" in node.output)
    softmax.output[0] = "probabilities_before_nan"
    make = onnx.helper
    model.graph.initializer.extend(
        [
            make.make_tensor("all_axes", onnx.TensorProto.INT64, [2], [0, 1]),
            make.make_tensor("sign", onnx.TensorProto.FLOAT, [], [1.0 if alone else -1.0]),
            make.make_tensor("between", onnx.TensorProto.FLOAT, [], [-1.5 if alone else 2.5]),
            make.make_tensor("zero", onnx.TensorProto.FLOAT, [], [0.0]),
        ]
    )
    # Each row of probabilities adds up to 1, so all of them add up to the number of texts, within float error.
    # sqrt(2.5 - rows) * 0 is 0 for one or two texts (what Classifier.load's probe runs) and NaN from three on;
    # sqrt(rows - 1.5) * 0 is NaN for one text and 0 for more.
    model.graph.node.extend(
        [
            make.make_node("ReduceSum", ["probabilities_before_nan", "all_axes"], ["rows"], keepdims=0),
            make.make_node("Mul", ["rows", "sign"], ["signed_rows"]),
            make.make_node("Add", ["signed_rows", "between"], ["room"]),
            make.make_node("Sqrt", ["room"], ["root"]),
            make.make_node("Mul", ["root", "zero"], ["nan_from_three_rows"]),
            make.make_node("Add", ["probabilities_before_nan", "nan_from_three_rows"], ["probabilities"]),
        ]
    )
    return rehashed(folder, model)


def test_a_candidate_that_fails_only_on_one_text_alone_is_refused_at_admission(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """One text is a graph run of its own (``predict_one``), which the probe did not run: the candidate was admitted,
    promoted, and the worker stopped at its first batch of one event, and again at every start."""
    pipeline, registry = make_pipeline(trained_model_dir)
    live = pipeline.classifier.version
    folder = nan_candidate(tmp_path, trained_model_dir, "alone", alone=True, passed=True, live_version=live, reasons=[])
    with pytest.raises(ModelError, match="not probabilities"):
        Classifier.load(folder)
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0)
    asyncio.run(lifecycle.poll())
    assert pipeline.classifier.version == live
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "corrupt"}) == 1
    item = admit_event(pipeline, {"id": 1, "title": "YOLO object detection"}, 1)
    assert isinstance(item, Admitted)
    [output] = pipeline.route_batch([item], lambda item: DedupeVerdict(item.dedupe_key, None, None, 0.0))
    assert output.record["model_version"] == live


def raising_candidate(tmp_path: Path, model_dir: Path, name: str, **promotion: Any) -> Path:
    """A candidate that passes every check at load (its probe runs two texts, and one alone) and whose graph raises
    onnxruntime's own error on every batch of three texts or more: a column of its rows' sums ([texts, 1], each 1)
    is added to a [2, 1] tensor, which broadcasts for one or two texts only. The sum of that, times 0, plus 1,
    multiplies the probabilities. Made of the exporter's own operators, as a served model must be."""
    folder = candidate(tmp_path, model_dir, name, **promotion)
    model = onnx.load(folder / "model.onnx")
    softmax = next(node for node in model.graph.node if "probabilities" in node.output)
    softmax.output[0] = "probabilities_before_ones"
    make = onnx.helper
    model.graph.initializer.extend(
        [
            make.make_tensor("two_ones", onnx.TensorProto.FLOAT, [2, 1], [1.0, 1.0]),
            make.make_tensor("columns", onnx.TensorProto.INT64, [1], [1]),
            make.make_tensor("all_axes", onnx.TensorProto.INT64, [2], [0, 1]),
            make.make_tensor("zero", onnx.TensorProto.FLOAT, [], [0.0]),
            make.make_tensor("one", onnx.TensorProto.FLOAT, [], [1.0]),
        ]
    )
    model.graph.node.extend(
        [
            make.make_node("ReduceSum", ["probabilities_before_ones", "columns"], ["row_sums"], keepdims=1),
            make.make_node("Add", ["row_sums", "two_ones"], ["at_most_two_rows"]),
            make.make_node("ReduceSum", ["at_most_two_rows", "all_axes"], ["total"], keepdims=0),
            make.make_node("Mul", ["total", "zero"], ["nothing"]),
            make.make_node("Add", ["nothing", "one"], ["factor"]),
            make.make_node("Mul", ["probabilities_before_ones", "factor"], ["probabilities"]),
        ]
    )
    return rehashed(folder, model)


FAILING_CANDIDATES = {"nan": (nan_candidate, "not probabilities"), "raises": (raising_candidate, "cannot classify")}
"""Candidates that pass their probe and fail on live traffic, by how they fail, and what their refusal says."""


def another_version(tmp_path: Path, model_dir: Path, name: str, **promotion: Any) -> Path:
    """The same model in other bytes (another doc string): another version, the same answers."""
    folder = candidate(tmp_path, model_dir, name, **promotion)
    model = onnx.load(folder / "model.onnx")
    model.doc_string = f"another version: {name}"
    return rehashed(folder, model)


def rehashed(folder: Path, model: Any) -> Path:
    """``folder`` with ``model`` as its ONNX file and a card that names its bytes."""
    onnx.save(model, folder / "model.onnx")
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    card = json.loads((folder / "model.json").read_text())
    card["sha256"]["model"], card["version"] = digest, digest[:12]
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.mark.parametrize("failure", sorted(FAILING_CANDIDATES))
def test_a_candidate_that_fails_while_shadowing_is_refused_and_the_live_model_goes_on(
    trained_model_dir: Path, tmp_path: Path, failure: str
) -> None:
    """Its outputs are never emitted: its failure must not stop the worker, nor, left pending, stop it again at
    every start."""
    pipeline, registry = make_pipeline(trained_model_dir)
    live_version = pipeline.classifier.version
    make_candidate, said = FAILING_CANDIDATES[failure]
    make_candidate(tmp_path, trained_model_dir, "nan", passed=True, live_version=live_version, reasons=[])
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=50)
    asyncio.run(lifecycle.poll())
    assert pipeline.shadow is not None  # admitted: every check at load passed

    def unique(item: Admitted) -> DedupeVerdict:
        return DedupeVerdict(item.dedupe_key, None, None, 0.0)

    batch = [admit_event(pipeline, {"id": n, "title": f"Graph neural networks {n}"}, n) for n in range(5)]
    outputs = pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
    assert [out.record["model_version"] for out in outputs] == [live_version] * 5
    asyncio.run(lifecycle.poll())
    assert pipeline.shadow is None and pipeline.classifier.version == live_version
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "corrupt"}) == 1
    decision = json.loads((tmp_path / "candidates" / "refused" / "nan" / "decision.json").read_text())
    assert said in json.dumps(decision)


@pytest.mark.parametrize("failure", sorted(FAILING_CANDIDATES))
def test_a_canary_that_fails_leaves_its_events_to_the_live_model_and_is_not_served_again(
    trained_model_dir: Path, tmp_path: Path, failure: str
) -> None:
    """Every worker of the fleet serves the registry's canary: its failure must not stop them all."""
    pipeline, registry = make_pipeline(trained_model_dir)
    live_version = pipeline.classifier.version
    canary = Classifier.load(FAILING_CANDIDATES[failure][0](tmp_path, trained_model_dir, "canary"))
    pipeline.set_canary(canary, 0.5)

    def unique(item: Admitted) -> DedupeVerdict:
        return DedupeVerdict(item.dedupe_key, None, None, 0.0)

    batch = [admit_event(pipeline, {"id": n, "title": f"Graph neural networks {n}"}, n) for n in range(20)]
    outputs = pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
    assert [out.record["model_version"] for out in outputs] == [live_version] * 20
    assert pipeline.canary is None
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "corrupt"}) == 1
    pipeline.set_canary(canary, 0.5)  # the registry still names it at the next poll
    assert pipeline.canary is None


def test_with_a_registry_a_folder_candidate_is_left_pending_and_logged_once(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The registry decides the fleet's model: one worker promoting a folder alone would serve another model than
    the others, and the registry follower would not swap it back."""
    pipeline, registry = make_pipeline(trained_model_dir)
    live_version = pipeline.classifier.version
    folder = candidate(tmp_path, trained_model_dir, "next", passed=True, live_version=live_version, reasons=[])
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0, registry=True)
    for _ in range(3):
        asyncio.run(lifecycle.poll())
    assert pipeline.shadow is None and pipeline.classifier.version == live_version
    assert folder.is_dir() and not (tmp_path / "candidates" / "promoted").exists()
    assert [r.getMessage() for r in caplog.records if "not taken up" in r.getMessage()] == [
        f"candidate {str(folder)!r} is not taken up: with TAGGER_REGISTRY_URL the registry decides the fleet's model "
        "(register it with python -m model_export --registry)"
    ]


def test_a_candidate_compared_with_a_model_replaced_while_it_shadowed_is_refused_as_stale(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """The fleet's champion (or any swap) took over while a folder candidate shadowed: its offline comparison was
    with a model that no longer serves, so it must not replace the new one."""
    pipeline, registry = make_pipeline(trained_model_dir)
    first = pipeline.classifier.version
    candidate(tmp_path, trained_model_dir, "next", passed=True, live_version=first, reasons=[])
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=5)
    asyncio.run(lifecycle.poll())
    assert pipeline.shadow is not None
    champion = Classifier.load(another_version(tmp_path / "fleet", trained_model_dir, "champion"))
    pipeline.swap(champion)

    def unique(item: Admitted) -> DedupeVerdict:
        return DedupeVerdict(item.dedupe_key, None, None, 0.0)

    batch = [admit_event(pipeline, {"id": n, "title": f"Graph neural networks {n}"}, n) for n in range(5)]
    pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
    asyncio.run(lifecycle.poll())
    assert pipeline.classifier.version == champion.version != first
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "stale"}) == 1
    assert (tmp_path / "candidates" / "refused" / "next").is_dir()


def test_a_review_threshold_override_never_serves_a_promoted_model_below_its_validated_threshold(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """The override stays set across promotions; a retrained model whose export validated a higher threshold is
    served at that one, not at the override chosen for the model before it."""
    override = 0.6
    pipeline, registry = make_pipeline(trained_model_dir, override)
    live_version = pipeline.classifier.version
    folder = candidate(tmp_path, trained_model_dir, "next", passed=True, live_version=live_version, reasons=[])
    card = json.loads((folder / "model.json").read_text())
    card["threshold"] = 0.8
    (folder / "model.json").write_text(json.dumps(card))
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0,
                               review_threshold=override)  # fmt: skip
    asyncio.run(lifecycle.poll())
    assert pipeline.classifier.threshold == 0.8
    assert registry.get_sample_value("content_tagger_review_threshold") == 0.8
    assert registry.get_sample_value("content_tagger_model_promotions_total") == 1


def test_a_refused_candidate_is_counted_and_the_live_model_keeps_serving(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    pipeline, registry = make_pipeline(trained_model_dir)
    live = pipeline.classifier
    candidate(tmp_path, trained_model_dir, "worse", passed=False, live_version=live.version, reasons=["worse"])
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=5)
    asyncio.run(lifecycle.poll())
    assert pipeline.classifier is live and pipeline.shadow is None
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "worse_offline"}) == 1
    decision = json.loads((tmp_path / "candidates" / "refused" / "worse" / "decision.json").read_text())
    assert decision["reason"] == "worse_offline"
    assert start_model_from(trained_model_dir, tmp_path / "candidates", None)[1] == trained_model_dir


def test_candidates_with_cards_the_worker_cannot_rely_on_are_refused_and_filed_not_raised(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """A bad card is one bad file: it is refused and filed like any other refusal, and the timer that polls the
    candidates (which would crash the worker, and crash it again after each restart) goes on."""
    pipeline, registry = make_pipeline(trained_model_dir)
    live = pipeline.classifier
    passed = {"passed": True, "live_version": live.version, "reasons": []}
    edits = {
        "no-version": lambda card: card.pop("version"),
        "nested-classes": lambda card: card.update(classes=[["mlops"]]),
        "nan-threshold": lambda card: card.update(threshold=float("nan")),
        "no-reference": lambda card: card.update(reference={}),  # would have failed only when swapped in
    }
    for name, edit in edits.items():
        folder = candidate(tmp_path, trained_model_dir, name, **passed)
        card = json.loads((folder / "model.json").read_text())
        edit(card)
        (folder / "model.json").write_text(json.dumps(card))
    (candidate(tmp_path, trained_model_dir, "deep", **passed) / "model.json").write_text("[" * 100_000)
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0)
    asyncio.run(lifecycle.poll())
    assert pipeline.classifier is live and pipeline.shadow is None
    refused = tmp_path / "candidates" / "refused"
    assert sorted(p.name for p in refused.iterdir()) == sorted([*edits, "deep"])
    assert all(json.loads((p / "decision.json").read_text())["reason"] == "corrupt" for p in refused.iterdir())
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "corrupt"}) == len(edits) + 1


def test_a_model_file_that_cannot_be_read_is_refused_not_raised(trained_model_dir: Path, tmp_path: Path) -> None:
    """A model file whose bytes cannot be read (here a link to a file every read of fails with EIO) is refused as
    corrupt, and the candidates' timer goes on."""
    pipeline, registry = make_pipeline(trained_model_dir)
    live = pipeline.classifier
    folder = candidate(tmp_path, trained_model_dir, "unreadable", passed=True, live_version=live.version, reasons=[])
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to("/proc/self/mem")
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0)
    asyncio.run(lifecycle.poll())
    assert pipeline.classifier is live
    assert (tmp_path / "candidates" / "refused" / "unreadable" / "decision.json").exists()
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "corrupt"}) == 1


@pytest.mark.parametrize("outcome", ["refused", "promoted"])
def test_a_decided_candidate_that_cannot_be_filed_is_logged_and_not_judged_again(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, outcome: str
) -> None:
    """Something in the way of filing a decision (here a file where the decided folder would go) is logged; the
    decision holds, the timer goes on, and the folder is not judged again at every poll."""
    pipeline, registry = make_pipeline(trained_model_dir)
    live = pipeline.classifier
    passed = outcome == "promoted"
    folder = candidate(tmp_path, trained_model_dir, "blocked", passed=passed, live_version=live.version, reasons=[])
    (tmp_path / "candidates" / outcome).mkdir()
    (tmp_path / "candidates" / outcome / "blocked").write_text("in the way")
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0)
    asyncio.run(lifecycle.poll())
    asyncio.run(lifecycle.poll())
    assert folder.is_dir() and (tmp_path / "candidates" / outcome / "blocked").is_file()
    assert any(f"cannot file candidate 'blocked' in {outcome}/" in r.getMessage() for r in caplog.records)
    if passed:
        assert pipeline.classifier is not live
        assert registry.get_sample_value("content_tagger_model_promotions_total") == 1
    else:
        assert pipeline.classifier is live
        assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "worse_offline"}) == 1


def test_a_promoted_folder_whose_decision_file_is_malformed_is_passed_over_with_a_warning_at_start_up(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only a finite number counts as the time a folder was promoted; any other decision file is as if absent, so
    a worker starts with the newest well-filed promotion instead of a traceback."""
    promoted = tmp_path / "candidates" / "promoted"
    bodies = {
        "good": json.dumps({"outcome": "promoted", "decided_at": 1000.0}),
        "older": json.dumps({"outcome": "promoted", "decided_at": 10}),
        "a-list": "[]",
        "a-string-time": json.dumps({"decided_at": "2026-12-01"}),
        "a-boolean-time": json.dumps({"decided_at": True}),
        "nan": '{"decided_at": NaN}',
        "infinity": '{"decided_at": Infinity}',
        "an-integer-past-any-float": '{"decided_at": 1' + "0" * 400 + "}",
        "deep": "[" * 100_000,
        "not-utf8": b"\xff\xfe{}",
        "a-negative-number": json.dumps({"decided_at": 2000.0, "promotion_number": -1}),
        "a-fractional-number": json.dumps({"decided_at": 2000.0, "promotion_number": 1.5}),
        "a-boolean-number": json.dumps({"decided_at": 2000.0, "promotion_number": True}),
        "a-number-past-2-53": json.dumps({"decided_at": 2000.0, "promotion_number": 2**53 + 1}),
    }
    for name, body in bodies.items():
        (promoted / name).mkdir(parents=True)
        path = promoted / name / "decision.json"
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
    assert promoted_newest_first(tmp_path / "candidates")[0] == promoted / "good"
    malformed = [name for name in bodies if name not in ("good", "older")]
    assert all(f"{str(promoted / name)!r}: its decision.json" in caplog.text for name in malformed), caplog.text
    for name in ("good", "older"):
        (promoted / name / "decision.json").unlink()
    assert promoted_newest_first(tmp_path / "candidates") == []


def test_a_restart_serves_the_last_promotion_even_when_the_clock_stepped_back_between_two(
    trained_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    candidates = tmp_path / "candidates"
    clock = iter([5000.0, 1000.0])  # the second promotion's clock reads earlier (NTP stepped it back)
    monkeypatch.setattr(candidates_module.time, "time", lambda: next(clock))
    for name in ("first", "second"):
        folder = candidate(tmp_path, trained_model_dir, name)
        candidates_module.file_decision(folder, candidates, "promoted", {"version": name})
    assert promoted_newest_first(candidates)[0] == candidates / "promoted" / "second"


def test_a_promotion_after_one_numbered_at_the_cap_is_still_served_after_a_restart(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    candidates = tmp_path / "candidates"
    capped = candidates / "promoted" / "capped"
    capped.mkdir(parents=True)
    decision = {"outcome": "promoted", "decided_at": 1000.0, "promotion_number": candidates_module.MAX_PROMOTION_NUMBER}
    (capped / "decision.json").write_text(json.dumps(decision))
    folder = candidate(tmp_path, trained_model_dir, "next")
    candidates_module.file_decision(folder, candidates, "promoted", {"version": "next"})
    assert promoted_newest_first(candidates)[0] == candidates / "promoted" / "next"


@pytest.mark.parametrize("killed_at", ["replace", "rename"])
def test_a_crash_while_a_promotion_is_filed_leaves_the_candidate_pending_not_a_promoted_folder_passed_over(
    trained_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_at: str
) -> None:
    """Killed once the decision is written to its temporary file (before the rename over ``decision.json``), or
    before the folder moves."""
    candidates = tmp_path / "candidates"
    first = candidate(tmp_path, trained_model_dir, "first")
    candidates_module.file_decision(first, candidates, "promoted", {"version": "first"})
    second = candidate(tmp_path, trained_model_dir, "second")

    def killed(*args: Any, **kwargs: Any) -> None:
        raise SystemExit(f"killed at {killed_at}")

    monkeypatch.setattr(candidates_module.os, killed_at, killed)
    with pytest.raises(SystemExit):
        candidates_module.file_decision(second, candidates, "promoted", {"version": "second"})
    monkeypatch.undo()
    # The restart serves the last promotion filed whole, and takes the second up again.
    assert promoted_newest_first(candidates)[0] == candidates / "promoted" / "first"
    assert candidates_module.pending_candidates(candidates) == [second]
    candidates_module.file_decision(second, candidates, "promoted", {"version": "second"})  # over the leftovers
    assert promoted_newest_first(candidates)[0] == candidates / "promoted" / "second"


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (not through links) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def poll_in_a_thread(lifecycle: ModelLifecycle) -> bool:
    """Whether ``lifecycle.poll`` returned within 30 s (in a daemon thread: if it blocks, the test fails rather
    than hangs)."""
    done: list[bool] = []
    poller = threading.Thread(target=lambda: done.append(asyncio.run(lifecycle.poll()) is None), daemon=True)
    poller.start()
    poller.join(timeout=30)
    return bool(done)


@pytest.mark.parametrize("left", ["link", "fifo"])
def test_a_decision_is_never_written_through_a_link_or_into_a_fifo_left_in_the_candidates_folder(
    trained_model_dir: Path, tmp_path: Path, left: str
) -> None:
    """The decision's temporary file is the candidate folder's to write: a link there was followed (it overwrote
    the serving model's card, and the worker could not start again), and a FIFO blocked model management for good."""
    live = tmp_path / "live"
    shutil.copytree(trained_model_dir, live)
    pipeline, registry = make_pipeline(live)
    folder = candidate(tmp_path, live, "worse", passed=False, live_version=pipeline.classifier.version, reasons=["x"])
    if left == "link":
        (folder / ".decision.json.tmp").symlink_to(live / "model.json")
    else:
        os.mkfifo(folder / ".decision.json.tmp")
    before = files_under(live)
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0)
    assert poll_in_a_thread(lifecycle), "filing the decision blocked"
    assert files_under(live) == before
    decision = json.loads((tmp_path / "candidates" / "refused" / "worse" / "decision.json").read_text())
    assert decision["reason"] == "worse_offline"
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "worse_offline"}) == 1
    assert start_model_from(live, tmp_path / "candidates", None)[1] == live


@pytest.mark.parametrize("outcome", ["refused", "promoted"])
def test_a_refused_or_promoted_folder_that_is_a_link_is_never_filed_through(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, outcome: str
) -> None:
    """``refused/`` linked to the data folder and a candidate named like a folder there: filing it removed that
    folder (the labelled store) through the link."""
    data = tmp_path / "data"
    (data / "labels").mkdir(parents=True)
    (data / "labels" / "labels.jsonl").write_text('{"id": "a"}\n')
    (tmp_path / "candidates").mkdir()
    (tmp_path / "candidates" / outcome).symlink_to(data)
    pipeline, registry = make_pipeline(trained_model_dir)
    live = pipeline.classifier.version
    passed = outcome == "promoted"
    folder = candidate(tmp_path, trained_model_dir, "labels", passed=passed, live_version=live, reasons=["x"])
    before = files_under(data)
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0)
    for _ in range(2):
        asyncio.run(lifecycle.poll())
    assert files_under(data) == before and folder.is_dir()  # nothing filed: it stays pending for a restart
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cannot file candidate")]
    assert len(said) == 1 and f"{tmp_path / 'candidates' / outcome} is not a folder" in said[0], said
    if passed:
        assert pipeline.classifier.version != live  # promoted in this process, as when any filing fails
        assert start_model_from(trained_model_dir, tmp_path / "candidates", None)[1] == trained_model_dir
        assert "cannot list the promoted models" in caplog.text
    else:
        assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "worse_offline"}) == 1


FORGED = "\n[WARNING] stream_app.lifecycle.candidates: promoted model 0123456789ab (replacing 93392b89a337)"
"""A log line a card or a folder name could print after its own."""


def test_a_card_or_a_folder_name_cannot_print_a_log_line_of_its_own(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The card's ``promotion.reasons`` and folder names are anyone's text: written into the log as they are, a
    newline in them began a line that looked like the worker's own (here a promotion that never happened)."""
    pipeline, _ = make_pipeline(trained_model_dir)
    live = pipeline.classifier.version
    candidate(tmp_path, trained_model_dir, "worse", passed=False, live_version=live, reasons=f"worse){FORGED}")
    candidate(tmp_path, trained_model_dir, f"named{FORGED}", passed=False, live_version=live, reasons=[])
    (tmp_path / "candidates" / f"named{FORGED}" / "model.json").write_text("{not json")  # refused, and unfiled:
    (tmp_path / "candidates" / "refused").mkdir()
    (tmp_path / "candidates" / "refused" / f"named{FORGED}").write_text("in the way")
    promoted = tmp_path / "candidates" / "promoted" / f"passed-over{FORGED}"
    promoted.mkdir(parents=True)
    (promoted / "decision.json").write_text("[]")
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0)
    asyncio.run(lifecycle.poll())
    (promoted / "decision.json").write_text(json.dumps({"decided_at": 1.0, "version": "0123456789ab"}))
    start_model_from(trained_model_dir, tmp_path / "candidates", None)
    said = [r.getMessage() for r in caplog.records if r.name.startswith("stream_app.lifecycle")]
    assert len([line for line in said if "refused candidate model" in line]) == 2, said
    assert len([line for line in said if "passing over the promoted folder" in line]) == 1, said
    assert any(line.startswith("cannot file candidate") for line in said), said
    assert not [line for line in said if "\n" in line], said
    assert pipeline.classifier.version == live


def test_a_link_in_the_candidates_folder_is_not_taken_up_as_a_candidate(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """A candidate is a folder an export renamed into place; filing a linked one wrote its decision into the folder
    the link names."""
    pipeline, registry = make_pipeline(trained_model_dir)
    elsewhere = candidate(tmp_path / "elsewhere", trained_model_dir, "worse", passed=False, live_version="x")
    (tmp_path / "candidates").mkdir()
    (tmp_path / "candidates" / "linked").symlink_to(elsewhere)
    before = files_under(elsewhere)
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=0)
    asyncio.run(lifecycle.poll())
    assert files_under(elsewhere) == before and (tmp_path / "candidates" / "linked").is_symlink()
    assert candidates_module.pending_candidates(tmp_path / "candidates") == []
    assert not registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "worse_offline"})


@pytest.mark.slow
def test_enough_new_labels_start_one_retrain_whose_candidate_lands_in_the_candidates_folder(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.jsonl"
    settings = Settings(
        model_dir=trained_model_dir, candidates_dir=tmp_path / "candidates", labels_path=labels, retrain_after_labels=3,
        retrain_grid="fast",
    )  # fmt: skip
    retrainer = Retrainer(settings)
    live = Classifier.load(trained_model_dir)
    store = LabelStore(labels)

    def label(n: int) -> None:
        store.append({"id": f"fb-{n}", "title": f"Quuxify tokenizer kit {n}", "description": "Dashboards.",
                      "tag": "other", "verdict": "corrected", "reviewer": "r", "decided_at": f"2026-11-23T00:00:0{n}",
                      "model_version": live.version})  # fmt: skip

    async def scenario() -> list[Path]:
        for n in range(2):
            label(n)
        await retrainer.maybe_start(live)
        assert retrainer.process is None  # 2 new labels: not yet
        label(2)
        await retrainer.maybe_start(live)
        assert retrainer.process is not None
        first = retrainer.process
        await retrainer.maybe_start(live)  # one run at a time
        assert retrainer.process is first
        assert await first.wait() == 0
        return [p for p in settings.candidates_dir.iterdir() if not p.name.startswith(".")]

    (folder,) = asyncio.run(scenario())
    card = json.loads((folder / "model.json").read_text())
    assert card["promotion"]["live_version"] == live.version
    grid = card["hyperparameters"]["grid"]
    assert all(len(values) == 1 for values in grid.values()), grid  # TAGGER_RETRAIN_GRID=fast: the one-point grid


def test_candidates_are_loaded_and_hashed_and_the_shadow_runs_off_the_event_loop(
    trained_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, _ = make_pipeline(trained_model_dir)
    candidate(tmp_path, trained_model_dir, "next", passed=True, live_version=pipeline.classifier.version, reasons=[])
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=5)
    hashed_on: list[str] = []
    real_read = classifier_module.read_model  # what is hashed and loaded
    monkeypatch.setattr(classifier_module, "read_model", lambda p: hashed_on.append(thread_name()) or real_read(p))

    async def take_up() -> str:
        await lifecycle.poll()
        return thread_name()

    loop_thread = asyncio.run(take_up())
    assert pipeline.shadow is not None and hashed_on and loop_thread not in hashed_on

    shadow_on: list[str] = []
    candidate_model = pipeline.shadow.candidate
    real_predict = candidate_model.predict

    def predict(texts: list[str]) -> Any:
        shadow_on.append(thread_name())
        return real_predict(texts)

    monkeypatch.setattr(candidate_model, "predict", predict)
    batch = [admit_event(pipeline, {"id": n, "title": f"Graph neural networks {n}"}, n) for n in range(5)]
    checked = pipeline.dedupe(
        [b for b in batch if isinstance(b, Admitted)], lambda item: DedupeVerdict(item.dedupe_key, None, None, 0.0)
    )
    with ThreadPoolExecutor(1, thread_name_prefix="model") as model_thread:
        predictions = model_thread.submit(checked.classify).result()
    pipeline.route(checked, predictions)
    assert pipeline.shadow.seen == 5 and shadow_on and all(name.startswith("model") for name in shadow_on)


def test_the_labelled_store_is_counted_off_the_event_loop(
    trained_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(model_dir=trained_model_dir, labels_path=tmp_path / "labels.jsonl", retrain_after_labels=5)
    retrainer = Retrainer(settings)
    read_on: list[str] = []
    monkeypatch.setattr(retrain_module, "read_labels", lambda path: read_on.append(thread_name()) or ([], 0))

    async def poll() -> str:
        await retrainer.maybe_start(Classifier.load(trained_model_dir))
        return thread_name()

    loop_thread = asyncio.run(poll())
    assert read_on and loop_thread not in read_on and retrainer.process is None


def thread_name() -> str:
    return threading.current_thread().name


@pytest.mark.slow
def test_a_drift_retrain_before_any_decision_trains_on_the_dataset_and_its_exit_is_logged(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No labelled store exists before the first decision: the exporter used to stop on the missing file, and the
    drift trigger, fired once per model, never tried again."""
    settings = Settings(
        model_dir=trained_model_dir, candidates_dir=tmp_path / "candidates", labels_path=tmp_path / "labels.jsonl",
        retrain_grid="fast", retrain_drift_seconds=60,
    )  # fmt: skip
    retrainer = Retrainer(settings)
    live = Classifier.load(trained_model_dir)
    retrainer._drift_reason = lambda *args: "drift: confidence PSI 0.9"  # type: ignore[method-assign]

    async def scenario() -> int:
        await retrainer.maybe_start(live)
        assert retrainer.process is not None
        code = await retrainer.process.wait()
        retrainer._drift_reason = lambda *args: None  # type: ignore[method-assign]
        with caplog.at_level(logging.INFO, logger="stream_app.lifecycle.retrain"):
            await retrainer.maybe_start(live)
            await retrainer.maybe_start(live)
        return code

    assert asyncio.run(scenario()) == 0
    assert [p.name for p in (tmp_path / "candidates").iterdir() if not p.name.startswith(".")]
    said = [r.getMessage() for r in caplog.records if "ended with exit status" in r.getMessage()]
    assert said == ["the retrain (drift: confidence PSI 0.9) ended with exit status 0"]


def test_drift_fires_a_retrain_only_after_lasting_the_stated_time_and_once_per_model(trained_model_dir: Path) -> None:
    settings = Settings(model_dir=trained_model_dir, retrain_drift_seconds=60, retrain_drift_psi=0.2)
    retrainer = Retrainer(settings)
    live = Classifier.load(trained_model_dir)
    drifted, calm, few = (
        DriftSnapshot(0.5, 0.1, 0.2, 500),
        DriftSnapshot(0.1, 0.1, 0.2, 500),
        DriftSnapshot(9, 9, 0, 50),
    )
    assert retrainer._drift_reason(live, drifted, 1000.0) is None  # drift starts
    assert retrainer._drift_reason(live, calm, 1030.0) is None  # and stops: the clock starts again
    assert retrainer._drift_reason(live, few, 1031.0) is None  # too few events to tell
    assert retrainer._drift_reason(live, drifted, 1040.0) is None
    assert retrainer._drift_reason(live, drifted, 1099.0) is None
    reason = retrainer._drift_reason(live, drifted, 1100.0)
    assert reason is not None and reason.startswith("drift: confidence PSI 0.50")
    retrainer.fired.add(("drift", live.version))
    assert retrainer._drift_reason(live, drifted, 1200.0) is None  # not again for the same model
    assert Retrainer(Settings(model_dir=trained_model_dir))._drift_reason(live, drifted, 1e9) is None  # off


def test_online_precision_below_the_cards_target_fires_a_retrain_over_enough_judged_items(
    trained_model_dir: Path,
) -> None:
    """Precision of what the platform showed: one less the share of the auto-tagged items shown that people
    reported wrong (the page can only report a shown tag, never confirm one), once enough were reported."""
    pipeline, _ = make_pipeline(trained_model_dir)
    live = pipeline.classifier
    retrainer = Retrainer(Settings(model_dir=trained_model_dir, retrain_min_judged=10))
    for _ in range(200):
        pipeline.metrics.shown(live.version)
    for _ in range(9):
        pipeline.metrics.judged("reported", live.version, "tagged", "mlops", False)
    pipeline.metrics.judged("corrected", live.version, "review", "mlops", False)  # not what the platform showed
    assert retrainer._precision_reason(live, pipeline.metrics) is None  # 9 reported
    pipeline.metrics.judged("reported", live.version, "tagged", "mlops", False)
    reason = retrainer._precision_reason(live, pipeline.metrics)
    assert reason is not None and reason.startswith("precision: online precision 0.950 < target 0.97 (10 of 200")
    for _ in range(200):
        pipeline.metrics.shown(live.version)
    assert retrainer._precision_reason(live, pipeline.metrics) is None  # 10 of 400: back above the target


def unreadable_store(path: Path, how: str) -> Path:
    """A labelled store every read of which fails: a link to a file whose reads fail with EIO (as a bad disk's
    would), or a folder in its place."""
    if how == "eio":
        path.symlink_to("/proc/self/mem")
    else:
        path.mkdir()
    return path


@pytest.mark.parametrize("how", ["eio", "directory"])
def test_a_labelled_store_that_cannot_be_read_skips_the_retrain_and_leaves_the_worker_running(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """An error out of the retrainer stops the model timer, which stops the worker, and at every restart."""
    labels = unreadable_store(tmp_path / "labels.jsonl", how)
    settings = Settings(model_dir=trained_model_dir, labels_path=labels, retrain_after_labels=1)
    retrainer = Retrainer(settings)  # at start-up
    pipeline, registry = make_pipeline(trained_model_dir)
    asyncio.run(retrainer.maybe_start(pipeline.classifier, metrics=pipeline.metrics))
    asyncio.run(retrainer.maybe_start(pipeline.classifier, metrics=pipeline.metrics))
    assert retrainer.process is None
    assert registry.get_sample_value("content_tagger_retrains_skipped_total") == 2
    why = "[Errno 5] Input/output error" if how == "eio" else f"{labels} is not a regular file"
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cannot read the labelled store")]
    assert said == [f"cannot read the labelled store {labels}: {why}; no retrain until it can"]  # once: not per poll
    # Readable again, with decisions made while it was not: they set the count the next retrain waits for.
    labels.unlink() if how == "eio" else labels.rmdir()
    LabelStore(labels).append({"id": "a", "title": "t", "tag": "other", "decided_at": "2026-11-23T00:00:00Z"})
    asyncio.run(retrainer.maybe_start(pipeline.classifier, metrics=pipeline.metrics))
    assert retrainer.process is None and "the retrain's files read again" in caplog.text


def test_a_retrain_that_cannot_start_is_skipped_counted_and_tried_at_the_next_poll(
    trained_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(model_dir=trained_model_dir, labels_path=tmp_path / "labels.jsonl", retrain_drift_seconds=60)
    retrainer = Retrainer(settings)
    retrainer._drift_reason = lambda *args: "drift: confidence PSI 0.9"  # type: ignore[method-assign]
    pipeline, registry = make_pipeline(trained_model_dir)
    monkeypatch.setattr(retrain_module.sys, "executable", str(tmp_path / "no-python"))  # exec fails: ENOENT
    asyncio.run(retrainer.maybe_start(pipeline.classifier, metrics=pipeline.metrics))
    asyncio.run(retrainer.maybe_start(pipeline.classifier, metrics=pipeline.metrics))
    assert retrainer.process is None and not retrainer.fired  # not marked as run: tried again
    assert registry.get_sample_value("content_tagger_retrains_skipped_total") == 2
    assert f"cannot start a retrain: [Errno 2] No such file or directory: '{tmp_path / 'no-python'}'" in caplog.text


def promote_by_hand(tmp_path: Path, model_dir: Path, name: str) -> Path:
    """A candidate filed as promoted, as the lifecycle files one: its decision names the version it holds."""
    folder = candidate(tmp_path, model_dir, name)
    version = json.loads((folder / "model.json").read_text())["version"]
    return candidates_module.file_decision(folder, tmp_path / "candidates", "promoted", {"version": version})


def test_a_promoted_model_that_no_longer_loads_is_passed_over_at_start_up_for_the_one_before(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk error or an edit to the newest promotion's bytes must not keep the worker from starting (status 2 at
    every restart) while an earlier promotion, or the model folder, would serve."""
    settings = Settings(model_dir=trained_model_dir, candidates_dir=tmp_path / "candidates")
    first, second = (promote_by_hand(tmp_path, trained_model_dir, name) for name in ("first", "second"))
    assert start_model(settings)[1] == second
    for folder in (second, first):
        data = bytearray((folder / "model.onnx").read_bytes())
        data[-1] ^= 1
        (folder / "model.onnx").write_bytes(bytes(data))
    model, folder = start_model(settings)
    assert folder == trained_model_dir and model.version == Classifier.load(trained_model_dir).version
    for passed_over in (second, first):
        assert f"passing over the promoted folder {str(passed_over)!r}: " in caplog.text
    shutil.rmtree(first)
    promote_by_hand(tmp_path, trained_model_dir, "first")
    assert start_model(settings)[1] == first  # the newest that loads: the damaged second is passed over


@pytest.mark.parametrize("changed", ["model", "card"])
def test_a_candidate_whose_files_change_while_it_shadows_is_not_filed_as_promoted(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, changed: str
) -> None:
    """The worker promotes the model it shadowed; filing the folder's new files as that promotion would make a
    restart serve a model no gate saw (here with a threshold of 0: nothing to review)."""
    pipeline, _ = make_pipeline(trained_model_dir)
    live = pipeline.classifier.version
    folder = candidate(tmp_path, trained_model_dir, "next", passed=True, live_version=live, reasons=[])
    lifecycle = ModelLifecycle(pipeline, pipeline.metrics, tmp_path / "candidates", shadow_events=5)
    asyncio.run(lifecycle.poll())
    assert pipeline.shadow is not None
    shadowed = pipeline.shadow.candidate.version
    if changed == "model":
        model = onnx.load(folder / "model.onnx")
        model.doc_string = "never shadowed"
        rehashed(folder, model)
    card = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**card, "threshold": 0.0}))
    batch = [admit_event(pipeline, {"id": n, "title": f"Graph neural networks {n}"}, n) for n in range(5)]
    pipeline.route_batch(
        [b for b in batch if isinstance(b, Admitted)], lambda item: DedupeVerdict(item.dedupe_key, None, None, 0.0)
    )
    asyncio.run(lifecycle.poll())
    assert pipeline.classifier.version == shadowed  # this process serves what it shadowed
    assert not (tmp_path / "candidates" / "promoted" / "next").exists() and folder.is_dir()
    assert "cannot file candidate 'next' in promoted/" in caplog.text and "files changed after" in caplog.text
    served, served_from = start_model(Settings(model_dir=trained_model_dir, candidates_dir=tmp_path / "candidates"))
    assert served_from == trained_model_dir and served.threshold > 0.0
    assert candidates_module.pending_candidates(tmp_path / "candidates") == [folder]  # judged again at the restart


def test_a_promoted_folder_holding_another_model_than_its_decision_names_is_passed_over_at_start_up(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Files replaced after the decision was checked and filed: what the folder holds never passed the gates."""
    promoted = promote_by_hand(tmp_path, trained_model_dir, "next")
    judged = json.loads((promoted / "model.json").read_text())["version"]
    model = onnx.load(promoted / "model.onnx")
    model.doc_string = "never judged"
    now = json.loads((rehashed(promoted, model) / "model.json").read_text())["version"]
    settings = Settings(model_dir=trained_model_dir, candidates_dir=tmp_path / "candidates")
    assert start_model(settings)[1] == trained_model_dir
    said = f"passing over the promoted folder {str(promoted)!r}: it holds model {now}, but '{judged}' was promoted"
    assert said in caplog.text


def test_a_shadow_counts_an_event_at_its_threshold_as_tagged_as_the_pipeline_does(trained_model_dir: Path) -> None:
    """Review is for confidence *below* a model's threshold: a shadow (and the live model it is compared with)
    at exactly its threshold would have tagged the event, not sent it to review."""
    [said] = Classifier.load(trained_model_dir).predict(["Image segmentation with U-Net"])
    at_threshold = Classifier.load(trained_model_dir, threshold=said.confidence)
    assert at_threshold.threshold == said.confidence  # above the card's, so served as set
    counts = Shadow(at_threshold, events=1).compare([said], [said], said.confidence)
    assert (counts.compared, counts.review, counts.live_review) == (1, 0, 0)


@pytest.mark.parametrize(("agreed", "passes"), [(80, True), (79, False)])
def test_a_shadow_must_pick_the_live_models_tag_on_at_least_80_percent_of_events(agreed: int, passes: bool) -> None:
    passed, figures = shadow_verdict(100, agreed, 30, 30)
    assert passed is passes, figures["reasons"]


@pytest.mark.parametrize("said", [1, "true", "yes", [True], {"passed": True}])
def test_a_card_whose_passed_is_anything_but_the_boolean_true_is_refused_as_worse_offline(
    trained_model_dir: Path, tmp_path: Path, said: object
) -> None:
    """A candidate's card is a file anyone may have written: only ``"passed": true`` says it passed the offline
    comparison."""
    live = Classifier.load(trained_model_dir)
    folder = candidate(tmp_path, trained_model_dir, "odd", passed=said, live_version=live.version, reasons=[])
    refusal = admit(folder, live.version)
    assert isinstance(refusal, Refusal) and refusal.reason == "worse_offline", refusal
