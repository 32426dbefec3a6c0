"""Drift of the live model against its training reference: population stability index over a window."""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from stream_app import APPROVED_TAGS
from stream_app.errors import ModelError

DRIFT_MIN_EVENTS = 200
"""Fewest events in the drift window for it to count as drifted: below it, sampling noise alone passes 0.2 (the
same floor as the drift alerts in monitoring/alerts.yml, and the least ``TAGGER_DRIFT_WINDOW`` allowed)."""

SHARES_SUM_TOLERANCE = 1e-6
"""How far from 1 a reference's shares may add up (the exporter writes them as float64 quotients)."""

PSI_EPSILON = 1e-4
"""Floor for empty bins, so a bin missing on one side gives a large but finite index."""


@dataclass(frozen=True)
class Reference:
    """The model card's reference distributions, computed on held-out predictions at export time."""

    confidence_bin_edges: tuple[float, ...]
    """Bin edges from 0 to 1; bins are closed on the left, the last one on both sides (as numpy.histogram)."""
    confidence_shares: tuple[float, ...]
    """Share of reference predictions per confidence bin."""
    tag_shares: dict[str, float]
    """Share of reference predictions per approved tag (0 for a tag the reference never predicted)."""
    below_threshold_share: float
    """Share of reference predictions below the card's review threshold."""

    def __post_init__(self) -> None:
        edges = self.confidence_bin_edges
        # "not a < b" and "not 0 <= share <= 1" so that NaN fails too: a NaN edge or share makes every PSI NaN,
        # and a drift alert or retrain compared with NaN never fires.
        if len(edges) < 2 or edges[0] != 0.0 or edges[-1] != 1.0 or any(not a < b for a, b in pairwise(edges)):
            raise ModelError(f"reference confidence_bin_edges must rise from 0 to 1, got {list(edges)}")
        if len(self.confidence_shares) != len(edges) - 1:
            raise ModelError("reference confidence_shares must have one share per bin")
        shares = (*self.confidence_shares, *self.tag_shares.values(), self.below_threshold_share)
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise ModelError(f"reference shares must be shares from 0 to 1, got {[*shares]!r:.200}")
        # Shares that do not add up to 1 make every PSI large for as long as the model serves: drift alerts and
        # the drift retrain would fire on a calm stream.
        for name, parts in (("confidence_shares", self.confidence_shares), ("tag_shares", self.tag_shares.values())):
            if not abs(math.fsum(parts) - 1.0) <= SHARES_SUM_TOLERANCE:
                raise ModelError(f"reference {name} must add up to 1, got {math.fsum(parts)!r}")
        unknown = sorted(set(self.tag_shares) - set(APPROVED_TAGS))
        if unknown:
            raise ModelError(f"reference tag_shares has tags that are not approved: {unknown}")

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Reference:
        """Read the ``reference`` section of a model card; raises :class:`ModelError` if it is malformed."""
        try:
            reference = card["reference"]
            tag_shares = {str(tag): float(share) for tag, share in reference["tag_shares"].items()}
            return cls(
                confidence_bin_edges=tuple(float(e) for e in reference["confidence_bin_edges"]),
                confidence_shares=tuple(float(s) for s in reference["confidence_shares"]),
                tag_shares={tag: tag_shares.get(tag, 0.0) for tag in APPROVED_TAGS} | tag_shares,
                below_threshold_share=float(reference["below_threshold_share"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:  # Overflow: a huge integer
            raise ModelError(f"the model card has no valid drift reference: {error!r:.200}") from error


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares over the same bins.

    ``sum((actual - expected) * ln(actual / expected))``, each share floored at ``epsilon``.
    """
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, epsilon), max(a, epsilon)
        total += (a - e) * math.log(a / e)
    return total


@dataclass(frozen=True)
class DriftSnapshot:
    """Drift over the current window."""

    confidence_psi: float
    tag_psi: float
    below_threshold_share: float
    events: int


class DriftMonitor:
    """The last ``window`` classified events, kept as running counts so each event costs O(1)."""

    def __init__(self, reference: Reference, window: int = 1000, threshold: float = 0.5) -> None:
        if window < 1:
            raise ValueError("the drift window must hold at least one event")
        self.reference = reference
        self.window = window
        self.threshold = threshold
        self._inner_edges = list(reference.confidence_bin_edges[1:-1])
        self._expected_tags = [reference.tag_shares[t] for t in APPROVED_TAGS]
        # Each event is stored as (confidence bin, tag index, below threshold) so forgetting it is O(1) too.
        self._events: deque[tuple[int, int, bool]] = deque()
        self._bin_counts = [0] * (len(reference.confidence_bin_edges) - 1)
        self._tag_index = {tag: i for i, tag in enumerate(APPROVED_TAGS)}
        self._tag_counts = [0] * len(APPROVED_TAGS)
        self._below = 0

    def observe(self, tag: str, confidence: float) -> None:
        """Add one classified event (an approved tag), forgetting the oldest once the window is full."""
        event = (
            bisect.bisect_right(self._inner_edges, confidence),
            self._tag_index[tag],
            confidence < self.threshold,
        )
        self._events.append(event)
        self._count(event, 1)
        if len(self._events) > self.window:
            self._count(self._events.popleft(), -1)

    def _count(self, event: tuple[int, int, bool], step: int) -> None:
        bin_index, tag_index, below = event
        self._bin_counts[bin_index] += step
        self._tag_counts[tag_index] += step
        if below:
            self._below += step

    def snapshot(self) -> DriftSnapshot:
        """PSI of confidence and of predicted tags, and the share below the threshold, over the window."""
        n = len(self._events)
        if n == 0:
            return DriftSnapshot(0.0, 0.0, 0.0, 0)
        return DriftSnapshot(
            confidence_psi=psi(self.reference.confidence_shares, [c / n for c in self._bin_counts]),
            tag_psi=psi(self._expected_tags, [c / n for c in self._tag_counts]),
            below_threshold_share=self._below / n,
            events=n,
        )
