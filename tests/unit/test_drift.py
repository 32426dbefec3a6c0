"""PSI and the sliding drift window: calm on traffic drawn from the reference, loud on a shifted stream."""

from __future__ import annotations

import bisect
import random
from typing import Any

import pytest

from model_export.card import CONFIDENCE_BIN_EDGES
from stream_app import APPROVED_TAGS
from stream_app.drift import DriftMonitor, Reference, psi
from stream_app.errors import ModelError

# Shaped like a real card's reference (train split, out of fold), on the exporter's own bin edges.
REFERENCE = Reference(
    confidence_bin_edges=CONFIDENCE_BIN_EDGES,
    confidence_shares=(0.002, 0.03, 0.1, 0.12, 0.118, 0.15, 0.212, 0.146, 0.092, 0.03),
    tag_shares={"natural-language-processing": 0.43, "computer-vision": 0.38, "mlops": 0.07, "other": 0.12},
    below_threshold_share=0.27,
)
THRESHOLD = 0.6


def draw(rng: random.Random, reference: Reference) -> tuple[str, float]:
    """One classified event drawn from the reference's tag and confidence distributions."""
    tag = rng.choices(APPROVED_TAGS, [reference.tag_shares[t] for t in APPROVED_TAGS])[0]
    edges = reference.confidence_bin_edges
    bin_index = rng.choices(range(len(edges) - 1), reference.confidence_shares)[0]
    return tag, rng.uniform(edges[bin_index], edges[bin_index + 1] - 1e-9)


def card(**reference: Any) -> dict[str, Any]:
    base = {
        "confidence_bin_edges": list(CONFIDENCE_BIN_EDGES),
        "confidence_shares": list(REFERENCE.confidence_shares),
        "tag_shares": {"mlops": 1.0},
        "below_threshold_share": 0.1,
    }
    return {"reference": base | reference}


def test_psi_is_zero_for_identical_shares_and_grows_with_the_shift() -> None:
    base = [0.25, 0.25, 0.25, 0.25]
    assert psi(base, base) == 0
    small = psi(base, [0.3, 0.2, 0.25, 0.25])
    large = psi(base, [0.7, 0.1, 0.1, 0.1])
    assert 0 < small < large
    assert psi([0.7, 0.1, 0.1, 0.1], base) == pytest.approx(large)  # symmetric in its two arguments


def test_an_empty_bin_gives_a_large_finite_psi_not_infinity() -> None:
    value = psi([0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0])
    assert 1 < value < 100
    assert psi([0.5, 0.5], [1.0, 0.0], epsilon=1e-2) < psi([0.5, 0.5], [1.0, 0.0], epsilon=1e-6)


def test_psi_refuses_shares_over_different_bins() -> None:
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_window_of_1000_events_drawn_from_the_reference_stays_below_0_1(seed: int) -> None:
    rng = random.Random(seed)
    monitor = DriftMonitor(REFERENCE, window=1000, threshold=THRESHOLD)
    for _ in range(1000):
        monitor.observe(*draw(rng, REFERENCE))
    snapshot = monitor.snapshot()
    assert snapshot.events == 1000
    assert snapshot.confidence_psi < 0.1
    assert snapshot.tag_psi < 0.1
    assert snapshot.below_threshold_share == pytest.approx(sum(REFERENCE.confidence_shares[:4]), abs=0.05)


def test_a_window_of_one_tag_is_tag_drift() -> None:
    rng = random.Random(6)
    monitor = DriftMonitor(REFERENCE, window=1000, threshold=THRESHOLD)
    for _ in range(1000):
        monitor.observe("mlops", draw(rng, REFERENCE)[1])
    snapshot = monitor.snapshot()
    assert snapshot.tag_psi > 0.2
    assert snapshot.confidence_psi < 0.1


def test_the_drift_figures_are_the_psi_of_the_windows_shares() -> None:
    """The exact figures, not only their side of the alerts' cut-offs: 60 events tagged mlops at 0.95 and 40 other
    at 0.15, against the reference."""
    monitor = DriftMonitor(REFERENCE, window=1000, threshold=THRESHOLD)
    for tag, confidence, count in (("mlops", 0.95, 60), ("other", 0.15, 40)):
        for _ in range(count):
            monitor.observe(tag, confidence)
    tags = [{"mlops": 0.6, "other": 0.4}.get(tag, 0.0) for tag in APPROVED_TAGS]
    bins = [0.0] * (len(CONFIDENCE_BIN_EDGES) - 1)
    bins[bisect.bisect_right(CONFIDENCE_BIN_EDGES, 0.95) - 1] += 0.6
    bins[bisect.bisect_right(CONFIDENCE_BIN_EDGES, 0.15) - 1] += 0.4
    snapshot = monitor.snapshot()
    assert snapshot.tag_psi == pytest.approx(psi([REFERENCE.tag_shares[tag] for tag in APPROVED_TAGS], tags))
    assert snapshot.confidence_psi == pytest.approx(psi(REFERENCE.confidence_shares, bins))
    assert snapshot.below_threshold_share == 0.4  # 0.15 is below the threshold of 0.6, 0.95 above
    assert snapshot.events == 100


def test_a_window_of_low_confidence_is_confidence_drift_and_all_below_threshold() -> None:
    rng = random.Random(7)
    monitor = DriftMonitor(REFERENCE, window=1000, threshold=THRESHOLD)
    for _ in range(1000):
        monitor.observe(draw(rng, REFERENCE)[0], rng.uniform(0.3, 0.55))
    snapshot = monitor.snapshot()
    assert snapshot.confidence_psi > 0.2
    assert snapshot.tag_psi < 0.1
    assert snapshot.below_threshold_share == 1.0


def test_the_window_forgets_events_older_than_its_size() -> None:
    monitor = DriftMonitor(REFERENCE, window=200, threshold=THRESHOLD)
    for _ in range(200):
        monitor.observe("mlops", 0.35)
    assert monitor.snapshot().tag_psi > 0.2
    rng = random.Random(8)
    for _ in range(200):
        monitor.observe(*draw(rng, REFERENCE))
    snapshot = monitor.snapshot()
    assert snapshot.events == 200
    assert snapshot.tag_psi < 0.1
    assert snapshot.confidence_psi < 0.2


def test_confidence_on_a_bin_edge_and_at_one_land_in_the_bins_numpy_would_use() -> None:
    reference = Reference((0.0, 0.5, 1.0), (0.5, 0.5), dict.fromkeys(APPROVED_TAGS, 0.25), 0.5)
    monitor = DriftMonitor(reference, window=10, threshold=0.5)
    monitor.observe("mlops", 0.5)  # left-closed bins: 0.5 is in [0.5, 1]
    monitor.observe("mlops", 1.0)  # the last bin is closed: 1.0 is in it
    # Both in the upper bin: the lower is empty, so the PSI is that of shares (0, 1) against (0.5, 0.5).
    assert monitor.snapshot().confidence_psi == pytest.approx(psi([0.5, 0.5], [0.0, 1.0]))
    assert monitor.snapshot().below_threshold_share == 0.0


def test_an_empty_window_reports_nothing() -> None:
    snapshot = DriftMonitor(REFERENCE).snapshot()
    assert (snapshot.events, snapshot.confidence_psi, snapshot.tag_psi, snapshot.below_threshold_share) == (
        0,
        0,
        0,
        0,
    )


def test_reference_is_read_from_a_model_card_with_missing_tags_as_zero() -> None:
    reference = Reference.from_card(card())
    assert reference.confidence_bin_edges == CONFIDENCE_BIN_EDGES
    assert reference.tag_shares == {
        "natural-language-processing": 0.0,
        "computer-vision": 0.0,
        "mlops": 1.0,
        "other": 0.0,
    }
    assert reference.below_threshold_share == 0.1


@pytest.mark.parametrize(
    "bad",
    [
        {"confidence_bin_edges": [0.0, 0.5, 0.4, 1.0]},
        {"confidence_bin_edges": [0.1, 0.5, 1.0]},
        # Edges that do not rise from 0 to 1, each with one share per bin: the edges alone must refuse them.
        {"confidence_bin_edges": [0.0, 0.6, 0.4, 1.0], "confidence_shares": [0.2, 0.3, 0.5]},
        {"confidence_bin_edges": [0.0, 0.5, 0.5, 1.0], "confidence_shares": [0.2, 0.3, 0.5]},
        {"confidence_bin_edges": [0.0, float("nan"), 1.0], "confidence_shares": [0.5, 0.5]},
        {"confidence_bin_edges": [0.0, 0.5, 0.9], "confidence_shares": [0.5, 0.5]},
        {"confidence_bin_edges": [0.1, 0.5, 1.0], "confidence_shares": [0.5, 0.5]},
        {"confidence_bin_edges": [1.0], "confidence_shares": []},
        {"below_threshold_share": 1.5},
        {"confidence_shares": [0.5, 0.5]},
        {"tag_shares": {"cooking": 1.0}},
        {"below_threshold_share": "many"},
        # Each share from 0 to 1, but not adding up to 1: every PSI is large on a calm stream, for good.
        {"confidence_shares": [0.0] * (len(CONFIDENCE_BIN_EDGES) - 1)},
        {"tag_shares": {"mlops": 0.5}},
    ],
)
def test_a_malformed_card_reference_is_a_model_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ModelError):
        Reference.from_card(card(**bad))


def test_a_card_without_a_reference_is_a_model_error() -> None:
    with pytest.raises(ModelError):
        Reference.from_card({"version": "x"})


def test_psi_is_the_textbook_sum_with_natural_logarithms() -> None:
    """The drift alerts' 0.1 and 0.2 are the usual PSI cut-offs, which are on the natural logarithm:
    (0.7 - 0.5)·ln(0.7/0.5) + (0.3 - 0.5)·ln(0.3/0.5) = 0.2·ln(7/5) + 0.2·ln(5/3) = 0.2·ln(7/3) ≈ 0.2 × 0.84730."""
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(0.16946, abs=1e-5)
