"""Drift of the live model against its training reference: population stability index over a sliding window."""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream_app import APPROVED_TAGS

PSI_EPSILON = 1e-4
"""Floor for empty bins, so a bin missing on one side gives a large but finite index."""


@dataclass(frozen=True)
class Reference:
    """The model card's reference distributions, computed on its validation split."""

    confidence_bin_edges: tuple[float, ...]
    confidence_shares: tuple[float, ...]
    tag_shares: dict[str, float]
    below_threshold_share: float

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Reference:
        """Read the ``reference`` section of a model card."""
        reference = card["reference"]
        return cls(
            confidence_bin_edges=tuple(float(e) for e in reference["confidence_bin_edges"]),
            confidence_shares=tuple(float(s) for s in reference["confidence_shares"]),
            tag_shares={tag: float(reference["tag_shares"].get(tag, 0.0)) for tag in APPROVED_TAGS},
            below_threshold_share=float(reference["below_threshold_share"]),
        )


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares (same bins)."""
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
    """Keeps the last ``window`` classified events and compares them with the reference in O(bins)."""

    def __init__(self, reference: Reference, window: int = 1000, threshold: float = 0.5) -> None:
        self.reference = reference
        self.window = window
        self.threshold = threshold
        self._inner_edges = list(reference.confidence_bin_edges[1:-1])
        self._events: deque[tuple[int, int, bool]] = deque()
        self._bin_counts = [0] * (len(reference.confidence_bin_edges) - 1)
        self._tag_index = {tag: i for i, tag in enumerate(APPROVED_TAGS)}
        self._tag_counts = [0] * len(APPROVED_TAGS)
        self._below = 0

    def observe(self, tag: str, confidence: float) -> None:
        """Add one classified event, dropping the oldest once the window is full."""
        event = (bisect.bisect_right(self._inner_edges, confidence), self._tag_index[tag], confidence < self.threshold)
        self._events.append(event)
        self._count(event, 1)
        if len(self._events) > self.window:
            self._count(self._events.popleft(), -1)

    def _count(self, event: tuple[int, int, bool], step: int) -> None:
        bin_index, tag_index, below = event
        self._bin_counts[bin_index] += step
        self._tag_counts[tag_index] += step
        self._below += step if below else 0

    def snapshot(self) -> DriftSnapshot:
        """PSI of confidence and of predicted tags, and the share below the threshold, over the window."""
        n = len(self._events)
        if n == 0:
            return DriftSnapshot(0.0, 0.0, 0.0, 0)
        reference = self.reference
        return DriftSnapshot(
            confidence_psi=psi(reference.confidence_shares, [c / n for c in self._bin_counts]),
            tag_psi=psi([reference.tag_shares[t] for t in APPROVED_TAGS], [c / n for c in self._tag_counts]),
            below_threshold_share=self._below / n,
            events=n,
        )
