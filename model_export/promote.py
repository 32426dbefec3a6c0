"""The offline half of guarded promotion: compare a candidate with the live model on the same held-out data.

Both models are scored on the dataset's fixed test split and on the feedback holdout (decisions never trained
on). :func:`not_worse` is the one rule that decides; its figures go into the candidate's card under
``promotion``, and the worker refuses a candidate whose card does not say it passed against the model it serves.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from sklearn.metrics import precision_score

from model_export.data import Example
from stream_app.errors import ConfigError

TOLERANCE: Final = 0.01
"""How much lower a candidate's test precision may be and still count as not worse: one item of the ~115
test rows moves weighted precision by about 0.009."""
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
    confident = test_probabilities.max(axis=1) >= threshold
    at_threshold = float((predicted[confident] == labels[confident]).mean()) if confident.any() else 0.0
    feedback_accuracy = None
    if holdout:
        said = np.asarray([classes[i] for i in holdout_probabilities.argmax(axis=1)])
        feedback_accuracy = float((said == np.asarray([e.tag for e in holdout])).mean())
    return Scores(
        test_weighted_precision=float(
            precision_score(labels, predicted, labels=list(classes), average="weighted", zero_division=0)
        ),
        test_precision_at_threshold=at_threshold,
        test_coverage=float(confident.mean()),
        feedback_accuracy=feedback_accuracy,
        feedback_count=len(holdout),
    )


def not_worse(live: Scores, candidate: Scores, tolerance: float = TOLERANCE) -> tuple[bool, list[str]]:
    """Whether ``candidate`` may replace ``live``, and why not.

    Not worse means all of: weighted precision on the test split at least the live model's minus ``tolerance``;
    precision of the auto-tagged test items (at each model's own threshold) at least the live model's minus
    ``tolerance``; and, when there is a feedback holdout, accuracy on it at least the live model's.
    """
    reasons = []
    if candidate.test_weighted_precision < live.test_weighted_precision - tolerance:
        reasons.append(
            f"test weighted precision {candidate.test_weighted_precision:.3f} < live "
            f"{live.test_weighted_precision:.3f} - {tolerance}"
        )
    if candidate.test_precision_at_threshold < live.test_precision_at_threshold - tolerance:
        reasons.append(
            f"test precision at threshold {candidate.test_precision_at_threshold:.3f} < live "
            f"{live.test_precision_at_threshold:.3f} - {tolerance}"
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
        "tolerance": TOLERANCE,
        "passed": passed,
        "reasons": reasons,
    }
