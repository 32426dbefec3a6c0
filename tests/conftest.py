"""Fixtures shared by every suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from model_export.__main__ import main as export_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once per session by the real exporter (one-point grid, same pipeline)."""
    out = tmp_path_factory.mktemp("model")
    assert export_main(["--data", str(ROOT / "data/dataset.csv"), "--out", str(out), "--fast"]) == 0
    return out


@pytest.fixture(scope="session")
def prometheus_installed() -> None:
    """prometheus and promtool on the PATH, installed from Debian's package by scripts/prometheus if missing."""
    subprocess.run([ROOT / "scripts/prometheus", "install"], check=True)
