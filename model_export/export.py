"""Convert the fitted pipeline to ONNX and prove the two agree before anything is written."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import skl2onnx.sklapi.register  # noqa: F401  (registers the TraceableTfidfVectorizer converter)
from onnx import helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import StringTensorType
from sklearn.pipeline import Pipeline

from stream_app.classifier import CLASSES_METADATA_KEY, event_text
from stream_app.errors import TaggerError

INPUT_NAME = "text"
LABEL_OUTPUT, PROBABILITIES_OUTPUT = "label", "probabilities"
TARGET_OPSET = 17  # ReduceL2 below takes its axes as an attribute up to opset 17
PARITY_TOLERANCE = 1e-5
LONG_TEXT_CHARS = 20_000
AWKWARD_TEXTS: tuple[tuple[str, str | None], ...] = (
    ("YOLO", None),
    ("Empty description", ""),
    ("double  spaces   inside", "and\ttabs\tand\nnewlines\n\n  \r\n"),
    ("Réseaux de neurones à café", "naïve façade über Ångström; Ελληνικά и кириллица"),
    ("Emoji rocket 🚀 launch 🤖", "🔥🔥🔥 👩🏽‍💻 flags 🇫🇷"),
    ("a b c d e f g", "x y z 1 2 3 - . !"),
    ("ｆｕｌｌｗｉｄｔｈ ＢＥＲＴ", "ﬁ ligature, ½ fraction, ① circled, zero\u200bwidth"),
    ("中文 分词 和 日本語のテキスト", "한국어 텍스트"),
    ("Long repeated text", "transformer " * (LONG_TEXT_CHARS // 12)),
    ("", ""),
    ("lone surrogate \ud800 from a JSON escape", None),
)
"""Inputs that have broken text converters before; every export is checked on them (after event_text)."""


class ParityError(TaggerError):
    """The ONNX model does not reproduce the scikit-learn pipeline."""


def convert(pipeline: Pipeline) -> bytes:
    """The whole pipeline as an ONNX model: a [N, 1] string tensor in, labels and probabilities out.

    The model's metadata carries its class labels, so the serving side can check the card against the model.
    """
    with warnings.catch_warnings():
        # The converter warns that char analyzers "may not work"; the parity gate is what decides.
        warnings.filterwarnings("ignore", "The conversion of CountVectorizer may not work", UserWarning)
        model = to_onnx(
            pipeline,
            initial_types=[(INPUT_NAME, StringTensorType([None, 1]))],
            options={id(pipeline.steps[-1][1]): {"zipmap": False}},
            target_opset=TARGET_OPSET,
        )
    replace_l2_normalizers(model)
    # The converter lists the opset domains in the order of a set, which changes with Python's hash seed: sorted,
    # the same data gives the same bytes, and so the same model version (the sha256 of the file).
    opsets = sorted((opset.domain, opset.version) for opset in model.opset_import)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets)
    helper.set_model_props(model, {CLASSES_METADATA_KEY: json.dumps([str(c) for c in pipeline.classes_])})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def replace_l2_normalizers(model: onnx.ModelProto) -> None:
    """Rewrite every ai.onnx.ml L2 ``Normalizer`` as ``x / max(ReduceL2(x), tiny)``, in place.

    Same arithmetic (a zero row stays zero, as in scikit-learn), but onnxruntime's Normalizer kernel spends
    ~50 µs on one dense TF-IDF row, a third of a single message's latency; the parity gate checks the result.
    """
    nodes = []
    for node in model.graph.node:
        norm = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "norm"), None)
        if node.op_type != "Normalizer" or norm != b"L2":
            nodes.append(node)
            continue
        rows, out = node.input[0], node.output[0]
        nodes += [
            helper.make_node("ReduceL2", [rows], [f"{out}_l2"], axes=[1], keepdims=1),
            helper.make_node("Max", [f"{out}_l2", "l2_floor"], [f"{out}_divisor"]),
            helper.make_node("Div", [rows, f"{out}_divisor"], [out]),
        ]
    if len(nodes) != len(model.graph.node):
        model.graph.initializer.append(numpy_helper.from_array(np.array([1e-30], dtype=np.float32), "l2_floor"))
        del model.graph.node[:]
        model.graph.node.extend(nodes)


def describe_io(model_bytes: bytes) -> dict[str, dict[str, Any]]:
    """Name, element type and shape (None for a free dimension) of the input, labels and probabilities."""
    graph = onnx.load_from_string(model_bytes).graph
    values = {value.name: value for value in [*graph.input, *graph.output]}
    described = {}
    for role, name in (("input", INPUT_NAME), ("label", LABEL_OUTPUT), ("probabilities", PROBABILITIES_OUTPUT)):
        tensor = values[name].type.tensor_type
        described[role] = {
            "name": name,
            "type": onnx.TensorProto.DataType.Name(tensor.elem_type).lower(),
            "shape": [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim],
        }
    return described


def onnx_session(model_bytes: bytes) -> Any:
    """A single-threaded onnxruntime session over serialized model bytes, as the worker creates it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def parity_texts(held_out: Sequence[str]) -> list[str]:
    """The texts the parity gate checks: held-out texts, the awkward ones, and a long mix of held-out text."""
    long_text = " ".join(held_out)[:LONG_TEXT_CHARS]
    awkward = [event_text(title, description) for title, description in AWKWARD_TEXTS]
    return [*held_out, *awkward, long_text]


def check_parity(pipeline: Pipeline, model_bytes: bytes, texts: Sequence[str]) -> dict[str, Any]:
    """Compare ONNX and scikit-learn on ``texts``; raise :class:`ParityError` on any label or probability gap."""
    try:
        labels, probabilities = onnx_session(model_bytes).run(
            [LABEL_OUTPUT, PROBABILITIES_OUTPUT], {INPUT_NAME: np.asarray(texts, dtype=object).reshape(-1, 1)}
        )
    except Exception as error:  # onnxruntime's errors are untyped; any of them means no parity
        raise ParityError(f"onnxruntime cannot run the exported model: {error}") from error
    expected = pipeline.predict_proba(np.asarray(texts, dtype=object))
    expected_labels = np.asarray(pipeline.classes_)[expected.argmax(axis=1)]
    gap = float(np.abs(np.asarray(probabilities) - expected).max())
    mismatched = [text[:60] for text, a, b in zip(texts, labels, expected_labels, strict=True) if a != b]
    if mismatched or gap > PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX disagrees with scikit-learn on {len(texts)} texts: {len(mismatched)} labels differ "
            f"(e.g. {mismatched[:3]}), max probability difference {gap:.2e} > {PARITY_TOLERANCE:g}"
        )
    return {"texts": len(texts), "max_abs_probability_difference": gap, "labels_identical": True}
