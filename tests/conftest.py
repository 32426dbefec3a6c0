"""Fixtures shared by every suite."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from model_export.__main__ import main as export_main

ROOT = Path(__file__).resolve().parents[1]


FIXTURE_MODEL = ROOT / "tests" / "fixtures" / "model"
"""A model the real exporter made from data/dataset.csv (``python -m model_export --fast``), shipped so that
tests which serve a model do not train one; ``make fixture-model`` makes it again."""


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fixture model, for tests that serve a model. It is what the exporter makes today
    (``test_the_shipped_fixture_model_is_what_the_exporter_makes_today``), so the lifecycle and registry tests
    may compare candidates with it on the exporter's own split."""
    out = tmp_path_factory.mktemp("model")
    for name in ("model.onnx", "model.json"):
        shutil.copyfile(FIXTURE_MODEL / name, out / name)
    return out


@pytest.fixture(scope="session")
def exported_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained in this session by the real exporter (one-point grid, same pipeline), for tests of what
    the exporter makes."""
    out = tmp_path_factory.mktemp("exported-model")
    assert export_main(["--data", str(ROOT / "data/dataset.csv"), "--out", str(out), "--fast"]) == 0
    return out


@pytest.fixture(scope="session")
def prometheus_installed() -> None:
    """prometheus and promtool on the PATH, installed from Debian's package by scripts/prometheus if missing."""
    subprocess.run([ROOT / "scripts/prometheus", "install"], check=True)
