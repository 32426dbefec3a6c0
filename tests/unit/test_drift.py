"""PSI and the sliding drift window."""

from __future__ import annotations

import random

import pytest

from stream_app import APPROVED_TAGS
from stream_app.drift import DriftMonitor, Reference, psi

EDGES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
REFERENCE = Reference(
    confidence_bin_edges=EDGES,
    confidence_shares=(0.0, 0.02, 0.05, 0.08, 0.1, 0.1, 0.15, 0.15, 0.15, 0.2),
    tag_shares={"natural-language-processing": 0.4, "computer-vision": 0.37, "mlops": 0.08, "other": 0.15},
    below_threshold_share=0.15,
)


def draw(rng: random.Random, reference: Reference) -> tuple[str, float]:
    """One event drawn from the reference distributions."""
    tag = rng.choices(list(APPROVED_TAGS), [reference.tag_shares[t] for t in APPROVED_TAGS])[0]
    bin_index = rng.choices(range(len(reference.confidence_shares)), reference.confidence_shares)[0]
    low, high = EDGES[bin_index], EDGES[bin_index + 1]
    return tag, rng.uniform(low, high - 1e-9)


def test_psi_is_zero_for_identical_shares_and_grows_with_the_shift() -> None:
    base = [0.25, 0.25, 0.25, 0.25]
    assert psi(base, base) == 0
    small = psi(base, [0.3, 0.2, 0.25, 0.25])
    large = psi(base, [0.7, 0.1, 0.1, 0.1])
    assert 0 < small < large
    assert psi(base, [1.0, 0.0, 0.0, 0.0]) > 1  # an empty bin is floored, not infinite


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_window_drawn_from_the_reference_stays_below_0_1(seed: int) -> None:
    rng = random.Random(seed)
    monitor = DriftMonitor(REFERENCE, window=1000, threshold=0.6)
    for _ in range(1000):
        monitor.observe(*draw(rng, REFERENCE))
    snapshot = monitor.snapshot()
    assert snapshot.events == 1000
    assert snapshot.confidence_psi < 0.1
    assert snapshot.tag_psi < 0.1


def test_one_tag_or_low_confidence_pushes_psi_above_0_2() -> None:
    monitor = DriftMonitor(REFERENCE, window=1000, threshold=0.6)
    rng = random.Random(4)
    for _ in range(1000):
        monitor.observe("mlops", rng.uniform(0.3, 0.55))
    snapshot = monitor.snapshot()
    assert snapshot.tag_psi > 0.2
    assert snapshot.confidence_psi > 0.2
    assert snapshot.below_threshold_share == 1.0


def test_the_window_forgets_events_older_than_its_size() -> None:
    monitor = DriftMonitor(REFERENCE, window=100, threshold=0.6)
    for _ in range(100):
        monitor.observe("mlops", 0.35)
    rng = random.Random(5)
    for _ in range(100):
        monitor.observe(*draw(rng, REFERENCE))
    snapshot = monitor.snapshot()
    assert snapshot.events == 100
    assert snapshot.tag_psi < 0.2


def test_reference_is_read_from_a_model_card() -> None:
    card = {"reference": {"confidence_bin_edges": list(EDGES), "confidence_shares": list(REFERENCE.confidence_shares),
                          "tag_shares": {"mlops": 1.0}, "below_threshold_share": 0.1}}
    reference = Reference.from_card(card)
    assert reference.tag_shares == {"natural-language-processing": 0.0, "computer-vision": 0.0, "mlops": 1.0,
                                    "other": 0.0}
    assert DriftMonitor(reference).snapshot().events == 0
