"""Fixtures shared by every suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from model_export.__main__ import main as export_main

ROOT = Path(__file__).resolve().parents[1]


FIXTURE_MODEL = ROOT / "tests" / "fixtures" / "model"
"""A model the real exporter made from data/dataset.csv (``python -m model_export --fast``), shipped so that
tests which serve a model do not train one; ``make fixture-model`` makes it again."""


@pytest.fixture(scope="session")
def trained_model_dir(exported_model_dir: Path) -> Path:
    """A model trained once per session by the real exporter, for tests that serve a model. The lifecycle and
    registry tests compare candidates with it on the exporter's own split, so it must come from this code."""
    return exported_model_dir


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
