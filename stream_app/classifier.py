"""Serving side of the model: the shared text function and the ONNX classifier the worker runs.

Nothing here imports scikit-learn or unpickles anything: the worker loads only ``model.onnx`` and its JSON
card ``model.json``, and refuses a model whose hash or classes do not match the card and the approved tags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import numpy as np

from stream_app import APPROVED_TAGS
from stream_app.drift import Reference
from stream_app.errors import ModelError
from stream_app.files import open_regular, read_regular
from stream_app.onnx_wire import has_external_data, operators

log = logging.getLogger(__name__)

CLASSES_METADATA_KEY = "classes"
"""Key of the ONNX model's metadata holding its class labels (JSON list, in probability-column order)."""

_WHITESPACE = re.compile(r"\s+")


def event_text(title: str, description: str | None) -> str:
    """The model's input for an event: title and description, NFKC-normalised, case-folded, whitespace collapsed.

    Training and serving both call this, so the ONNX graph sees exactly the text the model was fitted on;
    case-folding here rather than in the graph avoids the converter's locale-dependent lower-casing.
    """
    text = f"{title} {description or ''}"
    if text.isascii():  # NFKC leaves ASCII as it is and case-folds it to lower case; split() splits at \s runs
        return " ".join(text.lower().split())
    text = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    if not text.isascii():
        # A JSON "\ud800" escape decodes to a lone surrogate, which onnxruntime cannot encode: replace it.
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


MAX_MODEL_BYTES: Final = 256 * 1024 * 1024
"""Largest ``model.onnx`` read (the exported one is under 1 MB; the registry serves at most as much): it is read into
memory whole, to be hashed and loaded from the same bytes."""


def read_model(path: Path) -> bytes:
    """The bytes of the model file ``path``; :class:`OSError` if it is not a regular file or holds more than
    :data:`MAX_MODEL_BYTES`."""
    return read_regular(path, MAX_MODEL_BYTES)


SERVED_OPERATORS: Final = frozenset(
    [("", name) for name in ("Add", "Cast", "Concat", "Conv", "Div", "Gather", "Max", "Mul", "Pad", "ReduceSum",
                             "Slice", "Softmax", "Split", "Sqrt")]
    + [("ai.onnx.ml", "LabelEncoder"), ("com.microsoft", "Tokenizer")]
)  # fmt: skip
"""``(domain, operator)`` of every node ``model_export`` writes, in any of its graphs (a test exports each): a model
running any other is refused. None of these loops or branches, so a batch's time follows its texts."""


SCORE_DECIMALS: Final = 6
"""Decimals a published probability keeps: more are noise."""
_SCALE: Final = 10.0**SCORE_DECIMALS


_NOT_PROBABILITIES: Final = (
    "the model gave scores that are not probabilities: each must be a finite number from 0 to 1, and a text's must"
    " sum to 1"
)
_RANGE_SLACK: Final = 1e-6
"""How far a float32 probability may stray out of [0, 1] by rounding."""
_SUM_SLACK: Final = 1e-3
"""How far a text's probabilities may sum from 1: float32 softmax is within about 1e-6; scores ten times too large,
or a logit, are far out."""
_WRONG_SHAPE: Final = "the model gave probabilities shaped {} for {} texts and {} classes"
PROBE_TEXTS: Final = ("Object detection with YOLO on video streams", "")
"""What :meth:`Classifier.probe` classifies at load: two texts of different lengths, one of them empty, as a batch;
then the first alone."""


def published_scores(probabilities: Any) -> Any:
    """The model's [N, classes] probabilities as float64 rounded to :data:`SCORE_DECIMALS`, so that each converts
    to a Python float written with at most that many decimals (a float32 would carry its own error into the
    double); raises ModelError unless they are probabilities (:data:`_NOT_PROBABILITIES`): an output record carries
    them as such, and the review threshold compares with them."""
    # Written so that NaN fails: every comparison with it is false.
    if not (
        probabilities.min() >= -_RANGE_SLACK
        and probabilities.max() <= 1 + _RANGE_SLACK
        and np.abs(probabilities.sum(axis=1) - 1).max() <= _SUM_SLACK
    ):
        raise ModelError(_NOT_PROBABILITIES)
    return probabilities.astype(np.float64).round(SCORE_DECIMALS)


def published_confidences(probabilities: Any) -> Any:
    """Each row's best probability as the worker publishes it and compares it with the review threshold (rounded
    as :func:`published_scores` rounds): what the exporter chooses the threshold on and evaluates it with."""
    return probabilities.max(axis=1).astype(np.float64).round(SCORE_DECIMALS)


def published_row(row: list[float]) -> list[float]:
    """:func:`published_scores` of one row, in Python (numpy's ``round`` is this double arithmetic): for one row,
    cheaper than numpy and than ``round(score, 6)``."""
    # The sum carries NaN and infinities, which min() and max() may pass over.
    if not (min(row) >= -_RANGE_SLACK and max(row) <= 1 + _RANGE_SLACK and abs(sum(row) - 1) <= _SUM_SLACK):
        raise ModelError(_NOT_PROBABILITIES)
    return [round(score * _SCALE) / _SCALE for score in row]


@dataclass(frozen=True)
class Prediction:
    """The model's verdict on one text: the best tag, its probability, and every class's probability, each a
    plain float rounded to :data:`SCORE_DECIMALS` (:func:`published_scores`); the best tag is the most probable
    before rounding."""

    tag: str
    confidence: float
    scores: dict[str, float]


class Classifier:
    """A checked ONNX text classifier: ``predict`` a batch of texts into tags with confidences."""

    def __init__(self, session: Any, card: dict[str, Any], threshold: float | None = None) -> None:
        self._session = session
        self._card = card
        self._classes: tuple[str, ...] = tuple(card["classes"])
        self._version = str(card["version"])
        # The card's threshold is the one the export validated at the target precision; an override applies to
        # every model the worker ever serves, retrained ones included, so it may only raise it (decision 0108).
        self._threshold = max(float(card["threshold"]), threshold if threshold is not None else 0.0)
        if threshold is not None and threshold < self._threshold:
            log.warning(
                "review threshold %.4f is below model %s's validated %.4f: serving %.4f",
                threshold, self._version, self._threshold, self._threshold,
            )  # fmt: skip
        self._input = str(card["input"]["name"])
        self._outputs = [str(card["outputs"]["probabilities"])]

    @property
    def version(self) -> str:
        """The model's version: the first 12 hex digits of ``model.onnx``'s sha256."""
        return self._version

    @property
    def threshold(self) -> float:
        """Confidence below which a prediction goes to review: the card's, or the override if that is higher."""
        return self._threshold

    @property
    def card_threshold(self) -> float:
        """The card's threshold, which the drift reference's below-threshold share was measured at."""
        return float(self.card["threshold"])

    @property
    def card(self) -> dict[str, Any]:
        """The model card ``model.json`` as read at load time."""
        return self._card

    @property
    def classes(self) -> tuple[str, ...]:
        """The tags the model can emit, in the order of its probability columns."""
        return self._classes

    @classmethod
    def load(cls, model_dir: Path, threshold: float | None = None) -> Classifier:
        """Load ``model.onnx`` after checking it against ``model.json``; raises :class:`ModelError`. onnxruntime
        loads the bytes that were hashed, and a model whose tensors are kept in other files is refused: what serves is
        what the card's sha256 names."""
        import onnxruntime as ort  # imported here: loading it costs time nobody needs at import

        model_path, card_path = Path(model_dir) / "model.onnx", Path(model_dir) / "model.json"
        card = read_card(card_path)
        classes: list[str] = card["classes"]
        if not model_path.is_file():
            raise ModelError(f"no model at {model_path}; run `python -m model_export`")
        try:
            # Read once: onnxruntime loads these very bytes, so a file replaced after the hash is not what serves.
            model_bytes = read_model(model_path)
        except OSError as error:  # unreadable: permissions, a disk error, a special file behind a symlink
            raise ModelError(f"cannot read {model_path}: {error}") from error
        actual = hashlib.sha256(model_bytes).hexdigest()
        if actual != card["sha256"]["model"]:
            raise ModelError(
                f"{model_path} does not match its card (sha256 {actual[:12]}…): refusing to serve it", "tampered"
            )
        if card["version"] != actual[:12]:
            # Records, counts and the registry's decisions name a model by its version: one that is not its bytes'
            # would take another model's place in them.
            message = f"{model_path} is version {actual[:12]}, but its card says {card['version']!r:.40}"
            raise ModelError(message, "tampered")
        unapproved = sorted(set(classes) - set(APPROVED_TAGS))
        if unapproved or not classes:
            raise ModelError(f"the model's classes include tags that are not approved: {unapproved}", "not_approved")
        try:
            external, used = has_external_data(model_bytes), operators(model_bytes)
        except ValueError as error:
            raise ModelError(f"{model_path} is not an ONNX model: {error}") from error
        if external:
            # Another file's bytes would weigh in on every answer, and its sha256 is in no card.
            message = f"{model_path} keeps tensors in other files (external data), which its sha256 does not cover"
            raise ModelError(message, "tampered")
        foreign = sorted(f"{domain}:{op}" if domain else op for domain, op in used - SERVED_OPERATORS)
        if foreign:
            # A loop, a branch or an operator of another library can take any time on some batch and none on the
            # probe's: the exporter's operators take time in proportion to the texts.
            raise ModelError(f"{model_path} runs operators the exporter never writes: {foreign!r:.200}", "not_approved")
        options = ort.SessionOptions()
        # One thread each: the worker batches, and the second core is better spent on Kafka I/O.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # Memory patterns are planned and kept per input shape, and batch sizes vary (1 to batch_size): off, the
        # worker holds less memory at the same speed (decision 0105).
        options.enable_mem_pattern = False
        try:
            session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for corrupt files
            raise ModelError(f"onnxruntime cannot load {model_path}: {error}") from error
        # The card's classes are only a copy; the model's own metadata (covered by the hash) is the truth.
        try:
            model_classes = json.loads(session.get_modelmeta().custom_metadata_map.get(CLASSES_METADATA_KEY, "null"))
        except (ValueError, RecursionError) as error:
            raise ModelError(f"the model's class metadata is not JSON: {error!r:.200}") from error
        if model_classes != classes:
            raise ModelError(f"the card's classes {classes} are not the model's {model_classes!r:.200}")
        missing = sorted(set(APPROVED_TAGS) - set(classes))
        if missing or len(classes) != len(APPROVED_TAGS):
            # Every tagged and review record has a score for each approved tag (the output schemas require them).
            message = f"the model's classes must be the approved tags, each once: {classes} lacks {missing}"
            raise ModelError(message, "not_approved")
        names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        if card["input"]["name"] not in names[0] or card["outputs"]["probabilities"] not in names[1]:
            raise ModelError(f"the card's input/output names do not match the model's {names}")
        classifier = cls(session, card, threshold)
        classifier.probe()
        return classifier

    def probe(self) -> None:
        """Classify :data:`PROBE_TEXTS` as a batch, and one of them alone, and raise :class:`ModelError` unless the
        model gives each a probability per class (:func:`published_scores`): a model that fails on its first batch
        must be refused here, not stop the worker there. One text is a run of its own (:meth:`predict_one`), and a
        worker under light load sends nothing else."""
        try:
            self.predict(PROBE_TEXTS)
            self.predict_one(PROBE_TEXTS[0])
        except ModelError:
            raise
        except Exception as error:  # onnxruntime raises its own untyped errors for a graph that cannot run
            raise ModelError(f"model {self._version} cannot classify: {error!r:.200}") from error

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Classify a batch of texts, each already passed through :func:`event_text`."""
        if len(texts) == 1:
            return [self.predict_one(texts[0])]
        if not texts:
            return []
        probabilities = run_in_length_groups(self._session, self._input, self._outputs, texts, len(self._classes))
        classes = self._classes
        # Python floats via tolist() once per batch: float() and round() per score cost more per message.
        rows, bests = published_scores(probabilities).tolist(), probabilities.argmax(axis=1).tolist()
        return [
            Prediction(classes[best], row[best], dict(zip(classes, row, strict=True)))
            for row, best in zip(rows, bests, strict=True)
        ]

    def predict_one(self, text: str) -> Prediction:
        """Classify one text: what :meth:`predict` does with a batch of one, with less Python around the run.

        A worker under light load calls the model one message at a time, and then Python's share of the call
        counts (decision 0104): no length groups (one text is always one group), the [1, 1] feed built directly,
        and the one row's best class found on a Python list instead of through numpy.
        """
        rows = run_model(self._session, self._outputs, {self._input: np.array([[text]], dtype=object)}).tolist()
        if len(rows) != 1 or len(rows[0]) != len(self._classes):
            raise ModelError(_WRONG_SHAPE.format(f"[{len(rows)}, ...]", 1, len(self._classes)))
        row = rows[0]
        best = row.index(max(row))  # the first of equal maxima, as numpy's argmax picks
        row = published_row(row)
        classes = self._classes
        return Prediction(classes[best], row[best], dict(zip(classes, row, strict=True)))


MAX_CARD_BYTES: Final = 16 * 1024 * 1024
"""Largest model card read (a real one is tens of kB): a larger file is refused rather than read into memory."""


def read_card(card_path: Path) -> dict[str, Any]:
    """The model card at ``card_path``, with every field the worker relies on checked; raises :class:`ModelError`.

    The card is as hostile as any file: whatever it holds, the answer is a card or a :class:`ModelError`, never
    another exception (a candidate or registry version is refused on one, and the worker goes on).
    """
    try:
        with open_regular(card_path) as handle:
            raw = handle.read(MAX_CARD_BYTES + 1)
        if len(raw) > MAX_CARD_BYTES:
            raise ValueError(f"more than {MAX_CARD_BYTES} bytes")
        card = json.loads(raw)
    except (OSError, ValueError, RecursionError) as error:  # RecursionError: JSON nested too deeply
        raise ModelError(f"cannot read the model card {card_path}: {error!r:.200}") from error
    problem = card_problem(card)
    if problem is not None:
        raise ModelError(f"the model card {card_path} is malformed: {problem}")
    try:
        Reference.from_card(card)  # a model the pipeline cannot swap in is refused here, not when it is promoted
    except ModelError as error:
        raise ModelError(f"the model card {card_path} is malformed: {error}") from error
    return cast(dict[str, Any], card)


def card_problem(card: Any) -> str | None:
    """What makes a parsed card unusable (its fields' types and ranges), or None; hashes and classes are checked
    against the model by :meth:`Classifier.load`."""
    if not isinstance(card, dict):
        return "it is not a JSON object"
    for path in (("version",), ("sha256", "model"), ("input", "name"), ("outputs", "probabilities")):
        value: Any = card
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, str) or not value:
            return f"{'.'.join(path)} is not a string: {value!r:.60}"
    classes = card.get("classes")
    if not isinstance(classes, list) or not all(isinstance(tag, str) for tag in classes):
        return f"classes is not a list of strings: {classes!r:.200}"
    threshold = card.get("threshold")
    # Written so that NaN fails too: with a NaN threshold no confidence is below it, and nothing goes to review.
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        return f"threshold {threshold!r:.60} is not a number from 0 to 1"
    # The precision retrain trigger compares with it: a string turned the trigger off, NaN fired it at once.
    target = card.get("target_precision")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1):
        return f"target_precision {target!r:.60} is not a number above 0 and at most 1"
    return None


SHORT_TEXT_CHARS = 256
"""Texts up to this length run together; longer ones with texts of about their own length."""
RUN_CHARS = 64 * SHORT_TEXT_CHARS
"""Characters one onnxruntime call holds at most, padding included (unless one text is longer)."""


def run_in_length_groups(session: Any, input_name: str, outputs: list[str], texts: Sequence[str], width: int) -> Any:
    """The [len(texts), width] probabilities ``session`` gives ``texts`` (at least one), run a
    :func:`length_groups` group at a time."""
    groups = length_groups(texts)
    if len(groups) == 1:  # the usual batch: no copies
        feed = np.asarray(texts, dtype=object).reshape(-1, 1)
        return _shaped(run_model(session, outputs, {input_name: feed}), len(texts), width)
    probabilities = np.empty((len(texts), width), dtype=np.float32)
    for rows in groups:
        feed = np.asarray([texts[i] for i in rows], dtype=object).reshape(-1, 1)
        probabilities[rows] = _shaped(run_model(session, outputs, {input_name: feed}), len(rows), width)
    return probabilities


def run_model(session: Any, outputs: list[str], feed: dict[str, Any]) -> Any:
    """The first of ``outputs`` that ``session`` gives for ``feed``; :class:`ModelError` if it cannot run it. A model
    that passed its probe at load can still fail on a batch of another size or text (a candidate's graph is as
    hostile as its card), and the caller decides what a failure means: a shadow or a canary is dropped, the live
    model stops the worker."""
    try:
        return session.run(outputs, feed)[0]
    except Exception as error:  # onnxruntime raises its own untyped errors for a graph that cannot run
        texts = sum(len(value) for value in feed.values())
        raise ModelError(f"the model cannot classify a batch of {texts} texts: {error!r:.200}") from error


def _shaped(probabilities: Any, rows: int, width: int) -> Any:
    """``probabilities`` if it is shaped [rows, width]; else :class:`ModelError` (a model's output is hostile)."""
    if probabilities.shape != (rows, width):
        raise ModelError(_WRONG_SHAPE.format(probabilities.shape, rows, width))
    return probabilities


def length_groups(texts: Sequence[str]) -> list[list[int]]:
    """Indexes of ``texts`` in groups that run together: no text with one more than about twice its length,
    and at most RUN_CHARS characters (padded) in a group.

    The graph pads every row of a batch to its longest text, and its intermediate tensors grow with the
    padded size: one 20,000-character description among 63 titles would make the whole batch cost (in time
    and memory) as much as 64 long texts.
    """
    longest = max(map(len, texts), default=0)
    if longest < SHORT_TEXT_CHARS and len(texts) * max(longest, 1) <= RUN_CHARS:
        return [list(range(len(texts)))]
    by_length: dict[int, list[int]] = {}
    for index, text in enumerate(texts):
        by_length.setdefault(max(len(text), SHORT_TEXT_CHARS - 1).bit_length(), []).append(index)
    groups = []
    for indexes in by_length.values():
        width = max(max(len(texts[i]) for i in indexes), 1)
        size = max(RUN_CHARS // width, 1)
        groups += [indexes[start : start + size] for start in range(0, len(indexes), size)]
    return groups
