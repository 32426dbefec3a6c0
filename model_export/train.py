"""Split, search hyper-parameters on the training split, and pick the review threshold out of fold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from skl2onnx.sklapi import TraceableTfidfVectorizer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import FeatureUnion, Pipeline

from model_export.data import Example
from stream_app.classifier import event_text

# Chosen to convert to ONNX exactly: text is case-folded by event_text (no converter lower-casing), words are
# matched by an explicit pattern (the default one becomes an ASCII class in ONNX), no sublinear_tf, no
# char_wb, and the word vectorizer is traceable so n-grams survive vocabulary pruning.
WORD_TOKEN_PATTERN = r"[a-z0-9]+"  # noqa: S105 - a regular expression, not a secret
PARAM_GRID: dict[str, list[Any]] = {"model__C": [3.0, 10.0, 30.0, 100.0], "model__class_weight": ["balanced", None]}
FAST_PARAM_GRID: dict[str, list[Any]] = {"model__C": [30.0], "model__class_weight": ["balanced"]}
"""One point of PARAM_GRID: the same pipeline searched over nothing, for tests."""


@dataclass(frozen=True)
class Split:
    """Texts and labels of one split."""

    texts: list[str]
    labels: list[str]
    examples: list[Example]


def split(examples: list[Example], seed: int) -> tuple[Split, Split, Split]:
    """Stratified 70 / 15 / 15 train / validation / test split with a fixed seed."""
    train, rest = train_test_split(examples, test_size=0.3, stratify=[e.tag for e in examples], random_state=seed)
    validation, test = train_test_split(rest, test_size=0.5, stratify=[e.tag for e in rest], random_state=seed)
    return to_split(train), to_split(validation), to_split(test)


def to_split(examples: list[Example]) -> Split:
    """Model inputs (through the serving text function) and labels of ``examples``."""
    return Split([event_text(e.title, e.description) for e in examples], [e.tag for e in examples], list(examples))


def build_pipeline(c: float = 30.0) -> Pipeline:
    """TF-IDF word (1-2) and character (2-4) n-grams feeding a logistic regression (class weights balanced).

    The exporter searches ``C`` and ``class_weight`` (PARAM_GRID); ``set_params`` rebuilds any searched point.
    """
    features = FeatureUnion(
        [
            ("word", TraceableTfidfVectorizer(lowercase=False, token_pattern=WORD_TOKEN_PATTERN, ngram_range=(1, 2))),
            ("char", TfidfVectorizer(lowercase=False, analyzer="char", ngram_range=(2, 4), min_df=2)),
        ]
    )
    # newton-cg: about 10x faster than the default lbfgs on these 20k sparse columns, and converges tighter.
    model = LogisticRegression(C=c, class_weight="balanced", solver="newton-cg", max_iter=1000)
    return Pipeline([("features", features), ("model", model)])


def search(train: Split, seed: int, grid: dict[str, list[Any]]) -> tuple[Pipeline, dict[str, Any], float]:
    """Cross-validated grid search on the training split only; returns the refitted best pipeline."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    searcher = GridSearchCV(build_pipeline(), grid, cv=folds, scoring="precision_weighted", n_jobs=1)
    searcher.fit(np.asarray(train.texts, dtype=object), train.labels)
    return searcher.best_estimator_, dict(searcher.best_params_), float(searcher.best_score_)


def out_of_fold(pipeline: Pipeline, train: Split, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities over the training split (columns in ``pipeline.classes_`` order)."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    texts = np.asarray(train.texts, dtype=object)
    return np.asarray(cross_val_predict(pipeline, texts, train.labels, cv=folds, method="predict_proba"))


def choose_threshold(probabilities: np.ndarray, labels: list[str], classes: list[str], target: float) -> float:
    """The lowest confidence threshold at which auto-tagged precision stays at or above ``target``.

    "Stays": precision must hold for this threshold and every higher one, so a lucky dip in a noisy curve
    cannot pick a threshold that is only just above the target by chance.
    """
    confidence = probabilities.max(axis=1)
    correct = np.asarray(classes)[probabilities.argmax(axis=1)] == np.asarray(labels)
    order = np.argsort(-confidence, kind="stable")
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    failing = np.nonzero(precision < target)[0]
    if len(failing) == 0:
        return float(confidence.min())
    first_fail = int(failing[0])
    if first_fail == 0:
        return 1.0  # even the most confident prediction is wrong: everything goes to review
    # Any threshold above the first failing item's confidence keeps precision >= target.
    return float(np.nextafter(confidence[order][first_fail], 1.0))
