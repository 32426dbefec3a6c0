"""Fixtures shared by every suite."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Imported at start-up, not by hypothesis' pytest plugin in the terminal summary: under CPython 3.11.7 that late
# import can fail with "SystemError: AST constructor recursion depth mismatch" (cpython gh-106905) when the
# garbage collector finalizes a test's leftover asyncio futures during it, failing a run whose tests all passed.
import hypothesis
import pytest

from model_export.__main__ import main as export_main

ROOT = Path(__file__).resolve().parents[1]
KAFKA = ROOT / "scripts" / "kafka"
KAFKA_FOLDER = pytest.StashKey[Path]()
"""The folder where the processes of a distributed run agree on the broker, in the controller's stash."""
KAFKA_FOLDER_INPUT = "content_tagger_kafka_folder"
"""Its key in each worker process's ``workerinput``."""

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
    """In a distributed run the controller makes the folder its worker processes share the broker through: the
    first to run a test that needs the broker starts it there, and the controller stops it at the end, after
    every worker process is done."""
    if distributes(config) and not os.environ.get("TAGGER_KAFKA_BOOTSTRAP_SERVERS"):
        config.stash[KAFKA_FOLDER] = Path(tempfile.mkdtemp(prefix="content-tagger-kafka-"))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Hand each pytest-xdist worker process the shared folder (an xdist hook, run by the controller)."""
    shared = node.config.stash.get(KAFKA_FOLDER, None)
    if shared is not None:
        node.workerinput[KAFKA_FOLDER_INPUT] = str(shared)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the broker a worker process of this distributed run started."""
    shared = config.stash.get(KAFKA_FOLDER, None)
    if shared is None:
        return
    try:
        with locked(shared):  # not while a worker process is still starting it
            if (shared / "started").exists():
                subprocess.run([KAFKA, "stop"], check=True)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@contextlib.contextmanager
def locked(shared: Path) -> Iterator[None]:
    """Hold the lock of the ``shared`` folder: one process of the run at a time starts or stops the broker."""
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def kafka_runs() -> bool:
    """Whether the broker of ``scripts/kafka`` (its ``KAFKA_DATA_DIR``) runs."""
    return subprocess.run([KAFKA, "status"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def kafka_bootstrap(pytestconfig: pytest.Config) -> Iterator[str]:
    """Bootstrap servers of a running broker: ``TAGGER_KAFKA_BOOTSTRAP_SERVERS``'s, else the local one of
    ``scripts/kafka``, started on first use if it does not run, and then stopped at the end of the run (by the
    controller, in a distributed run)."""
    external = os.environ.get("TAGGER_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    bootstrap = "127.0.0.1:" + os.environ.get("KAFKA_PORT", "9092")
    shared = getattr(pytestconfig, "workerinput", {}).get(KAFKA_FOLDER_INPUT)
    if shared is not None:
        with locked(Path(shared)):
            if not kafka_runs():
                (Path(shared) / "started").touch()  # first: a start cut short may leave a broker running
                subprocess.run([KAFKA, "start"], check=True)
        yield bootstrap
        return
    was_running = kafka_runs()
    subprocess.run([KAFKA, "start"], check=True)
    try:
        yield bootstrap
    finally:
        if not was_running:
            subprocess.run([KAFKA, "stop"], check=True)
