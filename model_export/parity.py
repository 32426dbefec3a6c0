"""The parity gate: the exported ONNX model must give the scikit-learn pipeline's probabilities, and the label the
worker serves, on held-out texts and on texts that have broken text converters before."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from sklearn.pipeline import Pipeline

from stream_app.classifier import event_text, run_in_length_groups
from stream_app.errors import TaggerError
from stream_app.schema import MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS

PARITY_TOLERANCE = 1e-5
AWKWARD_TEXTS: tuple[tuple[str, str | None], ...] = (
    ("YOLO", None),
    ("Empty description", ""),
    ("double  spaces   inside", "and\ttabs\tand\nnewlines\n\n  \r\n"),
    ("Réseaux de neurones à café", "naïve façade über Ångström; Ελληνικά и кириллица"),
    ("Emoji rocket 🚀 launch 🤖", "🔥🔥🔥 👩🏽‍💻 flags 🇫🇷"),
    ("a b c d e f g", "x y z 1 2 3 - . !"),
    ("ｆｕｌｌｗｉｄｔｈ ＢＥＲＴ", "ﬁ ligature, ½ fraction, ① circled, zero\u200bwidth"),
    ("中文 分词 和 日本語のテキスト", "한국어 텍스트"),
    ("Long repeated text", "transformer " * (MAX_DESCRIPTION_CHARS // 12)),
    ("", ""),
    ("lone surrogate \ud800 from a JSON escape", None),
)
"""Inputs that have broken text converters before; every export is checked on them (after event_text)."""


class ParityError(TaggerError):
    """The pipeline cannot be exported, or the ONNX model does not reproduce it."""


def onnx_session(model_bytes: bytes) -> Any:
    """A single-threaded onnxruntime session over serialized model bytes, as the worker creates it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def loaded_graph(model_bytes: bytes) -> onnx.GraphProto:
    """The graph onnxruntime runs for ``model_bytes``, after the optimisations it makes when it loads a model (a node
    that reads only constants is computed then), at the basic level: portable, no hardware-specific nodes."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = os.path.join(scratch, "loaded.onnx")
        ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath).graph


LEAST_DECIDED_WORDS = 5
"""How many held-out words the gate repeats to the contract's maximum size (:func:`parity_texts`)."""


def parity_texts(pipeline: Pipeline, held_out: Sequence[str]) -> list[str]:
    """The texts the parity gate checks: the held-out texts, the awkward ones, their mix at the contract's maximum
    size, and the held-out words ``pipeline`` is least sure of, each repeated to that size. A text of one word
    repeated sums thousands of equal occurrences, where float arithmetic drifts the most, and a word the model is
    unsure of keeps its classes close enough for that drift to show in the probabilities."""
    mix = " ".join(held_out)
    longest = [event_text(mix[:MAX_TITLE_CHARS], mix[MAX_TITLE_CHARS : MAX_TITLE_CHARS + MAX_DESCRIPTION_CHARS])]
    longest += [at_the_limits(word) for word in least_decided_words(pipeline, held_out, LEAST_DECIDED_WORDS)]
    awkward = [event_text(title, description) for title, description in AWKWARD_TEXTS]
    return [*held_out, *awkward, *longest]


def least_decided_words(pipeline: Pipeline, texts: Sequence[str], count: int) -> list[str]:
    """The ``count`` words of ``texts`` whose two likeliest classes ``pipeline`` scores the closest, closest first."""
    words = sorted({word for text in texts for word in text.split()})
    if not words:
        return []
    top_two = np.sort(pipeline.predict_proba(np.asarray(words, dtype=object)), axis=1)[:, -2:]
    margins = top_two[:, -1] - top_two[:, 0] if top_two.shape[1] > 1 else np.zeros(len(words))
    return [words[position] for position in np.argsort(margins, kind="stable")[:count]]


def at_the_limits(word: str) -> str:
    """The model's text of an event whose title and description are ``word`` repeated to the contract's limits."""
    return event_text(_repeated(word, MAX_TITLE_CHARS), _repeated(word, MAX_DESCRIPTION_CHARS))


def _repeated(word: str, characters: int) -> str:
    """``word`` repeated, a space apart, in at most ``characters`` characters."""
    return " ".join([word] * ((characters + 1) // (len(word) + 1)))


def check_parity(pipeline: Pipeline, model_bytes: bytes, texts: Sequence[str]) -> dict[str, Any]:
    """Compare ONNX and scikit-learn on ``texts``; raise :class:`ParityError` on a probability gap past
    :data:`PARITY_TOLERANCE` or a label that differs where scikit-learn's two best classes are further apart."""
    try:
        session = onnx_session(model_bytes)
        # The graph's one input and one output: texts [N, 1] in, probabilities [N, classes] out.
        ((text,), (output,)) = session.get_inputs(), session.get_outputs()
        # Run as the worker runs a batch: in groups of like length, so that the texts of the contract's maximum
        # size do not pad every other row (and the memory) to theirs.
        probabilities = run_in_length_groups(session, text.name, [output.name], texts, len(pipeline.classes_))
    except Exception as error:  # onnxruntime's errors are untyped; any of them means no parity
        raise ParityError(f"onnxruntime cannot run the exported model: {error}") from error
    expected = pipeline.predict_proba(np.asarray(texts, dtype=object))
    if not np.isfinite(probabilities).all():  # its shape is checked by run_in_length_groups
        # A NaN would make the gap NaN, which no comparison with the tolerance fails, and be the row's argmax.
        raise ParityError(
            f"the exported model gave {int((~np.isfinite(probabilities)).sum())} probabilities not finite"
        )
    # The label the worker serves: the first of the highest probabilities (Classifier.predict).
    labels = np.asarray(pipeline.classes_)[probabilities.argmax(axis=1)]
    expected_labels = np.asarray(pipeline.classes_)[expected.argmax(axis=1)]
    gap = float(np.abs(probabilities - expected).max())
    top_two = np.sort(expected, axis=1)[:, -2:] if expected.shape[1] > 1 else np.zeros((len(texts), 2))
    # Where scikit-learn's two best classes are closer than the tolerance, the float32 graph may pick either.
    tied = (top_two[:, 1] - top_two[:, 0]) <= PARITY_TOLERANCE
    differ = [a != b for a, b in zip(labels, expected_labels, strict=True)]
    mismatched = [text[:60] for text, d, t in zip(texts, differ, tied, strict=True) if d and not t]
    if mismatched or not gap <= PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX disagrees with scikit-learn on {len(texts)} texts: {len(mismatched)} labels differ "
            f"(e.g. {mismatched[:3]}), max probability difference {gap:.2e} > {PARITY_TOLERANCE:g}"
        )
    return {
        "texts": len(texts),
        "max_abs_probability_difference": gap,
        "labels_identical": not any(differ),
        "labels_differing_on_ties": int(sum(differ)),
    }
