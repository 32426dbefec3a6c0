"""A candidate model classifying live traffic beside the live one, counted but never emitted, and its verdict."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from stream_app.classifier import Classifier, Prediction

log = logging.getLogger(__name__)


MIN_SHADOW_AGREEMENT: Final = 0.8
"""Least share of shadowed events on which the candidate picks the live model's tag: a retrain on corrections
changes some answers, a model that changes most of them is not the same product."""
REVIEW_SHARE_SLACK: Final = 0.05
"""How much more of the traffic the candidate may send to people than the live model does."""


class Tally(NamedTuple):
    """One batch's comparison: events compared, on how many the candidate picked the live model's tag, and how
    many each model would send to review."""

    compared: int
    agreed: int
    candidate_review: int
    live_review: int


class Shadow:
    """A candidate classifying live traffic beside the live model, counted but never emitted."""

    def __init__(self, candidate: Classifier, events: int) -> None:
        self.candidate = candidate
        self.events = events
        self.seen = self.agreed = self.candidate_below = self.live_below = 0

    def observe(self, texts: Sequence[str], live: Sequence[Prediction], live_threshold: float) -> Tally:
        """Classify ``texts`` with the candidate and compare with the live model's ``live`` predictions."""
        return self.compare(self.candidate.predict(list(texts)), live, live_threshold)

    def compare(self, candidate: Sequence[Prediction], live: Sequence[Prediction], live_threshold: float) -> Tally:
        """Count the candidate's ``candidate`` predictions against the live model's ``live`` ones (same texts);
        returns this batch's counts."""
        agreed = candidate_below = live_below = 0
        for said, theirs in zip(candidate, live, strict=True):
            agreed += said.tag == theirs.tag
            candidate_below += said.confidence < self.candidate.threshold
            live_below += theirs.confidence < live_threshold
        tally = Tally(len(live), agreed, candidate_below, live_below)
        self.seen += tally.compared
        self.agreed += agreed
        self.candidate_below += candidate_below
        self.live_below += live_below
        return tally

    @property
    def done(self) -> bool:
        """Whether enough events were shadowed to decide."""
        return self.seen >= self.events

    def verdict(self) -> tuple[bool, dict[str, Any]]:
        """Promote or not, with the figures: see :func:`shadow_verdict`."""
        return shadow_verdict(self.seen, self.agreed, self.candidate_below, self.live_below)


def shadow_verdict(
    seen: float, agreed: float, candidate_below: float, live_below: float
) -> tuple[bool, dict[str, Any]]:
    """Promote a shadowed candidate or not, from its counts (one worker's, or a fleet's sums), with the figures and
    the reasons against: it must agree with the live model on at least :data:`MIN_SHADOW_AGREEMENT` of the
    ``seen`` events and send at most :data:`REVIEW_SHARE_SLACK` more of them to review than the live model."""
    n = max(seen, 1)
    agreement, candidate_share, live_share = agreed / n, candidate_below / n, live_below / n
    reasons = []
    if agreement < MIN_SHADOW_AGREEMENT:
        reasons.append(f"agreement {agreement:.3f} < {MIN_SHADOW_AGREEMENT}")
    if candidate_share > live_share + REVIEW_SHARE_SLACK:
        reasons.append(
            f"review share {candidate_share:.3f} > {live_share + REVIEW_SHARE_SLACK:.3f} (live {live_share:.3f})"
        )
    figures = {"events": seen, "agreement": agreement, "candidate_review_share": candidate_share,
               "live_review_share": live_share, "reasons": reasons}  # fmt: skip
    return not reasons, figures
