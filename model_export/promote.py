"""The offline half of guarded promotion: compare a candidate with the live model on the same held-out data.

Both models are scored on the dataset's fixed test split and on the feedback holdout (decisions never trained
on). :func:`not_worse` is the one rule that decides; its figures go into the candidate's card under
``promotion``, and the worker refuses a candidate whose card does not say it passed against the model it serves.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from sklearn.metrics import precision_score

from model_export.data import Example, copies_of_held_rows
from stream_app.classifier import published_confidences
from stream_app.errors import ConfigError

ITEMS_OF_SLACK: Final = 2
"""How many test items' worth a candidate's test precisions may be lower and still count as not worse: below
one standard error of either precision on the ~115 test rows (about three items), so the gate refuses real
losses and not the noise of which rows a retrain happens to flip (docs/decisions/0305)."""
HOLDOUT_SHARE: Final = 5
"""One feedback decision in this many (by a keyed hash of its id) is held out of training to judge candidates."""
HOLDOUT_KEY_FILE: Final = "holdout.key"
"""The holdout key's file, beside the labelled store unless ``--holdout-key`` names another."""
HOLDOUT_KEY_BYTES: Final = 32


@dataclass(frozen=True)
class Scores:
    """One model on the held-out data."""

    test_weighted_precision: float
    test_precision_at_threshold: float
    test_coverage: float
    feedback_accuracy: float | None
    feedback_count: int
    test_auto_tagged: int
    """Test items at or above the model's threshold."""
    weighted_precision_per_item: float
    """The most one changed prediction of this model on the test split lowers its weighted precision."""


def holdout_key(path: Path) -> bytes:
    """The key of the feedback holdout kept at ``path``, made once (random bytes, readable by the owner only) when
    the file is missing; raises :class:`ConfigError` for a file too short to be one.

    Whoever can write labels but not read this key cannot tell which of them will judge the next candidate."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(secrets.token_bytes(HOLDOUT_KEY_BYTES))
        try:
            os.link(staging, path)  # fails if another run made the key meanwhile: that one stands
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    key = path.read_bytes()
    if len(key) < 16:
        raise ConfigError(f"holdout key {path} has {len(key)} bytes; remove it to make a new one")
    return key


def in_feedback_holdout(example_id: str, key: bytes) -> bool:
    """Whether a feedback decision is held out of training: a hash of its id keyed by :func:`holdout_key`, so
    stable across runs with one key and unpredictable without it."""
    digest = hashlib.blake2b(example_id.encode(), digest_size=8, key=key[:64]).digest()
    return int.from_bytes(digest, "big") % HOLDOUT_SHARE == 0


@dataclass(frozen=True)
class FeedbackSplit:
    """People's decisions as a training run uses them."""

    learned: list[Example]
    """Trained on."""
    holdout: list[Example]
    """Held out to judge candidates with (:func:`in_feedback_holdout`)."""
    ignored: int
    """Neither: they name or copy a validation or test row, or copy a held-out decision."""


def split_feedback(feedback: Sequence[Example], held_rows: Sequence[Example], key: bytes) -> FeedbackSplit:
    """Split ``feedback`` into decisions to train on and decisions held out, keyed by a hash of their ids. A
    decision on one of ``held_rows`` (the validation and test rows), by its id or on a copy of it under another (its
    title in any case, width, order or one typo away), is neither; nor is a decision to train on that copies a
    held-out one (a title seen again under another id, a label given twice): trained on, it would put the row or
    the held-out decision into training, and the gate would judge the candidate on text it learned."""
    held_ids = {e.id for e in held_rows}
    copies = copies_of_held_rows(held_rows, feedback)
    usable = [e for n, e in enumerate(feedback) if n not in copies and e.id not in held_ids]
    holdout = [e for e in usable if in_feedback_holdout(e.id, key)]
    learned = [e for e in usable if not in_feedback_holdout(e.id, key)]
    # By title only: decisions on items of one product family often share its description ("Quuxify turns the X
    # into dashboards..."), and dropping every learned one that shares a held-out one's would leave nothing learned.
    leaks = copies_of_held_rows(holdout, learned, by_description=False)
    learned = [e for n, e in enumerate(learned) if n not in leaks]
    return FeedbackSplit(learned, holdout, len(feedback) - len(learned) - len(holdout))


def score(
    test: Sequence[Example],
    test_probabilities: np.ndarray,
    holdout: Sequence[Example],
    holdout_probabilities: np.ndarray,
    classes: Sequence[str],
    threshold: float,
) -> Scores:
    """Score one model from its probabilities on the test split and on the feedback holdout."""
    labels = np.asarray([e.tag for e in test])
    predicted = np.asarray([classes[i] for i in test_probabilities.argmax(axis=1)])
    confident = published_confidences(test_probabilities) >= threshold
    at_threshold = float((predicted[confident] == labels[confident]).mean()) if confident.any() else 0.0
    feedback_accuracy = None
    if holdout:
        said = np.asarray([classes[i] for i in holdout_probabilities.argmax(axis=1)])
        feedback_accuracy = float((said == np.asarray([e.tag for e in holdout])).mean())
    return Scores(
        test_weighted_precision=weighted_precision(labels, predicted, classes),
        test_precision_at_threshold=at_threshold,
        test_coverage=float(confident.mean()),
        feedback_accuracy=feedback_accuracy,
        feedback_count=len(holdout),
        test_auto_tagged=int(confident.sum()),
        weighted_precision_per_item=weighted_precision_per_item(labels, predicted, classes),
    )


def weighted_precision(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> float:
    """Precision per class weighted by the class's support in ``labels`` (scikit-learn's ``weighted``)."""
    return float(precision_score(labels, predicted, labels=list(classes), average="weighted", zero_division=0))


def weighted_precision_per_item(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> float:
    """The largest drop in weighted precision that changing one of ``predicted`` to another class makes."""
    if len(labels) == 0:
        return 0.0
    base = weighted_precision(labels, predicted, classes)
    support = {c: int((labels == c).sum()) for c in classes}
    said = {c: int((predicted == c).sum()) for c in classes}
    right = {c: int(((predicted == c) & (labels == c)).sum()) for c in classes}

    def total(said: dict[str, int], right: dict[str, int]) -> float:
        return sum(support[c] * right[c] / said[c] for c in classes if said[c]) / len(labels)

    drop = 0.0
    for label, old in {(str(a), str(b)) for a, b in zip(labels, predicted, strict=True)}:
        for new in classes:
            if new == old:
                continue
            changed_said = {**said, old: said[old] - 1, new: said[new] + 1}
            changed_right = {**right, old: right[old] - (label == old), new: right[new] + (label == new)}
            drop = max(drop, base - total(changed_said, changed_right))
    return drop


def tolerances(live: Scores, items: int = ITEMS_OF_SLACK) -> tuple[float, float]:
    """How much lower a candidate's test weighted precision and test precision at threshold may be than
    ``live``'s: what ``items`` changed predictions of the live model on the test split would cost it."""
    at_threshold = items / live.test_auto_tagged if live.test_auto_tagged else 0.0
    return items * live.weighted_precision_per_item, at_threshold


def coverage_tolerance(live: Scores) -> float:
    """How much lower a candidate's test coverage may be than ``live``'s: one standard error of the live coverage
    on the test split (about 4 items of 115 at 0.8), and at least :data:`ITEMS_OF_SLACK` items' worth. Which items
    a retrain happens to push under its threshold moves coverage more than it moves precision."""
    test_items = live.test_auto_tagged / live.test_coverage if live.test_coverage else 0.0
    if not test_items:
        return 1.0
    return max(ITEMS_OF_SLACK / test_items, math.sqrt(live.test_coverage * (1.0 - live.test_coverage) / test_items))


def not_worse(live: Scores, candidate: Scores) -> tuple[bool, list[str]]:
    """Whether ``candidate`` may replace ``live``, and why not.

    Not worse means all of: weighted precision on the test split at least the live model's minus
    :data:`ITEMS_OF_SLACK` test items' worth (:func:`tolerances`); precision of the auto-tagged test items (at
    each model's own threshold) at least the live model's minus as many auto-tagged items' worth; the share of
    test items auto-tagged at least the live model's minus one standard error (:func:`coverage_tolerance`: a
    candidate that sends most items to people is precise and useless); and, when there is a feedback holdout,
    accuracy on it at least the live model's.
    """
    reasons = []
    weighted_slack, threshold_slack = tolerances(live)
    coverage_slack = coverage_tolerance(live)
    if round(live.test_coverage - candidate.test_coverage, 9) > round(coverage_slack, 9):
        reasons.append(
            f"test coverage {candidate.test_coverage:.3f} < live {live.test_coverage:.3f} - {coverage_slack:.3f} "
            "(one standard error)"
        )
    # Rounded so that a candidate exactly one item worse is not refused for a floating-point remainder.
    if round(live.test_weighted_precision - candidate.test_weighted_precision, 9) > round(weighted_slack, 9):
        reasons.append(
            f"test weighted precision {candidate.test_weighted_precision:.3f} < live "
            f"{live.test_weighted_precision:.3f} - {weighted_slack:.3f} ({ITEMS_OF_SLACK} test items)"
        )
    if round(live.test_precision_at_threshold - candidate.test_precision_at_threshold, 9) > round(threshold_slack, 9):
        reasons.append(
            f"test precision at threshold {candidate.test_precision_at_threshold:.3f} < live "
            f"{live.test_precision_at_threshold:.3f} - {threshold_slack:.3f} ({ITEMS_OF_SLACK} auto-tagged test items)"
        )
    if (
        candidate.feedback_accuracy is not None
        and live.feedback_accuracy is not None
        and candidate.feedback_accuracy < live.feedback_accuracy
    ):
        reasons.append(
            f"feedback holdout accuracy {candidate.feedback_accuracy:.3f} < live {live.feedback_accuracy:.3f}"
        )
    return not reasons, reasons


def promotion_record(live_version: str, live: Scores, candidate: Scores) -> dict[str, Any]:
    """The card's ``promotion`` section: against which live model, the figures, and the verdict."""
    passed, reasons = not_worse(live, candidate)
    return {
        "live_version": live_version,
        "live": asdict(live),
        "candidate": asdict(candidate),
        "tolerance": {
            **dict(zip(("test_weighted_precision", "test_precision_at_threshold"), tolerances(live), strict=True)),
            "test_coverage": coverage_tolerance(live),
        },
        "passed": passed,
        "reasons": reasons,
    }
