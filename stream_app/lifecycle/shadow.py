"""A candidate model classifying live traffic beside the live one, counted but never emitted, and its verdict."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from stream_app.classifier import Classifier, Prediction
from stream_app.errors import ModelError

log = logging.getLogger(__name__)


MIN_SHADOW_AGREEMENT: Final = 0.8
"""Least share of shadowed events on which the candidate picks the live model's tag: a retrain on corrections
changes some answers, a model that changes most of them is not the same product."""
REVIEW_SHARE_SLACK: Final = 0.05
"""How much more, or less, of the traffic the candidate may send to people than the live model does. Less too:
a shadow has no labels, so a candidate that auto-tags much more than the live model has shown nothing of its
precision there, and the folder path promotes straight from the shadow."""


@dataclass
class ShadowCounts:
    """What a shadow model did beside the live model (in one batch, over one worker's run, or summed over the
    fleet's workers): events compared, on how many it picked the live model's tag, how many it would have sent to
    review, and how many the live one did."""

    compared: float = 0.0
    agreed: float = 0.0
    review: float = 0.0
    live_review: float = 0.0

    def add(self, other: ShadowCounts) -> None:
        """Add ``other``'s counts to these."""
        self.compared += other.compared
        self.agreed += other.agreed
        self.review += other.review
        self.live_review += other.live_review

    def verdict(self) -> tuple[bool, dict[str, Any]]:
        """The shadow rule (:func:`shadow_verdict`) on these counts."""
        return shadow_verdict(self.compared, self.agreed, self.review, self.live_review)


class Shadow:
    """A candidate classifying live traffic beside the live model, counted but never emitted."""

    def __init__(self, candidate: Classifier, events: int) -> None:
        self.candidate = candidate
        self.events = events
        self.counts = ShadowCounts()
        self.failure: str | None = None
        """Why the candidate stopped shadowing before the end (it raised :class:`ModelError`), if it did."""

    def predict(self, texts: list[str]) -> list[Prediction] | None:
        """The candidate's predictions for ``texts``; None, from now on, once it has failed. A shadow's outputs are
        never emitted, so its failure (a probability that is not a number, say) must not stop the live model, or
        every worker that runs it at every start."""
        if self.failure is not None:
            return None
        try:
            return self.candidate.predict(texts)
        except ModelError as error:
            self.failure = str(error)
            log.error("shadow model %s failed and stops shadowing: %s", self.candidate.version, error)
            return None

    @property
    def seen(self) -> float:
        """Events compared so far."""
        return self.counts.compared

    def observe(self, texts: Sequence[str], live: Sequence[Prediction], live_threshold: float) -> ShadowCounts:
        """Classify ``texts`` with the candidate and compare with the live model's ``live`` predictions (nothing is
        counted once the candidate has failed)."""
        said = self.predict(list(texts))
        return ShadowCounts() if said is None else self.compare(said, live, live_threshold)

    def compare(
        self, candidate: Sequence[Prediction], live: Sequence[Prediction], live_threshold: float
    ) -> ShadowCounts:
        """Count the candidate's ``candidate`` predictions against the live model's ``live`` ones (same texts);
        returns this batch's counts."""
        agreed = review = live_review = 0
        for said, theirs in zip(candidate, live, strict=True):
            agreed += said.tag == theirs.tag
            review += said.confidence < self.candidate.threshold
            live_review += theirs.confidence < live_threshold
        batch = ShadowCounts(len(live), agreed, review, live_review)
        self.counts.add(batch)
        return batch

    @property
    def done(self) -> bool:
        """Whether enough events were shadowed to decide, or the candidate failed."""
        return self.failure is not None or self.seen >= self.events

    def verdict(self) -> tuple[bool, dict[str, Any]]:
        """Promote or not, with the figures: see :func:`shadow_verdict`."""
        return self.counts.verdict()


def shadow_verdict(
    seen: float, agreed: float, candidate_below: float, live_below: float
) -> tuple[bool, dict[str, Any]]:
    """Promote a shadowed candidate or not, from its counts (one worker's, or a fleet's sums), with the figures and
    the reasons against: it must agree with the live model on at least :data:`MIN_SHADOW_AGREEMENT` of the
    ``seen`` events and send at most :data:`REVIEW_SHARE_SLACK` more, or fewer, of them to review than the live
    model."""
    n = max(seen, 1)
    agreement, candidate_share, live_share = agreed / n, candidate_below / n, live_below / n
    # Summed counts are finite and not negative (fleet_counts.count_value), but a part larger than its whole is
    # no evidence: they are whatever the workers, or the registry, reported.
    parts = (("agreed", agreed), ("sent to review", candidate_below), ("sent to review live", live_below))
    reasons = [f"more {name} than compared ({count:g} > {seen:g})" for name, count in parts if count > seen]
    if agreement < MIN_SHADOW_AGREEMENT:
        reasons.append(f"agreement {agreement:.3f} < {MIN_SHADOW_AGREEMENT}")
    if candidate_share > live_share + REVIEW_SHARE_SLACK:
        reasons.append(
            f"review share {candidate_share:.3f} > {live_share + REVIEW_SHARE_SLACK:.3f} (live {live_share:.3f})"
        )
    if candidate_share < live_share - REVIEW_SHARE_SLACK:
        reasons.append(
            f"review share {candidate_share:.3f} < {live_share - REVIEW_SHARE_SLACK:.3f} (live {live_share:.3f})"
        )
    figures = {"events": seen, "agreement": agreement, "candidate_review_share": candidate_share,
               "live_review_share": live_share, "reasons": reasons}  # fmt: skip
    return not reasons, figures
