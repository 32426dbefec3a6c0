"""Convert the fitted pipeline to ONNX: one graph of per-occurrence lookups (``sparse_graph``); whether it
agrees with the pipeline is :mod:`model_export.parity`'s to prove."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from model_export.parity import ParityError
from model_export.train import OccurrenceTfidfVectorizer
from stream_app.classifier import CLASSES_METADATA_KEY

INPUT_NAME = "text"
PROBABILITIES_OUTPUT = "probabilities"
"""The graph's one output, [N, classes]: no label output, whose two nodes every run would pay for (0104)."""
OPSETS = {"": 17, "ai.onnx.ml": 2, "com.microsoft": 1}
"""Opset of each domain the graph uses (LabelEncoder maps int64 keys from ai.onnx.ml 2 on)."""
GRAPH_NAME = "content_tagger"
NORM_FLOOR = np.array([1e-30], dtype=np.float32)
"""Least squared norm a row is divided by: a row without a known n-gram stays zero, as scikit-learn leaves it."""
PADDING = "  "
"""What the tokenizers pad each row with, up to the longest row of the batch: no token of a vocabulary (two
spaces are neither one character nor part of a word), so padding never counts as an n-gram."""


CONVERTER_ALIAS = "ContentTaggerSparseGraph"
"""Name under which skl2onnx knows :class:`SparseTagger` and its converter."""


@dataclass(frozen=True, eq=False)
class SparseTagger:
    """What the graph needs of a fitted pipeline, checked: the one estimator skl2onnx converts, with the converter
    registered for it (:func:`register_converter`), so the graph of :func:`sparse_graph` comes from skl2onnx."""

    blocks: tuple[OccurrenceTfidfVectorizer, ...]
    weights: np.ndarray
    """[columns, classes]: the vectorizers' columns side by side, in order."""
    intercept: np.ndarray
    """[classes]."""
    classes: tuple[str, ...]

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> SparseTagger:
        """The pipeline's parts; raises :class:`ParityError` for a pipeline the graph cannot reproduce."""
        blocks = feature_blocks(pipeline)
        weights, intercept = linear_weights(pipeline)
        if sum(len(block.vocabulary_) for block in blocks) != len(weights):
            raise ParityError(f"the classifier has {len(weights)} columns, not the vectorizers' number")
        return cls(tuple(blocks), weights, intercept, tuple(str(c) for c in pipeline.steps[-1][1].classes_))


def convert(pipeline: Pipeline) -> bytes:
    """The whole pipeline as an ONNX model: a [N, 1] string tensor in, probabilities out.

    The model's metadata carries its class labels, so the serving side can check the card against the model.
    """
    tagger = SparseTagger.from_pipeline(pipeline)
    register_converter()
    model = to_onnx(
        tagger, initial_types=[(INPUT_NAME, StringTensorType([None, 1]))], target_opset=OPSETS, name=GRAPH_NAME
    )
    # skl2onnx lists the opset domains in the order of a set, which follows Python's hash seed: sorted, the same
    # data gives the same bytes, and so the same model version (the file's sha256).
    opsets = sorted((opset.domain, opset.version) for opset in model.opset_import)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets)
    helper.set_model_props(model, {CLASSES_METADATA_KEY: json.dumps(list(tagger.classes))})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def register_converter() -> None:
    """Register :class:`SparseTagger` with skl2onnx: its parser, shape calculator and converter."""
    update_registered_converter(SparseTagger, CONVERTER_ALIAS, set_output_types, sparse_graph, parser=parse_tagger)


def parse_tagger(scope: Any, model: SparseTagger, inputs: list[Any], custom_parsers: Any = None) -> list[Any]:
    """One operator from the text to the ``probabilities`` output (skl2onnx parser)."""
    operator = scope.declare_local_operator(CONVERTER_ALIAS, model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable(PROBABILITIES_OUTPUT, missing_type=True))
    return list(operator.outputs)


def set_output_types(operator: Any) -> None:
    """Probabilities [N, classes] (float) of a [N, 1] string input (shape calculator)."""
    (text,) = operator.inputs
    if not isinstance(text.type, StringTensorType):
        raise TypeError(f"the model reads a string tensor, not {text.type}")
    (probabilities,) = operator.outputs
    probabilities.type = FloatTensorType([None, len(operator.raw_operator.classes)])


class GraphWriter:
    """Adds nodes and constants to skl2onnx's container under names unique in its scope."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope, self.container = scope, container
        self.constants: dict[bytes, str] = {}

    def constant(self, seed: str, value: np.ndarray) -> str:
        """The name of an initializer holding ``value``; equal values share one."""
        # skl2onnx stores equal initializers once too, but adds an Identity node for each repeat.
        tensor = numpy_helper.from_array(value)
        key = tensor.SerializeToString()
        if key not in self.constants:
            name = self.constants[key] = self.name(seed)
            if value.dtype == object:  # skl2onnx copies raw data only, which string tensors do not have
                self.container.add_initializer(name, tensor.data_type, list(value.shape), [str(v) for v in value])
            else:
                self.container.add_initializer(name, tensor.data_type, list(value.shape), tensor)
        return self.constants[key]

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], domain: str = "", **attrs: Any) -> None:
        """Append a node of ``domain`` at the opset the model declares for it."""
        name = self.scope.get_unique_operator_name(op_type)
        self.container.add_node(
            op_type, list(inputs), list(outputs), op_domain=domain, op_version=OPSETS[domain], name=name, **attrs
        )

    def ints(self, seed: str, values: int | list[int]) -> str:
        """The name of an int64 initializer holding ``values`` (a scalar for an int)."""
        return self.constant(seed, np.array(values, dtype=np.int64))

    def name(self, seed: str) -> str:
        """A variable name after ``seed`` that no other variable of the scope has."""
        return str(self.scope.get_unique_variable_name(seed))

    def add(self, op_type: str, inputs: Sequence[str], seed: str, domain: str = "", **attrs: Any) -> str:
        """Append a node of one output, named after ``seed``; returns that name."""
        output = self.name(seed)
        self.node(op_type, inputs, [output], domain, **attrs)
        return output


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


def sparse_graph(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx converter of :class:`SparseTagger`: tokenizers, then one table lookup per n-gram occurrence, no
    tensor with a column per vocabulary entry.

    A block's column j holds ``count_j * idf_j / sqrt(sum_i count_i * idf_i^2)``
    (:class:`~model_export.train.OccurrenceTfidfVectorizer`), so its contribution to class k is
    ``sum_p(idf[p] * w[p, k]) / sqrt(sum_p(idf[p]^2))`` over the n-gram occurrences p of the text. The graph
    maps each occurrence to its column (:func:`ngram_ids`; unknown n-grams and padding to an all-zero row),
    gathers the rows ``[idf * w, idf^2]`` of a table and sums them: its work grows with the text, not with
    the vocabulary, where a dense TF-IDF graph fills and reads every column of every row several times.

    At one text per call onnxruntime's fixed cost per node outweighs most nodes' work, so the graph has as few
    nodes as the arithmetic allows (decision 0104): the tokenizers read the [N, 1] input as it is and give
    [N, 1, tokens], and n-grams are spelled by one ``Conv`` where float32 spells them exactly.

    The occurrences are summed in float64: a text of the contract's maximum size has tens of thousands, and a
    float32 sum of them drifts past the parity tolerance (decision 0109). The file keeps the tables in float32;
    their cast to float64 reads only a constant, which onnxruntime folds when it loads the model, so a run
    pays only the cast of the sums back to float32.
    """
    tagger: SparseTagger = operator.raw_operator
    graph = GraphWriter(scope, container)
    classes = len(tagger.classes)
    occurrence_axes = graph.ints("occurrence_axes", [1, 2])
    block_sums = []
    start = 0
    for index, block in enumerate(tagger.blocks):
        width = len(block.vocabulary_)
        idf = block.idf_.astype(np.float64)
        table = np.zeros((width + 1, classes + 1))  # row ``width``: unknown n-grams and padding
        table[:width, :-1] = idf[:, None] * tagger.weights[start : start + width]
        table[:width, -1] = idf**2
        start += width
        # [N, 1] in, [N, 1, tokens] out; "" as the one separator splits a text into its characters.
        split_by = {"separators": [""]} if block.analyzer == "char" else {"tokenexp": block.token_pattern}
        tokens = graph.add(
            "Tokenizer",
            [operator.inputs[0].full_name],
            f"tokens_{index}",
            domain="com.microsoft",
            mark=0,
            mincharnum=1,
            pad_value=PADDING,
            **split_by,
        )
        split = list if block.analyzer == "char" else str.split
        vocabulary = {tuple(split(ngram)): column for ngram, column in block.vocabulary_.items()}
        ids = ngram_ids(graph, tokens, vocabulary, f"block{index}", default=width)
        table_name = graph.constant(f"table_{index}", table.astype(np.float32))
        table_name = graph.add("Cast", [table_name], f"table64_{index}", to=onnx.TensorProto.DOUBLE)
        gathered = graph.add("Gather", [table_name, ids], f"gathered_{index}", axis=0)
        # [N, 1, 1, classes + 1]: the block's scores and squared norm.
        block_sums.append(graph.add("ReduceSum", [gathered, occurrence_axes], f"sums_{index}", keepdims=1))
    # All blocks side by side, [N, blocks, 1, classes + 1], so that one set of nodes normalises them all.
    sums = graph.add("Concat", block_sums, "sums", axis=1) if len(block_sums) > 1 else block_sums[0]
    sums = graph.add("Cast", [sums], "sums32", to=onnx.TensorProto.FLOAT)
    raw, squared = graph.name("raw"), graph.name("squared")
    graph.node("Split", [sums, graph.ints("split_scores_norm", [classes, 1])], [raw, squared], axis=3)
    floored = graph.add("Max", [squared, graph.constant("norm_floor", NORM_FLOOR)], "floored")
    scores = graph.add("Div", [raw, graph.add("Sqrt", [floored], "norm")], "scores")
    logits = graph.add("ReduceSum", [scores, occurrence_axes], "block_logits", keepdims=0)
    (probabilities,) = (output.full_name for output in operator.outputs)
    intercept = graph.constant("intercept", tagger.intercept.astype(np.float32))
    graph.node("Softmax", [graph.add("Add", [logits, intercept], "logits")], [probabilities], axis=1)


FLOAT_EXACT = 2**24
"""Integers below this are exact in float32, and so are sums of products that stay below it."""
NgramColumns = dict[tuple[int, int], int]
"""An n-gram's length and the number its digits spell, to its column."""


def ngram_ids(
    graph: GraphWriter, tokens: str, vocabulary: dict[tuple[str, ...], int], prefix: str, default: int
) -> str:
    """Add the nodes mapping every n-gram occurrence in ``tokens`` [N, 1, T] to its column; returns the name of
    the [N, lengths, occurrences] int64 result (``default`` for n-grams outside ``vocabulary`` and for padding).

    Strings are looked up once: each token becomes a digit (1 + its rank among the vocabulary's tokens, 0
    when unknown), and an n-gram the number its digits spell in base ``len(tokens) + 1``; an n-gram with an
    unknown token has a 0 digit, so it spells no number of the vocabulary. Where every such number fits
    float32 exactly, one ``Conv`` spells all lengths at every position (:func:`conv_ngram_ids`) and one
    ``LabelEncoder`` maps them to columns; otherwise int64 arithmetic over shifted slices does
    (:func:`sliced_ngram_ids`).
    """
    alphabet = sorted({token for ngram in vocabulary for token in ngram})
    if PADDING in alphabet:
        raise ParityError(f"the padding {PADDING!r} is a token of the vocabulary")
    if all(len(ngram) == 1 for ngram in vocabulary):  # single tokens: their column in one lookup
        unigrams = sorted((ngram[0], column) for ngram, column in vocabulary.items())
        return graph.add(
            "LabelEncoder",
            [tokens],
            f"{prefix}_ids",
            domain="ai.onnx.ml",
            keys_strings=[token for token, _ in unigrams],
            values_int64s=[column for _, column in unigrams],
            default_int64=default,
        )
    digit = {token: rank + 1 for rank, token in enumerate(alphabet)}
    base = len(alphabet) + 1
    lengths = sorted({len(ngram) for ngram in vocabulary})
    exact_in_float = sum(base**length for length in lengths) <= FLOAT_EXACT
    if base ** max(lengths) >= 2**62:
        raise ParityError(f"{len(alphabet)} distinct tokens cannot spell {max(lengths)}-grams in an int64")
    digits = graph.add(
        "LabelEncoder",
        [tokens],
        f"{prefix}_digits",
        domain="ai.onnx.ml",
        keys_strings=alphabet,
        **(
            {"values_floats": [float(digit[token]) for token in alphabet], "default_float": 0.0}
            if exact_in_float
            else {"values_int64s": [digit[token] for token in alphabet], "default_int64": 0}
        ),
    )
    columns = {
        (len(ngram), int(np.polyval([digit[token] for token in ngram], base))): column
        for ngram, column in vocabulary.items()
    }
    spell = conv_ngram_ids if exact_in_float else sliced_ngram_ids
    return spell(graph, digits, base, columns, prefix, default)


def conv_ngram_ids(graph: GraphWriter, digits: str, base: int, columns: NgramColumns, prefix: str, default: int) -> str:
    """[N, lengths, T + 1] columns of the n-grams of each length that start at each position of ``digits``.

    The digits (float) are padded with ``longest`` zeros at the end, so that a text of no token still has a
    position (``Conv`` refuses an empty input) and n-grams running past the end have a 0 digit. Output channel
    c of the ``Conv`` weighs the next ``lengths[c]`` digits by the powers of the base and adds an offset (its
    bias) that keeps each length's numbers apart, so one ``LabelEncoder`` maps all of them. Every number is
    an integer below :data:`FLOAT_EXACT`, so float32 computes it exactly.
    """
    lengths = sorted({length for length, _ in columns})
    longest = max(lengths)
    offsets = dict(zip(lengths, np.cumsum([0] + [base**n for n in lengths[:-1]]).tolist(), strict=True))
    padded = graph.add("Pad", [digits, graph.ints(f"{prefix}_pads", [0, 0, 0, 0, 0, longest])], f"{prefix}_padded")
    kernel = np.zeros((len(lengths), 1, longest), dtype=np.float32)
    for channel, length in enumerate(lengths):
        kernel[channel, 0, :length] = [base ** (length - 1 - i) for i in range(length)]
    keys = graph.add(
        "Conv",
        [
            padded,
            graph.constant(f"{prefix}_powers", kernel),
            graph.constant(f"{prefix}_offsets", np.array([offsets[n] for n in lengths], dtype=np.float32)),
        ],
        f"{prefix}_keys",
        kernel_shape=[longest],
    )
    keyed = sorted((offsets[length] + number, column) for (length, number), column in columns.items())
    return graph.add(
        "LabelEncoder",
        [keys],
        f"{prefix}_ids",
        domain="ai.onnx.ml",
        keys_floats=[float(key) for key, _ in keyed],
        values_int64s=[column for _, column in keyed],
        default_int64=default,
    )


def sliced_ngram_ids(
    graph: GraphWriter, digits: str, base: int, columns: NgramColumns, prefix: str, default: int
) -> str:
    """[N, 1, occurrences] columns of the n-grams of ``digits`` (int64), spelled as numbers built from the
    (n-1)-grams with ``Slice``, ``Mul`` and ``Add``, one ``LabelEncoder`` per length."""
    lengths = sorted({length for length, _ in columns})
    ids, spelled = [], digits
    axis = graph.ints("token_axis", [2])
    for length in range(1, max(lengths) + 1):
        if length > 1:
            # n-gram at position p = (n-1)-gram at p, times the base, plus the digit of token p + n - 1.
            seed = f"{prefix}_{length}gram"
            zero = graph.ints("zero", [0])
            minus_one = graph.ints("minus_one", [-1])
            head = graph.add("Slice", [spelled, zero, minus_one, axis], f"{seed}_head")
            shifted = graph.add("Mul", [head, graph.ints(f"{prefix}_base", base)], f"{seed}_shifted")
            first = graph.ints(f"{prefix}_to_{length}", [length - 1])
            end = graph.ints("end", [int(np.iinfo(np.int64).max)])
            last = graph.add("Slice", [digits, first, end, axis], f"{seed}_last")
            spelled = graph.add("Add", [shifted, last], seed)
        keyed = sorted((number, column) for (n, number), column in columns.items() if n == length)
        if not keyed:
            continue
        ids.append(
            graph.add(
                "LabelEncoder",
                [spelled],
                f"{spelled}_ids",
                domain="ai.onnx.ml",
                keys_int64s=[number for number, _ in keyed],
                values_int64s=[column for _, column in keyed],
                default_int64=default,
            )
        )
    if len(ids) == 1:
        return ids[0]
    return graph.add("Concat", ids, f"{prefix}_ids", axis=2)


def describe_io(model_bytes: bytes) -> dict[str, dict[str, Any]]:
    """Name, element type and shape (None for a free dimension) of the input and the probabilities."""
    graph = onnx.load_from_string(model_bytes).graph
    values = {value.name: value for value in [*graph.input, *graph.output]}
    described = {}
    for role, name in (("input", INPUT_NAME), ("probabilities", PROBABILITIES_OUTPUT)):
        tensor = values[name].type.tensor_type
        described[role] = {
            "name": name,
            "type": onnx.TensorProto.DataType.Name(tensor.elem_type).lower(),
            "shape": [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim],
        }
    return described
