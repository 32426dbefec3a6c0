"""The exporter: threshold choice, the parity gate, and the card it writes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from model_export import card as card_module
from model_export import evaluate, export, parity, promote, train
from model_export.__main__ import main as export_main
from model_export.data import Example, load_dataset
from model_export.parity import ParityError
from stream_app import APPROVED_TAGS
from stream_app.classifier import SERVED_OPERATORS, event_text, published_row
from stream_app.onnx_wire import operators
from stream_app.schema import MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS
from tests.conftest import FIXTURE_MODEL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def card(exported_model_dir: Path) -> dict[str, Any]:
    return dict(json.loads((exported_model_dir / "model.json").read_text()))


def test_threshold_is_the_lowest_that_keeps_precision_at_every_higher_cut() -> None:
    classes = ["a", "b"]
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    probabilities = np.column_stack([confidence, 1 - confidence])
    labels = ["a", "a", "a", "b", "a", "a"]  # the fourth most confident prediction is wrong
    # Just above the wrong one, on the 6-decimal grid the worker compares its rounded confidences on.
    assert train.choose_threshold(probabilities, labels, classes, target=0.97) == 0.800001
    assert train.choose_threshold(probabilities, labels, classes, target=0.7) == 0.6
    # The most confident prediction is wrong: everything goes to review, unless it is saturated (below).
    assert train.choose_threshold(probabilities, ["b"] * 6, classes, target=0.5) == 0.990001


@pytest.mark.parametrize("wrong", [0.8, 0.80000049, 0.80000051, 0.81234567])
def test_the_threshold_keeps_the_failing_prediction_in_review_after_the_worker_rounds_it(wrong: float) -> None:
    """The worker publishes confidences rounded to 6 decimals and auto-tags those at or above the threshold: a
    threshold a hair above the failing confidence (as ``nextafter`` made it) let it through when it rounded up."""
    classes = ["a", "b"]
    confidence = np.array([0.99, 0.95, 0.9, wrong, 0.7])
    labels = ["a", "a", "a", "b", "a"]
    threshold = train.choose_threshold(np.column_stack([confidence, 1 - confidence]), labels, classes, target=0.97)
    assert published_row([wrong, 1 - wrong])[0] < threshold
    assert all(published_row([c, 1 - c])[0] >= threshold for c in confidence[:3])


def test_the_exporter_counts_auto_tagged_items_as_the_worker_will_after_rounding() -> None:
    """A correct item at 0.8000006 is published as 0.800001, at the threshold just above a wrong one at 0.8: the
    worker auto-tags it, so the card's coverage, its drift reference and the gate must count it as auto-tagged."""
    classes = ["a", "b"]
    confidence = np.array([0.99, 0.95, 0.8000006, 0.8, 0.7, 0.6])
    probabilities = np.column_stack([confidence, 1 - confidence])
    labels = ["a", "a", "a", "b", "a", "a"]
    threshold = train.choose_threshold(probabilities, labels, classes, target=0.97)
    worker = [published_row([c, 1 - c])[0] >= threshold for c in confidence]
    assert worker == [True, True, True, False, False, False]
    examples = [Example(str(n), f"title {n}", "", tag) for n, tag in enumerate(labels)]
    assert evaluate.evaluate(examples, probabilities, classes, threshold)["at_threshold"]["coverage"] == 0.5
    assert card_module.reference(probabilities, classes, threshold)["below_threshold_share"] == 0.5
    scored = promote.score(examples, probabilities, [], np.empty((0, 2)), classes, threshold)
    assert scored.test_auto_tagged == 3


def test_no_threshold_is_chosen_when_a_saturated_prediction_is_wrong() -> None:
    """At confidence 1.0 (after rounding) no threshold up to 1 keeps it out: a threshold of 1 auto-tagged it."""
    classes = ["a", "b"]
    confidence = np.array([0.99999996, 0.95, 0.9])
    with pytest.raises(train.ThresholdError, match="check the labels"):
        train.choose_threshold(np.column_stack([confidence, 1 - confidence]), ["b", "a", "a"], classes, target=0.97)


def test_precision_vs_coverage_sends_the_least_confident_to_review() -> None:
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    correct = np.array([True] * 8 + [False, False])
    curve = {round(p["coverage"], 2): p for p in evaluate.precision_vs_coverage(confidence, correct, (1.0, 0.8, 0.5))}
    assert curve[1.0]["precision"] == pytest.approx(0.8)
    assert curve[0.8] == {"coverage": 0.8, "threshold": 0.2, "precision": 1.0}
    assert curve[0.5]["threshold"] == 0.5


def test_bad_data_stops_the_export_naming_the_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.csv"
    data.write_text("id,created_on,title,description,tag\n1,d,Fine,x,mlops\n2,d,,x,mlops\n", encoding="utf-8")
    assert export_main(["--data", str(data), "--out", str(tmp_path / "model")]) == 2
    assert "line 3: empty title" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_parity_gate_fails_on_a_pipeline_the_converter_gets_wrong() -> None:
    # The default token pattern is a Unicode \w class in Python but an ASCII class in ONNX (RE2):
    # accented words are tokenised differently, so the gate must refuse this export.
    vectorizer = train.OccurrenceTfidfVectorizer(lowercase=False, norm=None, token_pattern=r"\b\w\w+\b")  # noqa: S106
    pipeline = Pipeline([("tfidf", vectorizer), ("model", LogisticRegression(C=100.0, max_iter=1000))])
    texts = ["café résumé naïve", "plain english words", "café naïve", "english words"] * 5
    labels = ["a", "b", "a", "b"] * 5
    pipeline.fit(np.asarray(texts, dtype=object), labels)
    model_bytes = export.convert(pipeline)
    with pytest.raises(ParityError, match="ONNX disagrees"):
        parity.check_parity(pipeline, model_bytes, ["café résumé", "naïve façade"])


def test_parity_gate_refuses_a_graph_giving_nan_where_its_best_class_is() -> None:
    """NaN made the gap NaN, which no comparison with the tolerance fails, and numpy's argmax picks a NaN: the
    labels matched and the gate passed."""
    from onnx import helper, numpy_helper

    pipeline = train.build_pipeline()
    texts = ["language models", "object detection", "feature stores"] * 4
    pipeline.fit(np.asarray(texts, dtype=object), ["nlp", "cv", "ops"] * 4)
    model = onnx.load_from_string(export.convert(pipeline))
    graph = model.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = [name + "_p" if name == out else name for name in node.output]
    graph.initializer.extend(
        [numpy_helper.from_array(np.array(v, np.float32), name) for name, v in (("zero", 0.0), ("one", 1.0))]
    )
    graph.node.extend(
        [
            helper.make_node("ReduceMax", [out + "_p"], ["best"], axes=[1], keepdims=1),
            helper.make_node("Sub", ["best", out + "_p"], ["below_best"]),  # 0 at the best class
            helper.make_node("Div", ["one", "below_best"], ["inverse"]),  # inf there
            helper.make_node("Mul", ["zero", "inverse"], ["nan_at_best"]),  # NaN there, 0 elsewhere
            helper.make_node("Add", [out + "_p", "nan_at_best"], [out]),
        ]
    )
    with pytest.raises(ParityError, match="not finite"):
        parity.check_parity(pipeline, model.SerializeToString(), texts[:3])


def test_parity_gate_passes_for_the_shipped_pipeline_on_awkward_texts() -> None:
    pipeline = train.build_pipeline()
    held_out = ["natural language processing with transformers", "object detection in images"] * 4
    awkward = [event_text(title, description) for title, description in parity.AWKWARD_TEXTS]
    labels = ["natural-language-processing", "computer-vision"] * 4 + ["other"] * len(awkward)
    pipeline.fit(np.asarray(held_out + awkward, dtype=object), labels)
    texts = parity.parity_texts(pipeline, held_out)
    report = parity.check_parity(pipeline, export.convert(pipeline), texts)
    assert report["max_abs_probability_difference"] <= parity.PARITY_TOLERANCE


def test_parity_gate_lets_either_label_stand_where_two_classes_tie_within_its_tolerance() -> None:
    pipeline = train.build_pipeline()
    texts = ["language models", "object detection", "feature stores"] * 4
    pipeline.fit(np.asarray(texts, dtype=object), ["nlp", "cv", "ops"] * 4)
    # A text without a known n-gram scores the intercepts alone; these tie in float32 but not in float64.
    pipeline.steps[-1][1].intercept_ = np.array([0.0, 1e-9, 0.0])
    report = parity.check_parity(pipeline, export.convert(pipeline), ["", "language models"])
    assert report["labels_differing_on_ties"] == 1 and not report["labels_identical"]


def test_a_pipeline_the_graph_cannot_reproduce_is_refused_before_conversion() -> None:
    # An l2 norm needs each n-gram's count squared, which a graph of per-occurrence lookups cannot form.
    pipeline = train.build_pipeline().set_params(features__char__norm="l2")
    pipeline.fit(np.asarray(["object detection", "language models"] * 3, dtype=object), ["a", "b"] * 3)
    with pytest.raises(ParityError, match="cannot export"):
        export.convert(pipeline)
    plain = Pipeline([("tfidf", TfidfVectorizer(lowercase=False)), ("model", LogisticRegression())])
    plain.fit(np.asarray(["object detection", "language models"] * 3, dtype=object), ["a", "b"] * 3)
    with pytest.raises(ParityError, match="expected OccurrenceTfidfVectorizer"):
        export.convert(plain)


def test_a_text_gets_the_same_probabilities_alone_and_padded_in_a_batch() -> None:
    """Rows of a batch are padded to the longest; the padding must not count as n-grams of the text."""
    texts = ["learn c#", "c# and .net", "learn c", "python c", "deep learning", "learning rates"] * 3
    labels = ["other", "other", "other", "mlops", "mlops", "mlops"] * 3
    pipeline = train.build_pipeline().fit(np.asarray(texts, dtype=object), labels)
    session = parity.onnx_session(export.convert(pipeline))
    batch = ["learn c", "learn c" + " with a much longer text after it" * 5]

    def probabilities(chunk: list[str]) -> np.ndarray:
        return np.asarray(session.run(["probabilities"], {"text": np.asarray(chunk, dtype=object).reshape(-1, 1)})[0])

    np.testing.assert_allclose(probabilities(batch)[0], probabilities(batch[:1])[0], atol=1e-6)
    np.testing.assert_allclose(probabilities(batch[:1])[0], pipeline.predict_proba(batch[:1])[0], atol=1e-5)


SHORT_TEXTS = ("", "a", "ab", "abc", "abcd", "c#", "!!!", "🚀", "yolo", "ml ops")


def test_each_text_alone_gets_the_pipelines_probabilities() -> None:
    """The worker often sends one text, which nothing pads: the n-gram keys must still cover every position,
    and a text with no token at all (no word, no character) must still run and score the intercepts."""
    held_out = ["natural language processing with transformers", "ab cd"]
    awkward = [event_text(title, description) for title, description in parity.AWKWARD_TEXTS]
    trained = [*SHORT_TEXTS, *held_out, *awkward]
    labels = ["nlp", "cv", "mlops"] * (len(trained) // 3) + ["other"] * (len(trained) % 3)
    pipeline = train.build_pipeline().fit(np.asarray(trained, dtype=object), labels)
    texts = [*SHORT_TEXTS, *parity.parity_texts(pipeline, held_out)]
    session = parity.onnx_session(export.convert(pipeline))
    for text in texts:
        (alone,) = session.run(["probabilities"], {"text": np.asarray([[text]], dtype=object)})
        np.testing.assert_allclose(alone[0], pipeline.predict_proba([text])[0], atol=parity.PARITY_TOLERANCE)


def test_ngram_keys_too_large_for_float32_are_spelled_with_int64_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["natural language processing with transformers", "object detection in images", "mlflow", "c#"] * 3
    pipeline = train.build_pipeline().fit(np.asarray(texts, dtype=object), ["nlp", "cv", "mlops", "other"] * 3)
    fast = {node.op_type for node in onnx.load_from_string(export.convert(pipeline)).graph.node}
    monkeypatch.setattr(export, "FLOAT_EXACT", 1000)  # every char alphabet's 3-grams and 4-grams exceed this
    model_bytes = export.convert(pipeline)
    sliced = {node.op_type for node in onnx.load_from_string(model_bytes).graph.node}
    assert "Conv" in fast and "Slice" not in fast
    assert "Conv" not in sliced and "Slice" in sliced
    assert operators(model_bytes) <= SERVED_OPERATORS  # the worker serves this graph too
    report = parity.check_parity(pipeline, model_bytes, [*SHORT_TEXTS, *texts])
    assert report["labels_identical"]
    session = parity.onnx_session(model_bytes)
    for text in SHORT_TEXTS:
        (alone,) = session.run(["probabilities"], {"text": np.asarray([[text]], dtype=object)})
        np.testing.assert_allclose(alone[0], pipeline.predict_proba([text])[0], atol=parity.PARITY_TOLERANCE)


@pytest.mark.parametrize("words", [(1, 1), (1, 2)])
@pytest.mark.parametrize("chars", [(2, 4), (3, 4)])
def test_every_graph_the_search_can_choose_runs_only_operators_the_worker_serves(
    words: tuple[int, int], chars: tuple[int, int]
) -> None:
    """The worker refuses a model with any other operator (a loop could take any time on some batch): each n-gram
    range of the search's grid makes another graph (unigrams looked up, longer n-grams spelled by a Conv)."""
    texts = ["natural language processing with transformers", "object detection in images", "mlflow", "c#"] * 3
    pipeline = train.build_pipeline()
    pipeline.set_params(features__word__ngram_range=words, features__char__ngram_range=chars, features__char__min_df=1)
    pipeline.fit(np.asarray(texts, dtype=object), ["nlp", "cv", "mlops", "other"] * 3)
    assert operators(export.convert(pipeline)) <= SERVED_OPERATORS


def test_the_shipped_pipelines_graph_runs_few_nodes() -> None:
    """At one text per call onnxruntime's fixed cost per node is most of the time (decision 0104). The casts of
    the constant tables to float64 are folded when the model loads (decision 0109): they must not run."""
    texts = ["natural language processing with transformers", "object detection in images", "mlflow"] * 4
    pipeline = train.build_pipeline().fit(np.asarray(texts, dtype=object), ["nlp", "cv", "mlops"] * 4)
    model_bytes = export.convert(pipeline)
    loaded = parity.loaded_graph(model_bytes)  # at the basic level; the worker's is higher
    constants = {initializer.name for initializer in loaded.initializer}
    assert len(loaded.node) <= 19, [node.op_type for node in loaded.node]
    assert not [node.input for node in loaded.node if node.op_type == "Cast" and node.input[0] in constants]
    assert [output.name for output in onnx.load_from_string(model_bytes).graph.output] == ["probabilities"]


def test_the_search_takes_the_cheapest_candidate_within_one_standard_error_of_the_best() -> None:
    means, errors = [0.883, 0.89, 0.885, 0.86], [0.01, 0.01, 0.005, 0.02]
    assert train.cheapest_within_one_error(means, errors, costs=[300, 400, 200, 100]) == 2  # not 3: 0.86 < 0.89 - 0.01
    assert train.cheapest_within_one_error(means, errors, costs=[300, 400, 500, 100]) == 0
    assert train.cheapest_within_one_error(means, errors, costs=[300, 300, 500, 100]) == 1  # same cost: better
    assert train.cheapest_within_one_error(means, [0.0] * 4, costs=[300, 400, 200, 100]) == 1


def test_the_exported_graph_has_no_dense_per_vocabulary_stage() -> None:
    """The latency target rests on this: no operator that fills or reads a column per vocabulary entry."""
    texts = ["natural language processing with transformers", "object detection in images", "mlflow"] * 4
    pipeline = train.build_pipeline().fit(np.asarray(texts, dtype=object), ["nlp", "cv", "mlops"] * 4)
    ops = {node.op_type for node in onnx.load_from_string(export.convert(pipeline)).graph.node}
    assert ops.isdisjoint({"TfIdfVectorizer", "LinearClassifier", "Normalizer", "ReduceL2", "MatMul"}), ops


@pytest.mark.slow
def test_the_same_data_exports_the_same_bytes_whatever_the_hash_seed() -> None:
    """The model's version is the sha256 of its file, so a retrain on the same data must not give a new one."""
    script = (
        "import hashlib, numpy as np\n"
        "from model_export import export, train\n"
        "texts = ['natural language processing with transformers', 'object detection in images', 'mlflow'] * 4\n"
        "labels = ['natural-language-processing', 'computer-vision', 'mlops'] * 4\n"
        "pipeline = train.build_pipeline().fit(np.asarray(texts, dtype=object), labels)\n"
        "print(hashlib.sha256(export.convert(pipeline)).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1, digests


@pytest.mark.slow
def test_the_card_is_the_same_whatever_the_number_of_blas_threads(tmp_path: Path) -> None:
    """The same data gives the same card (its threshold chosen on out-of-fold probabilities included) on a machine
    of one core and on one of many: a parallel BLAS sum adds in another order."""
    cards = []
    for threads in ("1", "2"):
        out = tmp_path / f"threads-{threads}"
        subprocess.run(
            [sys.executable, "-m", "model_export", "--fast", "--out", str(out)],
            cwd=ROOT,
            env={**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads},
            check=True,
            capture_output=True,
        )
        card = json.loads((out / "model.json").read_text())
        card.pop("created_at")
        cards.append(card)
    assert cards[0] == cards[1]


def test_the_shipped_fixture_model_is_what_the_exporter_makes_today(exported_model_dir: Path) -> None:
    shipped = json.loads((FIXTURE_MODEL / "model.json").read_text())
    made = json.loads((exported_model_dir / "model.json").read_text())
    assert shipped["version"] == made["version"], "tests/fixtures/model is stale: run `make fixture-model`"
    assert shipped["threshold"] == pytest.approx(made["threshold"], abs=1e-9) and shipped["classes"] == made["classes"]


def test_the_exported_model_keeps_parity_on_the_largest_texts_the_contract_admits(
    exported_model_dir: Path, card: dict[str, Any]
) -> None:
    """A title and a description at their limits, of one word repeated: tens of thousands of equal n-gram
    occurrences, summed. The words are those of the training texts the model is least sure of, so that a drift
    in the sums shows in the probabilities."""
    train_split, _, _ = train.split(load_dataset(ROOT / "data/dataset.csv").examples, card["hyperparameters"]["seed"])
    searched = {k: tuple(v) if isinstance(v, list) else v for k, v in card["hyperparameters"].items() if "__" in k}
    pipeline = train.build_pipeline().set_params(**searched)
    pipeline.fit(np.asarray(train_split.texts, dtype=object), train_split.labels)
    texts = [parity.at_the_limits(word) for word in parity.least_decided_words(pipeline, train_split.texts, 20)]
    assert min(len(text) for text in texts) > 0.9 * (MAX_TITLE_CHARS + MAX_DESCRIPTION_CHARS)
    session = parity.onnx_session((exported_model_dir / "model.onnx").read_bytes())
    (served,) = session.run(["probabilities"], {"text": np.asarray(texts, dtype=object).reshape(-1, 1)})
    np.testing.assert_allclose(served, pipeline.predict_proba(np.asarray(texts, dtype=object)), atol=1e-5, rtol=0)


def test_card_hashes_match_the_files(exported_model_dir: Path, card: dict[str, Any]) -> None:
    model_sha = hashlib.sha256((exported_model_dir / "model.onnx").read_bytes()).hexdigest()
    assert card["sha256"]["model"] == model_sha
    assert card["version"] == model_sha[:12]
    assert card["sha256"]["training_data"] == hashlib.sha256((ROOT / "data/dataset.csv").read_bytes()).hexdigest()


def test_card_describes_an_approved_model_with_a_usable_reference(card: dict[str, Any]) -> None:
    assert set(card["classes"]) <= set(APPROVED_TAGS)
    assert card["approved_tags"] == list(APPROVED_TAGS)
    assert 0.0 < card["threshold"] < 1.0
    reference = card["reference"]
    assert len(reference["confidence_shares"]) == len(reference["confidence_bin_edges"]) - 1
    assert sum(reference["confidence_shares"]) == pytest.approx(1.0)
    assert sum(reference["tag_shares"].values()) == pytest.approx(1.0)
    assert 0.0 <= reference["below_threshold_share"] <= 1.0
    for split in ("validation", "test", "test_title_only"):
        evaluation = card["evaluation"][split]
        assert set(evaluation["per_class"]) == set(card["classes"])
        assert {"short_title", "empty_description"} <= set(evaluation["slices"])
        assert evaluation["precision_vs_coverage"]
    assert card["parity"]["max_abs_probability_difference"] <= 1e-5
    assert {"scikit-learn", "onnx", "onnxruntime"} <= set(card["libraries"])


def test_the_card_names_the_skl2onnx_that_made_the_model(exported_model_dir: Path, card: dict[str, Any]) -> None:
    """The converter is skl2onnx; a model's card must say which version wrote it."""
    model = onnx.load(exported_model_dir / "model.onnx")
    assert model.producer_name == "skl2onnx"
    assert card["libraries"]["skl2onnx"] == model.producer_version


def test_card_classes_are_the_onnx_probability_columns(exported_model_dir: Path, card: dict[str, Any]) -> None:
    session = parity.onnx_session((exported_model_dir / "model.onnx").read_bytes())
    texts = ["yolo object detection in video", "bert for question answering", "kubernetes model serving", ""]
    (probabilities,) = session.run(
        [card["outputs"]["probabilities"]], {card["input"]["name"]: np.asarray(texts, dtype=object).reshape(-1, 1)}
    )
    assert [o.name for o in session.get_outputs()] == [card["outputs"]["probabilities"]]
    assert probabilities.shape == (len(texts), len(card["classes"]))
    assert card["outputs"]["shapes"] == {"probabilities": [None, len(card["classes"])]}


def test_a_decision_to_train_on_that_copies_a_held_out_decision_is_not_trained_on(tmp_path: Path) -> None:
    """Feedback is held out by its id; a title decided again under another id (a recurring title, a label given
    twice) would otherwise be trained on while the gate judges the candidate on its held-out twin."""
    key = promote.holdout_key(tmp_path / promote.HOLDOUT_KEY_FILE)
    ids = [f"item-{n}" for n in range(200)]
    held_id = next(i for i in ids if promote.in_feedback_holdout(i, key))
    twin_id, other_id = [i for i in ids if not promote.in_feedback_holdout(i, key)][:2]
    description = "A streaming service that tags machine learning articles as they arrive."
    feedback = [
        Example(held_id, "Tagging articles as they stream in", description, "mlops"),
        Example(twin_id, "tagging ARTICLES as they stream in", description, "mlops"),  # the same item, another id
        Example(other_id, "Object detection with YOLO", "", "computer-vision"),
    ]
    row = Example("t1", "Legal document classification with BERT", "", "natural-language-processing")
    split = promote.split_feedback(feedback, [row], key)
    assert [e.id for e in split.holdout] == [held_id]
    assert [e.id for e in split.learned] == [other_id]
    assert split.ignored == 1


def test_decisions_of_one_product_family_sharing_a_description_are_learned_beside_held_out_ones(
    tmp_path: Path,
) -> None:
    """Items of one product often share its description: a learned decision is left out for a held-out one's
    title, not its description, or a family of decisions would leave nothing to learn. A held-out dataset row's
    description does leave a decision out (test_model_data.py)."""
    key = promote.holdout_key(tmp_path / promote.HOLDOUT_KEY_FILE)
    family = "Quuxify turns the tokenizer into dashboards for the data warehouse of your team."
    feedback = [Example(f"item-{n}", f"Quuxify tokenizer kit {n}", family, "other") for n in range(40)]
    row = Example("t1", "Legal document classification with BERT", "", "natural-language-processing")
    split = promote.split_feedback(feedback, [row], key)
    assert split.holdout and split.ignored == 0
    assert len(split.learned) + len(split.holdout) == 40


def test_the_feedback_holdout_depends_on_a_secret_key_made_once(tmp_path: Path) -> None:
    key_path = tmp_path / "labels" / promote.HOLDOUT_KEY_FILE
    key = promote.holdout_key(key_path)
    assert len(key) == promote.HOLDOUT_KEY_BYTES and key_path.stat().st_mode & 0o777 == 0o600
    assert promote.holdout_key(key_path) == key  # kept, not made again
    ids = [f"item-{n}" for n in range(2000)]
    split = [promote.in_feedback_holdout(i, key) for i in ids]
    assert split == [promote.in_feedback_holdout(i, key) for i in ids]  # stable with one key
    assert 0.15 < sum(split) / len(ids) < 0.25
    other = promote.holdout_key(tmp_path / "other.key")
    assert split != [promote.in_feedback_holdout(i, other) for i in ids]
    public = [hashlib.blake2b(i.encode(), digest_size=2).digest()[0] % promote.HOLDOUT_SHARE == 0 for i in ids]
    assert split != public  # not the unkeyed hash anyone could compute
