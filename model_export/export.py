"""Convert the fitted pipeline to ONNX and prove the two agree before anything is written."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from model_export.train import OccurrenceTfidfVectorizer
from stream_app.classifier import CLASSES_METADATA_KEY, event_text
from stream_app.errors import TaggerError

INPUT_NAME = "text"
LABEL_OUTPUT, PROBABILITIES_OUTPUT = "label", "probabilities"
OPSETS = {"": 17, "ai.onnx.ml": 2, "com.microsoft": 1}
"""Opset of each domain the rebuilt graph uses (LabelEncoder maps int64 keys from ai.onnx.ml 2 on)."""
IR_VERSION = 8
PADDING = "  "
"""What the tokenizers pad each row with, up to the longest row of the batch: no token of a vocabulary (two
spaces are neither one character nor part of a word), so padding never counts as an n-gram."""
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
    model = sparse_graph(pipeline)
    helper.set_model_props(model, {CLASSES_METADATA_KEY: json.dumps([str(c) for c in pipeline.classes_])})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def feature_blocks(pipeline: Pipeline) -> list[OccurrenceTfidfVectorizer]:
    """The vectorizers whose outputs, side by side, are the classifier's columns, in column order."""
    features = pipeline.steps[0][1] if len(pipeline.steps) == 2 else None
    blocks: list[Any] = [t for _, t in features.transformer_list] if isinstance(features, FeatureUnion) else [features]
    for block in blocks:
        if not isinstance(block, OccurrenceTfidfVectorizer) or block.analyzer not in ("word", "char"):
            raise ParityError(f"cannot export {block!r}: expected OccurrenceTfidfVectorizer, word or char n-grams")
        unsupported = ("lowercase", "preprocessor", "tokenizer", "stop_words", "strip_accents", "norm", "binary")
        if any(getattr(block, name) for name in (*unsupported, "sublinear_tf")) or not block.use_idf:
            raise ParityError(f"cannot export {block!r}: the graph has none of {unsupported}, sublinear tf or no idf")
    return blocks


def linear_weights(pipeline: Pipeline) -> tuple[np.ndarray, np.ndarray]:
    """The logistic regression's weights as [columns, classes] and intercepts as [classes]: softmax of
    ``x @ weights + intercepts`` is ``predict_proba``."""
    model = pipeline.steps[-1][1]
    if not isinstance(model, LogisticRegression):
        raise ParityError(f"cannot export {model!r}: expected a logistic regression")
    coef, intercept = np.asarray(model.coef_, dtype=np.float64), np.asarray(model.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:
        # Binary: scikit-learn's probabilities are (1 - sigmoid(z), sigmoid(z)) = softmax(0, z).
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return coef.T, intercept


def sparse_graph(pipeline: Pipeline) -> onnx.ModelProto:
    """Tokenizers, then one table lookup per n-gram occurrence: no tensor with a column per vocabulary entry.

    A block's column j holds ``count_j * idf_j / sqrt(sum_i count_i * idf_i^2)``
    (:class:`~model_export.train.OccurrenceTfidfVectorizer`), so its contribution to class k is
    ``sum_p(idf[p] * w[p, k]) / sqrt(sum_p(idf[p]^2))`` over the n-gram occurrences p of the text. The graph
    maps each occurrence to its column (:func:`ngram_ids`; unknown n-grams and padding to an all-zero row),
    gathers the rows ``[idf * w, idf^2]`` of a table and sums them: its work grows with the text, not with
    the vocabulary, where a dense TF-IDF graph fills and reads every column of every row several times.
    """
    blocks = feature_blocks(pipeline)
    weights, intercept = linear_weights(pipeline)
    classes = [str(c) for c in pipeline.steps[-1][1].classes_]
    if sum(len(block.vocabulary_) for block in blocks) != len(weights):
        raise ParityError(f"the classifier has {len(weights)} columns, not the vectorizers' number")
    constants = {
        "norm_floor": np.array([1e-30], dtype=np.float32),
        "intercept": intercept.astype(np.float32),
        "classes": np.array(classes, dtype=object),
        "split_scores_norm": np.array([len(classes), 1], dtype=np.int64),
        "occurrence_axis": np.array([1], dtype=np.int64),
        "zero": np.array([0], dtype=np.int64),
        "minus_one": np.array([-1], dtype=np.int64),
        "end": np.array([np.iinfo(np.int64).max], dtype=np.int64),
    }
    # [N, 1] to [N]: the tokenizers then give [N, tokens].
    nodes = [helper.make_node("Reshape", [INPUT_NAME, "minus_one"], ["texts"])]
    block_scores = []
    start = 0
    for index, block in enumerate(blocks):
        width = len(block.vocabulary_)
        idf = block.idf_.astype(np.float64)
        table = np.zeros((width + 1, len(classes) + 1))  # row ``width``: unknown n-grams and padding
        table[:width, :-1] = idf[:, None] * weights[start : start + width]
        table[:width, -1] = idf**2
        start += width
        constants[f"table_{index}"] = table.astype(np.float32)
        tokens = f"tokens_{index}"
        nodes.append(
            helper.make_node(
                "Tokenizer",
                ["texts"],
                [tokens],
                domain="com.microsoft",
                mark=0,
                mincharnum=1,
                pad_value=PADDING,
                tokenexp="." if block.analyzer == "char" else block.token_pattern,
            )
        )
        split = list if block.analyzer == "char" else str.split
        vocabulary = {tuple(split(ngram)): column for ngram, column in block.vocabulary_.items()}
        ids = ngram_ids(nodes, constants, tokens, vocabulary, f"block{index}", default=width)
        nodes += [
            helper.make_node("Gather", [f"table_{index}", ids], [f"gathered_{index}"], axis=0),
            helper.make_node("ReduceSum", [f"gathered_{index}", "occurrence_axis"], [f"sums_{index}"], keepdims=0),
            helper.make_node("Split", [f"sums_{index}", "split_scores_norm"], [f"raw_{index}", f"sq_{index}"], axis=1),
            # A row without a known n-gram stays zero, as scikit-learn leaves it.
            helper.make_node("Max", [f"sq_{index}", "norm_floor"], [f"floored_{index}"]),
            helper.make_node("Sqrt", [f"floored_{index}"], [f"norm_{index}"]),
            helper.make_node("Div", [f"raw_{index}", f"norm_{index}"], [f"scores_{index}"]),
        ]
        block_scores.append(f"scores_{index}")
    nodes += [
        helper.make_node("Sum", [*block_scores, "intercept"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [PROBABILITIES_OUTPUT], axis=1),
        helper.make_node("ArgMax", [PROBABILITIES_OUTPUT], ["best"], axis=1, keepdims=0),
        helper.make_node("Gather", ["classes", "best"], [LABEL_OUTPUT], axis=0),
    ]
    used = {name for node in nodes for name in node.input}
    initializers = [numpy_helper.from_array(value, name) for name, value in constants.items() if name in used]
    inputs = [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.STRING, [None, 1])]
    outputs = [
        helper.make_tensor_value_info(LABEL_OUTPUT, onnx.TensorProto.STRING, [None]),
        helper.make_tensor_value_info(PROBABILITIES_OUTPUT, onnx.TensorProto.FLOAT, [None, len(classes)]),
    ]
    graph = helper.make_graph(nodes, "content_tagger", inputs, outputs, initializers)
    # Sorted, so that the same data gives the same bytes, and so the same model version (the file's sha256).
    domains = sorted({node.domain for node in nodes})
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, OPSETS[d]) for d in domains])
    model.ir_version = IR_VERSION
    return model


def ngram_ids(
    nodes: list[onnx.NodeProto],
    constants: dict[str, np.ndarray],
    tokens: str,
    vocabulary: dict[tuple[str, ...], int],
    prefix: str,
    default: int,
) -> str:
    """Append the nodes mapping every n-gram occurrence in ``tokens`` [N, T] to its column; returns the name of
    the [N, occurrences] int64 result (``default`` for n-grams outside ``vocabulary`` and for padding).

    Strings are looked up once: each token becomes a digit (1 + its rank among the vocabulary's tokens, 0
    when unknown), and an n-gram the number its digits spell in base ``len(tokens) + 1``, built from the
    (n-1)-grams with integer arithmetic. One ``LabelEncoder`` per n-gram length maps those numbers to columns;
    an n-gram with an unknown token has a 0 digit, so it spells no number of the vocabulary.
    """
    alphabet = sorted({token for ngram in vocabulary for token in ngram})
    if PADDING in alphabet:
        raise ParityError(f"the padding {PADDING!r} is a token of the vocabulary")
    if all(len(ngram) == 1 for ngram in vocabulary):  # single tokens: their column in one lookup
        unigrams = sorted((ngram[0], column) for ngram, column in vocabulary.items())
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [tokens],
                [f"{prefix}_ids"],
                domain="ai.onnx.ml",
                keys_strings=[token for token, _ in unigrams],
                values_int64s=[column for _, column in unigrams],
                default_int64=default,
            )
        )
        return f"{prefix}_ids"
    digit = {token: rank + 1 for rank, token in enumerate(alphabet)}
    base = len(alphabet) + 1
    lengths = sorted({len(ngram) for ngram in vocabulary})
    if base ** max(lengths, default=1) >= 2**62:
        raise ParityError(f"{len(alphabet)} distinct tokens cannot spell {max(lengths)}-grams in an int64")
    constants[f"{prefix}_base"] = np.array(base, dtype=np.int64)
    digits = f"{prefix}_digits"
    nodes.append(
        helper.make_node(
            "LabelEncoder",
            [tokens],
            [digits],
            domain="ai.onnx.ml",
            keys_strings=alphabet,
            values_int64s=[digit[token] for token in alphabet],
            default_int64=0,
        )
    )
    ids, spelled = [], digits
    for length in range(1, max(lengths, default=1) + 1):
        if length > 1:
            # n-gram at position p = (n-1)-gram at p, times the base, plus the digit of token p + n - 1.
            shorter, spelled = spelled, f"{prefix}_{length}gram"
            constants[f"{prefix}_to_{length}"] = np.array([length - 1], dtype=np.int64)
            last = [digits, f"{prefix}_to_{length}", "end", "occurrence_axis"]
            nodes += [
                helper.make_node("Slice", [shorter, "zero", "minus_one", "occurrence_axis"], [f"{spelled}_head"]),
                helper.make_node("Mul", [f"{spelled}_head", f"{prefix}_base"], [f"{spelled}_shifted"]),
                helper.make_node("Slice", last, [f"{spelled}_last"]),
                helper.make_node("Add", [f"{spelled}_shifted", f"{spelled}_last"], [spelled]),
            ]
        ngrams = sorted((ngram, column) for ngram, column in vocabulary.items() if len(ngram) == length)
        if not ngrams:
            continue
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [spelled],
                [f"{spelled}_ids"],
                domain="ai.onnx.ml",
                keys_int64s=[int(np.polyval([digit[t] for t in ngram], base)) for ngram, _ in ngrams],
                values_int64s=[column for _, column in ngrams],
                default_int64=default,
            )
        )
        ids.append(f"{spelled}_ids")
    if len(ids) == 1:
        return ids[0]
    nodes.append(helper.make_node("Concat", ids, [f"{prefix}_ids"], axis=1))
    return f"{prefix}_ids"


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
