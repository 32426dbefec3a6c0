"""Evaluation on held-out data: overall, per class, by slice, confusion, and precision against coverage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from model_export.data import Example
from stream_app.classifier import published_confidences

COVERAGE_LEVELS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5)
"""Shares auto-tagged at which precision is reported, the least confident going to review."""


def scores(labels: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Weighted and per-class precision, recall and F1."""
    weighted = precision_recall_fscore_support(labels, predicted, average="weighted", zero_division=0)
    per_class = precision_recall_fscore_support(labels, predicted, labels=list(classes), zero_division=0)
    return {
        "count": len(labels),
        "precision": float(weighted[0]),
        "recall": float(weighted[1]),
        "f1": float(weighted[2]),
        "per_class": {
            tag: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for tag, p, r, f, s in zip(classes, *per_class, strict=True)
        },
    }


def precision_vs_coverage(
    confidence: np.ndarray, correct: np.ndarray, levels: Sequence[float] = COVERAGE_LEVELS
) -> list[dict[str, float]]:
    """Precision of the auto-tagged share when the least confident predictions go to review.

    For each coverage level, the most confident ``level`` share is kept; ``threshold`` is the lowest
    confidence kept, i.e. the review threshold that would give that coverage.
    """
    order = np.argsort(-confidence, kind="stable")
    curve = []
    for level in levels:
        kept = order[: max(1, round(level * len(order)))]
        curve.append(
            {
                "coverage": len(kept) / len(order),
                "threshold": float(confidence[kept[-1]]),
                "precision": float(correct[kept].mean()),
            }
        )
    return curve


def evaluate(
    examples: Sequence[Example], probabilities: np.ndarray, classes: Sequence[str], threshold: float
) -> dict[str, Any]:
    """Everything the card reports about a held-out split."""
    labels = [e.tag for e in examples]
    predicted = [classes[i] for i in probabilities.argmax(axis=1)]
    confidence = published_confidences(probabilities)
    correct = np.asarray(predicted) == np.asarray(labels)
    slices = {
        "short_title": [len(e.title.split()) < 5 for e in examples],
        "empty_description": [not e.description.strip() for e in examples],
        **{f"tag={tag}": [e.tag == tag for e in examples] for tag in classes},
    }
    slice_scores = {}
    for name, mask in slices.items():
        chosen = np.asarray(mask)
        if chosen.any():
            slice_scores[name] = {
                "count": int(chosen.sum()),
                "accuracy": float(correct[chosen].mean()),
                "precision": scores(np.asarray(labels)[chosen], np.asarray(predicted)[chosen], classes)["precision"],
            }
        else:
            slice_scores[name] = {"count": 0, "accuracy": None, "precision": None}
    auto = confidence >= threshold
    return {
        **scores(labels, predicted, classes),
        "confusion_matrix": {
            "labels": list(classes),
            "matrix": confusion_matrix(labels, predicted, labels=list(classes)).tolist(),
        },
        "slices": slice_scores,
        "precision_vs_coverage": precision_vs_coverage(confidence, correct),
        "at_threshold": {
            "threshold": threshold,
            "coverage": float(auto.mean()),
            "precision": float(correct[auto].mean()) if auto.any() else 1.0,
        },
    }


def render(name: str, report: dict[str, Any]) -> str:
    """A printable table of one evaluation."""
    lines = [
        f"{name}: n={report['count']} precision={report['precision']:.3f} recall={report['recall']:.3f} "
        f"f1={report['f1']:.3f}"
    ]
    lines.append(f"  {'class':<28} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>5}")
    for tag, row in report["per_class"].items():
        lines.append(
            f"  {tag:<28} {row['precision']:>6.3f} {row['recall']:>6.3f} {row['f1']:>6.3f} {row['support']:>5}"
        )
    lines.append(
        "  slices: "
        + ", ".join(f"{k} n={v['count']} acc={v['accuracy']:.3f}" for k, v in report["slices"].items() if v["count"])
    )
    lines.append(
        "  precision at coverage: "
        + ", ".join(
            f"{p['coverage']:.0%} (t={p['threshold']:.2f}) {p['precision']:.3f}"
            for p in report["precision_vs_coverage"]
        )
    )
    at = report["at_threshold"]
    lines.append(
        f"  at review threshold {at['threshold']:.3f}: coverage {at['coverage']:.3f}, precision {at['precision']:.3f}"
    )
    lines.append(
        f"  confusion (rows true, cols predicted, {report['confusion_matrix']['labels']}): "
        f"{report['confusion_matrix']['matrix']}"
    )
    return "\n".join(lines)
