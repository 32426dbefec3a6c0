"""Convert the fitted pipeline to ONNX and prove the two agree before anything is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import skl2onnx.sklapi.register  # noqa: F401  (registers the TraceableTfidfVectorizer converter)
from skl2onnx import to_onnx
from skl2onnx.common.data_types import StringTensorType
from sklearn.pipeline import Pipeline

from stream_app.classifier import event_text
from stream_app.errors import TaggerError

INPUT_NAME = "text"
TARGET_OPSET = 17
PARITY_TOLERANCE = 1e-5
AWKWARD_TEXTS: tuple[tuple[str, str | None], ...] = (
    ("YOLO", None),
    ("Empty description", ""),
    ("double  spaces   inside", "and\ttabs\tand\nnewlines\n\n"),
    ("Réseaux de neurones à café", "naïve façade über Ångström"),
    ("Emoji rocket 🚀 launch 🤖", "🔥🔥🔥"),
    ("a b c d e f g", "x y z"),
    ("ｆｕｌｌｗｉｄｔｈ ＢＥＲＴ", "ﬁ ligature"),
    ("Long text", "transformer " * 1700),
    ("", ""),
)
"""Inputs that have broken text converters before; every export is checked on them."""


class ParityError(TaggerError):
    """The ONNX model does not reproduce the scikit-learn pipeline."""


def convert(pipeline: Pipeline) -> bytes:
    """The whole pipeline as an ONNX model: a [N, 1] string tensor in, labels and probabilities out."""
    model = pipeline.steps[-1][1]
    onnx_model = to_onnx(
        pipeline,
        initial_types=[(INPUT_NAME, StringTensorType([None, 1]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return bytes(onnx_model.SerializeToString())


def onnx_session(model_bytes: bytes) -> Any:
    """An onnxruntime session over serialized model bytes."""
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def parity_texts(held_out: Sequence[str]) -> list[str]:
    """The texts the parity gate checks: held-out texts plus the awkward ones."""
    return [*held_out, *(event_text(title, description) for title, description in AWKWARD_TEXTS)]


def check_parity(pipeline: Pipeline, model_bytes: bytes, texts: Sequence[str]) -> dict[str, Any]:
    """Compare ONNX and scikit-learn on ``texts``; raise :class:`ParityError` on any label or probability gap."""
    try:
        session = onnx_session(model_bytes)
        labels, probabilities = session.run(None, {INPUT_NAME: np.asarray(texts, dtype=object).reshape(-1, 1)})
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
