"""Fixtures shared by every suite."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Imported at start-up, not by hypothesis' pytest plugin in the terminal summary: under CPython 3.11.7 that late
# import can fail with "SystemError: AST constructor recursion depth mismatch" (cpython gh-106905) when the
# garbage collector finalizes a test's leftover asyncio futures during it, failing a run whose tests all passed.
import hypothesis
import pytest

from model_export.__main__ import main as export_main

ROOT = Path(__file__).resolve().parents[1]
KAFKA = ROOT / "scripts" / "kafka"
STARTED_KAFKA = pytest.StashKey[bool]()

# No per-example deadline: it is a timed assertion, and an example of a test that passes takes longer than the
# default 200 ms when other processes share the core. Each test's own max_examples still applies.
hypothesis.settings.register_profile(
    "content-tagger", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("content-tagger")


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


def distributes(config: pytest.Config) -> bool:
    """Whether this process is the controller of a pytest-xdist run (``-n 2``), which runs no test itself."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """In a distributed run the controller starts the broker every worker process shares (before it starts them,
    so they inherit ``TAGGER_KAFKA_BOOTSTRAP_SERVERS``); each process would otherwise start and stop its own."""
    if not distributes(config) or os.environ.get("TAGGER_KAFKA_BOOTSTRAP_SERVERS"):
        return
    was_running = subprocess.run([KAFKA, "status"], capture_output=True).returncode == 0
    subprocess.run([KAFKA, "start"], check=True)
    config.stash[STARTED_KAFKA] = not was_running
    os.environ["TAGGER_KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:" + os.environ.get("KAFKA_PORT", "9092")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the broker :func:`pytest_configure` started."""
    if config.stash.get(STARTED_KAFKA, False):
        subprocess.run([KAFKA, "stop"], check=True)
