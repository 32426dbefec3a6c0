"""Serving side of the model: the shared text function and the ONNX classifier the worker runs.

Nothing here imports scikit-learn or unpickles anything: the worker loads only ``model.onnx`` and its JSON
card ``model.json``, and refuses a model whose hash or classes do not match the card and the approved tags.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream_app import APPROVED_TAGS
from stream_app.errors import ModelError

_WHITESPACE = re.compile(r"\s+")


def event_text(title: str, description: str | None) -> str:
    """The model's input for an event: title and description, NFKC-normalised, case-folded, whitespace collapsed.

    Training and serving both call this, so the ONNX graph sees exactly the text the model was fitted on;
    case-folding here rather than in the graph avoids the converter's locale-dependent lower-casing.
    """
    text = f"{title} {description or ''}"
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Prediction:
    """The model's verdict on one text."""

    tag: str
    confidence: float
    scores: dict[str, float]


class Classifier:
    """A checked ONNX text classifier: ``predict`` a batch of texts into tags with confidences."""

    def __init__(self, session: Any, card: dict[str, Any], threshold: float | None = None) -> None:
        self._session = session
        self.card = card
        self.classes: tuple[str, ...] = tuple(card["classes"])
        self.version: str = str(card["version"])
        self.threshold: float = float(card["threshold"] if threshold is None else threshold)
        self._input = str(card["input"]["name"])
        self._output = str(card["outputs"]["probabilities"])

    @classmethod
    def load(cls, model_dir: Path, threshold: float | None = None) -> Classifier:
        """Load ``model.onnx`` after checking it against ``model.json``; raises :class:`ModelError`."""
        import onnxruntime as ort  # imported here: loading it costs time nobody needs at import

        model_path, card_path = Path(model_dir) / "model.onnx", Path(model_dir) / "model.json"
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot read the model card {card_path}: {error}") from error
        if not model_path.is_file():
            raise ModelError(f"no model at {model_path}; run `python -m model_export`")
        actual = sha256_file(model_path)
        if actual != card.get("sha256", {}).get("model"):
            raise ModelError(f"{model_path} does not match its card (sha256 {actual[:12]}…): refusing to serve it")
        unapproved = sorted(set(card.get("classes", [])) - set(APPROVED_TAGS))
        if unapproved or not card.get("classes"):
            raise ModelError(f"the model's classes include tags that are not approved: {unapproved}")
        options = ort.SessionOptions()
        # One thread each: the worker batches, and a second core is better spent on Kafka I/O.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for corrupt files
            raise ModelError(f"onnxruntime cannot load {model_path}: {error}") from error
        return cls(session, card, threshold)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Classify a batch of texts (already passed through :func:`event_text`)."""
        if not texts:
            return []
        feed = np.asarray(texts, dtype=object).reshape(-1, 1)
        probabilities = self._session.run([self._output], {self._input: feed})[0]
        best = probabilities.argmax(axis=1)
        classes = self.classes
        return [
            Prediction(
                tag=classes[index],
                confidence=float(row[index]),
                scores={tag: float(p) for tag, p in zip(classes, row, strict=True)},
            )
            for row, index in zip(probabilities, best, strict=True)
        ]
