"""The serving classifier: refuses bad models, and behaves like a content tagger should."""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_export import card as model_card
from model_export import export, train
from stream_app.classifier import (
    CLASSES_METADATA_KEY,
    Classifier,
    event_text,
    length_groups,
    published_row,
    published_scores,
)
from stream_app.errors import ModelError


@pytest.fixture(scope="module")
def classifier(trained_model_dir: Path) -> Classifier:
    return Classifier.load(trained_model_dir)


def copy_model(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(source, target)
    return target


def export_with_labels(labels: list[str], template_dir: Path, out: Path) -> Path:
    """Train and export a tiny model over ``labels`` with the real exporter; its card copies the template's."""
    texts = [f"{label} example {i}" for label in labels for i in range(5)]
    pipeline = train.build_pipeline().fit(np.asarray(texts, dtype=object), [t.split()[0] for t in texts])
    model_bytes = export.convert(pipeline)
    sha = hashlib.sha256(model_bytes).hexdigest()
    template: dict[str, Any] = json.loads((template_dir / "model.json").read_text())
    card = {**template, "classes": sorted(labels), "version": sha[:12], "sha256": {"model": sha}}
    model_card.write_model(out, model_bytes, card)
    return out


def test_event_text_normalises_unicode_case_and_whitespace() -> None:
    assert event_text("ＢＥＲＴ  for\tNLP", "Line one\n\nline two ") == "bert for nlp line one line two"
    assert event_text("Title", None) == event_text("Title", "") == "title"


_ASCII = st.text(st.characters(max_codepoint=127), max_size=40)


@given(_ASCII, st.one_of(st.none(), _ASCII), st.sampled_from(["", "é", "Ａ", "\u00a0", "\u2028"]))
def test_event_text_is_nfkc_case_folded_with_whitespace_runs_collapsed(
    title: str, description: str | None, other: str
) -> None:
    """ASCII text takes a shorter way than other text: both give the definition's answer (every ASCII control
    character included)."""
    for text in (title + other, title):
        expected = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", f"{text} {description or ''}").casefold())
        assert event_text(text, description) == expected.strip()


def test_a_lone_surrogate_from_a_json_escape_can_still_be_classified(classifier: Classifier) -> None:
    text = event_text(json.loads('"broken \\ud800 title"'), None)
    assert classifier.predict([text])[0].tag in classifier.classes


def test_a_tampered_model_is_refused(trained_model_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(trained_model_dir, tmp_path)
    with (model_dir / "model.onnx").open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(ModelError, match="does not match its card"):
        Classifier.load(model_dir)


def with_external_intercept(source: Path, out: Path) -> Path:
    """A copy of the model in ``source`` whose ``intercept`` tensor is kept beside it in ``weights.bin``, as onnx
    writes external data, and a card naming the new ``model.onnx``'s bytes: it loaded from its path."""
    import onnx
    from onnx import numpy_helper

    target = copy_model(source, out)
    model = onnx.load(target / "model.onnx")
    intercept = next(tensor for tensor in model.graph.initializer if tensor.name == "intercept")
    values = numpy_helper.to_array(intercept)
    (target / "weights.bin").write_bytes(values.tobytes())
    intercept.ClearField("raw_data")
    intercept.ClearField("float_data")
    intercept.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", str(values.nbytes))):
        entry = intercept.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, target / "model.onnx")
    sha = hashlib.sha256((target / "model.onnx").read_bytes()).hexdigest()
    edited_card(target, lambda card: card.update(version=sha[:12], sha256={**card["sha256"], "model": sha}))
    return target


def test_a_model_keeping_a_tensor_in_another_file_is_refused(trained_model_dir: Path, tmp_path: Path) -> None:
    """Its sha256 did not cover the other file: editing ``weights.bin`` after the gates changed a promoted model's
    answers under the same version."""
    model_dir = with_external_intercept(trained_model_dir, tmp_path)
    with pytest.raises(ModelError, match="external data") as refused:
        Classifier.load(model_dir)
    assert refused.value.reason == "tampered"


def with_slow_loop(source: Path, out: Path) -> Path:
    """A copy of the model in ``source`` whose probabilities pass through a ``Loop`` that changes nothing (of no
    turns here: its count could as well come from the batch's size). Its card names its bytes."""
    import onnx

    make = onnx.helper
    target = copy_model(source, out)
    model = onnx.load(target / "model.onnx")
    softmax = next(node for node in model.graph.node if "probabilities" in node.output)
    softmax.output[0] = "probabilities_before_loop"
    body = make.make_graph(
        [
            make.make_node("Identity", ["cond_in"], ["cond_out"]),
            make.make_node("Identity", ["carried"], ["carried_out"]),
        ],
        "body",
        [make.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
         make.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
         make.make_tensor_value_info("carried", onnx.TensorProto.FLOAT, None)],
        [make.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
         make.make_tensor_value_info("carried_out", onnx.TensorProto.FLOAT, None)],
    )  # fmt: skip
    model.graph.initializer.extend(
        [
            make.make_tensor("turns", onnx.TensorProto.INT64, [], [0]),
            make.make_tensor("go", onnx.TensorProto.BOOL, [], [True]),
        ]
    )
    model.graph.node.append(
        make.make_node("Loop", ["turns", "go", "probabilities_before_loop"], ["probabilities"], body=body)
    )
    onnx.save(model, target / "model.onnx")
    sha = hashlib.sha256((target / "model.onnx").read_bytes()).hexdigest()
    edited_card(target, lambda card: card.update(version=sha[:12], sha256={**card["sha256"], "model": sha}))
    return target


def test_a_model_running_an_operator_the_exporter_never_writes_is_refused(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """A loop (or a branch, or another library's operator) can take any time on one batch and none on the probe's:
    a candidate, a shadow or a canary would hold up every worker of the fleet."""
    model_dir = with_slow_loop(trained_model_dir, tmp_path)
    with pytest.raises(ModelError, match="operators the exporter never writes: .*Loop") as refused:
        Classifier.load(model_dir)
    assert refused.value.reason == "not_approved"


IN_OPEN, IN_CLOSE_NOWRITE = 0x20, 0x10
"""inotify's events for a file opened, and closed unwritten."""


def opens_of(path: Path, action: Callable[[], object]) -> int:
    """How many times ``path`` is opened while ``action`` runs, by any code (onnxruntime's included), as the kernel
    reports it (inotify)."""
    libc = ctypes.CDLL(None, use_errno=True)
    watcher = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert watcher >= 0, os.strerror(ctypes.get_errno())
    try:
        # Closes too: the kernel merges an event into the one before it when both are the same.
        assert libc.inotify_add_watch(watcher, os.fsencode(path), IN_OPEN | IN_CLOSE_NOWRITE) >= 0
        action()
        events = os.read(watcher, 65536)
    finally:
        os.close(watcher)
    # Each event of a watched file is 16 bytes, no name: the watch, the mask, a cookie, a length of 0.
    return sum(bool(struct.unpack_from("iIII", events, at)[1] & IN_OPEN) for at in range(0, len(events), 16))


def test_the_model_is_read_once_so_what_runs_is_what_was_hashed(trained_model_dir: Path, tmp_path: Path) -> None:
    """Hashed, then opened again by onnxruntime: a file replaced in between served under the first one's version."""
    model_dir = copy_model(trained_model_dir, tmp_path)
    assert opens_of(model_dir / "model.onnx", lambda: Classifier.load(model_dir)) == 1


def test_a_model_with_an_unapproved_class_is_refused(trained_model_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(trained_model_dir, tmp_path)
    card = json.loads((model_dir / "model.json").read_text())
    card["classes"][0] = "reinforcement-learning"
    (model_dir / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not approved"):
        Classifier.load(model_dir)


def test_a_model_trained_on_an_unapproved_tag_is_refused(trained_model_dir: Path, tmp_path: Path) -> None:
    model_dir = export_with_labels(["computer-vision", "robotics"], trained_model_dir, tmp_path / "model")
    with pytest.raises(ModelError, match=r"not approved: \['robotics'\]"):
        Classifier.load(model_dir)


def test_a_model_without_a_class_for_every_approved_tag_is_refused(trained_model_dir: Path, tmp_path: Path) -> None:
    """Its records would lack the score of the missing tag, which the output schemas require."""
    model_dir = export_with_labels(["computer-vision", "mlops", "other"], trained_model_dir, tmp_path / "model")
    with pytest.raises(ModelError, match=r"lacks \['natural-language-processing'\]") as error:
        Classifier.load(model_dir)
    assert error.value.reason == "not_approved"


def test_a_card_that_misstates_the_models_classes_is_refused(trained_model_dir: Path, tmp_path: Path) -> None:
    model_dir = export_with_labels(["computer-vision", "robotics"], trained_model_dir, tmp_path / "model")
    card = json.loads((model_dir / "model.json").read_text())
    card["classes"] = ["computer-vision", "other"]  # approved, but not what the model emits
    (model_dir / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not the model's"):
        Classifier.load(model_dir)


def test_a_card_with_reordered_classes_is_refused(trained_model_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(trained_model_dir, tmp_path)
    card = json.loads((model_dir / "model.json").read_text())
    card["classes"].reverse()  # would silently swap the tags of the probability columns
    (model_dir / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not the model's"):
        Classifier.load(model_dir)


def edited_card(model_dir: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    """Rewrite ``model_dir``'s card with ``edit`` applied; an edit that returns a string is the card's whole text."""
    card = json.loads((model_dir / "model.json").read_text())
    text = edit(card)
    (model_dir / "model.json").write_text(text if isinstance(text, str) else json.dumps(card))


HOSTILE_CARDS: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "no version": (lambda card: card.__delitem__("version"), "version is not a string"),
    "a version that is not its model's": (lambda card: card.update(version="deadbeef0000"), "card says 'deadbeef0000'"),
    "nested classes": (lambda card: card.update(classes=[["mlops"]]), "classes is not a list of strings"),
    "classes of mixed types": (lambda card: card.update(classes=[1, "mlops"]), "classes is not a list of strings"),
    "a NaN threshold": (lambda card: card.update(threshold=float("nan")), "threshold nan is not a number from 0 to 1"),
    "a negative threshold": (lambda card: card.update(threshold=-5), "threshold -5 is not a number from 0 to 1"),
    "a threshold above 1": (lambda card: card.update(threshold=1.5), "threshold 1.5 is not a number from 0 to 1"),
    "a threshold in a string": (lambda card: card.update(threshold="0.5"), "threshold '0.5' is not a number"),
    "a target precision in a string": (
        lambda card: card.update(target_precision="0.97"),
        "target_precision '0.97' is not a number",
    ),
    "a NaN target precision": (lambda card: card.update(target_precision=float("nan")), "target_precision nan"),
    "no drift reference": (lambda card: card.update(reference={}), "no valid drift reference"),
    "a NaN reference share": (
        lambda card: card["reference"]["confidence_shares"].__setitem__(0, float("nan")),
        "shares from 0 to 1",
    ),
    "an integer past any float in the reference": (
        lambda card: card["reference"].update(below_threshold_share=10**400),
        "no valid drift reference",
    ),
    "deep nesting": (lambda card: "[" * 100_000, "cannot read the model card"),
}


@pytest.mark.parametrize("case", HOSTILE_CARDS)
def test_a_card_the_worker_cannot_rely_on_is_refused_with_a_model_error(
    trained_model_dir: Path, tmp_path: Path, case: str
) -> None:
    """Whatever the card holds, loading raises :class:`ModelError` (never KeyError, TypeError or RecursionError), so
    the candidate and registry paths refuse it; a version that is not its bytes' would take another model's counts,
    and a threshold outside 0 to 1 (or NaN) would send everything, or nothing, to review."""
    edit, message = HOSTILE_CARDS[case]
    model_dir = copy_model(trained_model_dir, tmp_path)
    edited_card(model_dir, edit)
    with pytest.raises(ModelError, match=re.escape(message)) as refused:
        Classifier.load(model_dir)
    assert refused.value.reason == ("tampered" if "not its model's" in case else "corrupt")


def test_a_missing_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read the model card"):
        Classifier.load(tmp_path)


def test_the_review_threshold_can_be_raised_but_never_below_what_the_export_validated(
    trained_model_dir: Path, classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    card_threshold = json.loads((trained_model_dir / "model.json").read_text())["threshold"]
    assert classifier.threshold == card_threshold
    higher = (card_threshold + 1.0) / 2
    assert Classifier.load(trained_model_dir, threshold=higher).threshold == higher
    with caplog.at_level(logging.WARNING, logger="stream_app.classifier"):
        lowered = Classifier.load(trained_model_dir, threshold=card_threshold / 2)
    assert lowered.threshold == card_threshold
    assert f"below model {classifier.version}'s validated" in caplog.text


@pytest.mark.parametrize(
    ("title", "description", "tag"),
    [
        ("YOLO object detection", "Real-time object detection in images and video.", "computer-vision"),
        (
            "BERT fine-tuning for sentiment analysis",
            "Classify the sentiment of movie reviews.",
            "natural-language-processing",
        ),
        ("Semantic segmentation of satellite images", "", "computer-vision"),
        ("Machine translation with transformers", "English to German translation.", "natural-language-processing"),
    ],
)
def test_clear_cases_get_the_obvious_tag(classifier: Classifier, title: str, description: str, tag: str) -> None:
    assert classifier.predict([event_text(title, description)])[0].tag == tag


@pytest.mark.parametrize("name", ["Alice", "Baymax", "Zhang Wei", "Project Falcon"])
def test_a_name_in_the_title_does_not_change_the_tag(classifier: Classifier, name: str) -> None:
    base = classifier.predict([event_text("Image classification with convolutional networks", "")])[0]
    named = classifier.predict([event_text(f"{name}: image classification with convolutional networks", "")])[0]
    assert named.tag == base.tag


def test_batches_give_the_same_answers_as_single_texts(classifier: Classifier) -> None:
    texts = [event_text(t, None) for t in ("GAN faces", "Topic modelling with LDA", "Serving models on Kubernetes")]
    batch = classifier.predict(texts)
    singles = [classifier.predict([t])[0] for t in texts]
    assert [p.tag for p in batch] == [p.tag for p in singles]
    for prediction in batch:
        assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction.confidence == max(prediction.scores.values())
        assert set(prediction.scores) == set(classifier.classes)
    assert classifier.predict([]) == []


def test_scores_are_plain_floats_of_at_most_six_decimals_and_the_best_tag_is_the_most_probable(
    classifier: Classifier,
) -> None:
    texts = [event_text(t, d) for t, d in (("GAN faces", None), ("Serving models on Kubernetes", "k8s"), ("a", ""))]
    for prediction in [*classifier.predict(texts), classifier.predict_one(texts[0])]:
        for score in prediction.scores.values():
            assert type(score) is float and 0.0 <= score <= 1.0
            assert len(repr(score).partition(".")[2]) <= 6  # as written in an output record
        assert prediction.confidence == prediction.scores[prediction.tag] == max(prediction.scores.values())


@given(st.lists(st.floats(0.0, 1.0, width=32), min_size=4, max_size=4).filter(lambda row: sum(row) > 0))
def test_one_text_alone_is_rounded_exactly_as_in_a_batch(weights: list[float]) -> None:
    row = [float(np.float32(weight / sum(weights))) for weight in weights]
    batch = published_scores(np.array([row, row[::-1]], dtype=np.float32))
    assert published_row(row) == batch.tolist()[0]


def nan_model_session(value: float = float("nan")) -> Any:
    """A real onnxruntime session of a model whose every probability is NaN (or ``value``), whatever the text."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Shape", ["text"], ["shape"]),  # [N, 1]
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["column"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [value]),
        ),
        helper.make_node("Concat", ["column"] * 4, ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "nan", [helper.make_tensor_value_info("text", TensorProto.STRING, [None, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_a_model_that_gives_a_probability_that_is_not_a_number_is_refused_by_every_path(classifier: Classifier) -> None:
    card = {**classifier.card, "input": {"name": "text"}, "outputs": {"probabilities": "probabilities"}}
    broken = Classifier(nan_model_session(), card)
    for predict in (broken.predict, lambda texts: [broken.predict_one(text) for text in texts]):
        with pytest.raises(ModelError, match="not probabilities"):
            predict(["GAN faces", "Topic modelling with LDA"])


@pytest.mark.parametrize(
    "score", [2.5, 0.3, 0.2, -0.25], ids=["ten-times-too-large", "summing-to-1.2", "summing-to-0.8", "negative"]
)
def test_a_model_whose_scores_are_not_probabilities_is_refused_by_every_path(
    classifier: Classifier, score: float
) -> None:
    """Records publish the scores as probabilities and the review threshold is compared with them: scores ten times
    too large would pass every threshold."""
    card = {**classifier.card, "input": {"name": "text"}, "outputs": {"probabilities": "probabilities"}}
    broken = Classifier(nan_model_session(score), card)
    probe = lambda texts: broken.probe()  # noqa: E731
    for predict in (broken.predict, lambda texts: [broken.predict_one(text) for text in texts], probe):
        with pytest.raises(ModelError, match="not probabilities"):
            predict(["GAN faces", "Topic modelling with LDA"])


def narrow_model_bytes(classes: list[str]) -> bytes:
    """A real ONNX model, classes in its metadata as the exporter writes them, that gives every text one score
    fewer than it has classes; made of the exporter's own operators, as a served model must be."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node(  # [N, 1]: 0.3 for every text
            "LabelEncoder",
            ["text"],
            ["column"],
            domain="ai.onnx.ml",
            keys_strings=["-"],
            values_floats=[0.3],
            default_float=0.3,
        ),
        helper.make_node("Concat", ["column"] * (len(classes) - 1), ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "narrow", [helper.make_tensor_value_info("text", TensorProto.STRING, [None, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(classes) - 1])],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    model = helper.make_model(graph, opset_imports=opsets)
    helper.set_model_props(model, {CLASSES_METADATA_KEY: json.dumps(classes)})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_a_model_giving_fewer_scores_than_it_has_classes_is_refused_at_load(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """It loaded, and its first batch raised a ValueError that neither a shadow nor a canary catches: the live
    model's batch failed with it, and the worker stopped, at every start."""
    card: dict[str, Any] = json.loads((trained_model_dir / "model.json").read_text())
    model_bytes = narrow_model_bytes(card["classes"])
    sha = hashlib.sha256(model_bytes).hexdigest()
    card.update(version=sha[:12], sha256={**card["sha256"], "model": sha})
    card["input"]["name"], card["outputs"]["probabilities"] = "text", "probabilities"
    model_card.write_model(tmp_path / "narrow", model_bytes, card)
    with pytest.raises(ModelError, match="shaped") as refused:
        Classifier.load(tmp_path / "narrow")
    assert refused.value.reason == "corrupt"
    import onnxruntime as ort

    # Built without load's checks, as a shadow or canary already serving: each call refuses it, too.
    unchecked = Classifier(ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]), card)
    for predict in (unchecked.predict, lambda texts: [unchecked.predict_one(text) for text in texts]):
        with pytest.raises(ModelError, match="shaped"):
            predict(["GAN faces", "Topic modelling with LDA with a longer description " * 20])


def test_one_text_gets_what_a_batch_gives_it(classifier: Classifier) -> None:
    texts = [event_text(t, d) for t, d in (("GAN faces", None), ("", ""), ("a", None), ("MLOps on Kubernetes", "x"))]
    batch = classifier.predict(texts)
    for text, in_batch in zip(texts, batch, strict=True):
        alone = classifier.predict([text])[0]
        assert alone == classifier.predict_one(text)
        assert alone.tag == in_batch.tag and alone.confidence == max(alone.scores.values())
        assert alone.scores == pytest.approx(in_batch.scores, abs=2e-6)  # rounded: 1e-6 apart, and a float's error
        assert list(alone.scores) == list(classifier.classes)


def test_a_batch_mixing_long_and_short_texts_keeps_each_texts_answer_in_its_place(classifier: Classifier) -> None:
    long_text = event_text("Kubernetes model serving", "Deploying and monitoring models in production. " * 400)
    texts = [event_text("GAN faces", None), long_text, event_text("Topic modelling with LDA", None), long_text[:600]]
    batch = classifier.predict(texts)
    for text, prediction in zip(texts, batch, strict=True):
        single = classifier.predict([text])[0]
        assert prediction.tag == single.tag
        assert prediction.scores == pytest.approx(single.scores, abs=2e-6)  # rounded: 1e-6 apart, and a float's error


def test_length_groups_run_each_text_once_with_texts_of_about_its_length() -> None:
    lengths = [10, 20_000, 300, 255, 600, 20_000, 0, 1_000, 260] + [200] * 100
    texts = ["x" * n for n in lengths]
    groups = length_groups(texts)
    assert sorted(i for group in groups for i in group) == list(range(len(texts)))
    for group in groups:
        longest, shortest = max(lengths[i] for i in group), min(lengths[i] for i in group)
        assert longest <= max(2 * shortest, 255)
        assert len(group) == 1 or longest * len(group) <= 64 * 256
    assert len(groups) <= 8
