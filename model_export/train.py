"""Split, search hyper-parameters on the training split, and pick the review threshold out of fold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import FeatureUnion, Pipeline

from model_export.data import Example
from stream_app.classifier import SCORE_DECIMALS, event_text, published_confidences
from stream_app.errors import TaggerError

# Chosen to convert to ONNX exactly: text is case-folded by event_text (no lower-casing in the graph), words
# are matched by an explicit pattern that RE2 reads as Python does (the default one is a Unicode \w class),
# linear tf, no char_wb.
WORD_TOKEN_PATTERN = r"[a-z0-9]+"  # noqa: S105 - a regular expression, not a secret
OUT_OF_FOLD_SPLITS: Final = 10
"""Folds of the out-of-fold probabilities the review threshold is chosen on (and the card's drift reference is made
from). Each fold's model learns from nine tenths of the training rows, so its confidences are nearer the served
model's, trained on all of them, than five folds' (decision 0119)."""
# class_weight=None scored below "balanced" at every point of an earlier search (docs/decisions/0101).
PARAM_GRID: dict[str, list[Any]] = {
    "model__C": [10.0, 30.0],
    "model__class_weight": ["balanced"],
    "features__word__ngram_range": [(1, 1), (1, 2)],
    "features__char__ngram_range": [(2, 4), (3, 4)],
}
FAST_PARAM_GRID: dict[str, list[Any]] = {
    "model__C": [30.0],
    "model__class_weight": ["balanced"],
    "features__word__ngram_range": [(1, 1)],
    "features__char__ngram_range": [(3, 4)],
}
"""One point of PARAM_GRID: the same pipeline searched over nothing, for tests."""


class OccurrenceTfidfVectorizer(TfidfVectorizer):  # type: ignore[misc]  # scikit-learn is untyped
    """TF-IDF whose rows are divided by ``sqrt(sum_j count_j * idf_j^2)``: the l2 norm the row would have if
    every occurrence of an n-gram were a column of its own, and the l2 norm itself when no n-gram repeats.

    Every feature is then a sum over the text's n-gram occurrences, so the exported graph computes it with
    one table lookup per occurrence and no column per vocabulary entry (export.sparse_graph); the exact l2
    norm needs each n-gram's count squared, which such a graph cannot form. Pass ``norm=None``.
    """

    def fit_transform(self, raw_documents: Any, y: Any = None) -> Any:
        """Learn the vocabulary and idf; return the normalised matrix."""
        return self._normalise(super().fit_transform(raw_documents, y))

    def transform(self, raw_documents: Any) -> Any:
        """The normalised TF-IDF matrix of ``raw_documents``."""
        return self._normalise(super().transform(raw_documents))

    def _normalise(self, matrix: Any) -> Any:
        squared = np.asarray(matrix @ self.idf_).ravel()  # sum_j count_j * idf_j * idf_j
        scale = np.divide(1.0, np.sqrt(squared), out=np.zeros_like(squared), where=squared > 0)
        return matrix.multiply(scale[:, None]).tocsr()


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


def title_only(split: Split) -> Split:
    """``split`` with its descriptions removed: the data has none empty, so this stands in for items that come
    without one (the card's ``test_title_only``)."""
    return to_split([replace(e, description="") for e in split.examples])


def build_pipeline(c: float = 30.0) -> Pipeline:
    """TF-IDF word (1) and character (3-4) n-grams, each normalised by :class:`OccurrenceTfidfVectorizer`,
    feeding a logistic regression (class weights balanced).

    The exporter searches ``C``, ``class_weight`` and the n-gram lengths (PARAM_GRID); ``set_params`` rebuilds
    any searched point.
    """
    vectorizer: dict[str, Any] = {"lowercase": False, "norm": None}
    features = FeatureUnion(
        [
            ("word", OccurrenceTfidfVectorizer(**vectorizer, token_pattern=WORD_TOKEN_PATTERN, ngram_range=(1, 1))),
            ("char", OccurrenceTfidfVectorizer(**vectorizer, analyzer="char", ngram_range=(3, 4), min_df=2)),
        ]
    )
    # newton-cg: about 10x faster than the default lbfgs on these 20k sparse columns, and converges tighter.
    model = LogisticRegression(C=c, class_weight="balanced", solver="newton-cg", max_iter=1000)
    return Pipeline([("features", features), ("model", model)])


def lookups_per_text(pipeline: Pipeline, texts: list[str]) -> float:
    """Mean table lookups the exported graph makes per text: one per token and one per n-gram occurrence.

    The ONNX cost of a candidate: the graph's work grows with the occurrences, not with the vocabulary.
    """
    total = 0
    for _, block in pipeline.named_steps["features"].transformer_list:
        low, high = block.ngram_range
        tokenize = (lambda text: text) if block.analyzer == "char" else block.build_tokenizer()
        for text in texts:
            tokens = len(tokenize(text))
            total += tokens + sum(max(tokens - n + 1, 0) for n in range(low, high + 1))
    return total / max(len(texts), 1)


def search(
    train: Split, seed: int, grid: dict[str, list[Any]]
) -> tuple[Pipeline, dict[str, Any], float, list[dict[str, Any]]]:
    """Cross-validated grid search on the training split only: the chosen pipeline (refitted), its parameters
    and mean weighted precision, and every candidate's scores and cost.

    The chosen point is the cheapest to run (:func:`lookups_per_text`) among those whose mean weighted
    precision is within one standard error of the best mean: differences smaller than that are fold noise.
    """
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    texts = np.asarray(train.texts, dtype=object)
    searcher = GridSearchCV(build_pipeline(), grid, cv=folds, scoring="precision_weighted", n_jobs=1, refit=False)
    searcher.fit(texts, train.labels)
    results = searcher.cv_results_
    means, errors = results["mean_test_score"], results["std_test_score"] / np.sqrt(folds.get_n_splits())
    costs = [lookups_per_text(build_pipeline().set_params(**params), train.texts) for params in results["params"]]
    chosen = cheapest_within_one_error(means, errors, costs)
    params = dict(results["params"][chosen])
    pipeline = build_pipeline().set_params(**params).fit(texts, train.labels)
    candidates = [
        {"params": p, "cv_weighted_precision": float(m), "standard_error": float(e), "lookups_per_text": c}
        for p, m, e, c in zip(results["params"], means, errors, costs, strict=True)
    ]
    return pipeline, params, float(means[chosen]), candidates


class ThresholdError(TaggerError):
    """No review threshold keeps auto-tagged precision at the target."""


def cheapest_within_one_error(means: Sequence[float], errors: Sequence[float], costs: Sequence[float]) -> int:
    """Index of the cheapest candidate whose mean score is at least the best mean minus the best's standard
    error; among equally cheap ones the best scoring, then the first."""
    best = int(np.argmax(means))
    eligible = [i for i, mean in enumerate(means) if mean >= means[best] - errors[best]]
    return min(eligible, key=lambda i: (costs[i], -means[i], i))


def out_of_fold(pipeline: Pipeline, train: Split, seed: int, folds: int | None = None) -> np.ndarray:
    """Out-of-fold class probabilities over the training split (columns in ``pipeline.classes_`` order), from
    ``folds`` folds (:data:`OUT_OF_FOLD_SPLITS` by default)."""
    splitter = StratifiedKFold(n_splits=folds or OUT_OF_FOLD_SPLITS, shuffle=True, random_state=seed)
    texts = np.asarray(train.texts, dtype=object)
    return np.asarray(cross_val_predict(pipeline, texts, train.labels, cv=splitter, method="predict_proba"))


def choose_threshold(probabilities: np.ndarray, labels: list[str], classes: list[str], target: float) -> float:
    """The lowest confidence threshold at which auto-tagged precision stays at or above ``target``, on the grid of
    confidences the worker compares it with (:data:`~stream_app.classifier.SCORE_DECIMALS` decimals); raises
    :class:`ThresholdError` when no threshold up to 1 can.

    "Stays": precision must hold for this threshold and every higher one, so a lucky dip in a noisy curve
    cannot pick a threshold that is only just above the target by chance.
    """
    confidence = published_confidences(probabilities)
    correct = np.asarray(classes)[probabilities.argmax(axis=1)] == np.asarray(labels)
    order = np.argsort(-confidence, kind="stable")
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    failing = np.nonzero(precision < target)[0]
    if len(failing) == 0:
        return float(confidence.min())  # on the grid already
    scale = 10**SCORE_DECIMALS
    # The worker auto-tags a confidence, rounded to the grid, at or above the threshold: the one just above the
    # first failing item's rounded confidence keeps that item, and every one below it, in review.
    first_fail = float(confidence[order][int(failing[0])])
    threshold = (round(first_fail * scale) + 1) / scale
    if threshold > 1.0:
        raise ThresholdError(
            f"the out-of-fold prediction at confidence {first_fail:.7f} is wrong, and no threshold up to 1 keeps it "
            f"out of the auto-tagged at {target} precision: check the labels of the most confidently mispredicted texts"
        )
    return threshold
