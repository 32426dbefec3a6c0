"""The model card ``model.json``: what the model is, how good it is, and the reference for drift monitoring."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from stream_app import APPROVED_TAGS
from stream_app.classifier import published_confidences

CONFIDENCE_BIN_EDGES: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
"""Fixed bins of the max-confidence histogram; the worker's confidence histogram uses the same edges."""
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy")


def reference(
    probabilities: np.ndarray, classes: Sequence[str], threshold: float, split: str = "train, out of fold"
) -> dict[str, Any]:
    """Confidence histogram, predicted-tag shares and share below the threshold of held-out predictions.

    The exporter passes the out-of-fold predictions over the training split: they come from models that did
    not see those texts, like live traffic, and at 5x the validation split's size they are a steadier
    reference (sampling noise alone puts the PSI of 115 events near 0.1).
    """
    confidence = published_confidences(probabilities)
    counts, _ = np.histogram(np.clip(confidence, 0.0, 1.0), bins=np.asarray(CONFIDENCE_BIN_EDGES))
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    return {
        "split": split,
        "count": int(len(confidence)),
        "confidence_bin_edges": list(CONFIDENCE_BIN_EDGES),
        "confidence_shares": (counts / counts.sum()).tolist(),
        "tag_shares": {tag: float((predicted == tag).mean()) for tag in APPROVED_TAGS},
        "below_threshold_share": float((confidence < threshold).mean()),
    }


def build_card(
    *,
    model_bytes: bytes,
    data_sha256: str,
    classes: Sequence[str],
    threshold: float,
    target_precision: float,
    params: dict[str, Any],
    evaluation: dict[str, Any],
    reference_distribution: dict[str, Any],
    parity: dict[str, Any],
    io: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Everything the worker and the people running it need to know about one exported model."""
    model_sha = hashlib.sha256(model_bytes).hexdigest()
    return {
        "name": "content-tagger",
        "version": model_sha[:12],
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "classes": list(classes),
        "approved_tags": list(APPROVED_TAGS),
        "threshold": threshold,
        "target_precision": target_precision,
        "input": {**io["input"], "text": "stream_app.classifier.event_text(title, description)"},
        "outputs": {
            "probabilities": io["probabilities"]["name"],
            "shapes": {"probabilities": io["probabilities"]["shape"]},
            "types": {"probabilities": io["probabilities"]["type"]},
        },
        "hyperparameters": params,
        "evaluation": evaluation,
        "reference": reference_distribution,
        "parity": parity,
        "sha256": {"model": model_sha, "training_data": data_sha256},
        "libraries": {name: metadata.version(name) for name in LIBRARIES},
    }


def write_model(out: Path, model_bytes: bytes, model_card: dict[str, Any]) -> None:
    """Write ``model.onnx`` and then its card ``model.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(model_bytes)
    (out / "model.json").write_text(json.dumps(model_card, indent=2) + "\n", encoding="utf-8")
