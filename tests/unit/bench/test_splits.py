"""bench.splits judges a procedure as the card judges a model, and pairs its differences by split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.splits import CARD_SEED, Judged, main, paired, render, run_seed
from model_export import train

FIXTURE_CARD = Path(__file__).resolve().parents[2] / "fixtures" / "model" / "model.json"


@pytest.mark.slow
def test_the_exporters_procedure_on_the_cards_split_gets_the_cards_test_figures() -> None:
    card = json.loads(FIXTURE_CARD.read_text())  # made by `model_export --fast`: seed 42, FAST_PARAM_GRID
    judged = run_seed(CARD_SEED, grid=train.FAST_PARAM_GRID, procedures=["exporter"])["exporter"]
    test = card["evaluation"]["test"]
    assert judged.threshold == card["threshold"]
    assert judged.weighted_precision == pytest.approx(test["precision"], abs=1e-12)
    assert judged.auto_precision == pytest.approx(test["at_threshold"]["precision"], abs=1e-12)
    assert judged.coverage == pytest.approx(test["at_threshold"]["coverage"], abs=1e-12)
    slices = card["evaluation"]["test_title_only"]["slices"]
    assert judged.title_only_other_recall == pytest.approx(slices["tag=other"]["accuracy"], abs=1e-12)
    assert judged.title_only_mlops_recall == pytest.approx(slices["tag=mlops"]["accuracy"], abs=1e-12)
    assert judged.title_only_short_accuracy == pytest.approx(slices["short_title"]["accuracy"], abs=1e-12)


def _judged(precision: float, coverage: float) -> Judged:
    return Judged(precision, 0.97, coverage, 0.7, 0.5, 0.5, 0.8)


def test_differences_are_paired_by_split_and_the_cards_split_is_reported_apart() -> None:
    results = {
        0: {"exporter": _judged(0.90, 0.80), "reference": _judged(0.88, 0.70)},
        1: {"exporter": _judged(0.86, 0.10), "reference": _judged(0.87, 0.75)},
        2: {"exporter": _judged(0.91, 0.78), "reference": _judged(0.90, 0.74)},
        CARD_SEED: {"exporter": _judged(0.50, 0.01), "reference": _judged(0.99, 0.99)},
    }
    others = {seed: r for seed, r in results.items() if seed != CARD_SEED}
    mean, error = paired(others, "weighted_precision")
    assert mean == pytest.approx((0.02 - 0.01 + 0.01) / 3)
    assert error == pytest.approx(0.015275252 / 3**0.5, rel=1e-6)  # stdev of 0.02, -0.01, 0.01
    table = render(results)
    assert "| weighted precision | 0.8900 | 0.8833 | +0.0067 ± 0.0088 | 2 / 1 |" in table
    assert "- exporter: median coverage 0.780; splits with coverage below 0.3: 1 (seeds 1)" in table
    assert "- reference: median coverage 0.740; splits with coverage below 0.3: 0 (seeds none)" in table
    assert f"The card's split (seed {CARD_SEED}): exporter weighted precision 0.5000" in table


def test_fewer_than_two_splits_are_refused_before_any_training(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--seeds", "1", "--no-write"])
    assert stopped.value.code == 2
    assert "--seeds must be at least 2" in capsys.readouterr().err
