"""The suite's own set-up (tests/conftest.py): no per-example deadline for hypothesis, and a broker started only for
a run that has tests needing one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT


@given(st.just(None))
@settings(max_examples=1)
def test_a_hypothesis_example_slower_than_200_ms_is_no_failure(_: None) -> None:
    """Hypothesis' default deadline fails an example that takes over 200 ms, as an example of a passing test does
    when other processes share its core: the suite's profile has no deadline."""
    time.sleep(0.3)


@pytest.mark.slow
def test_a_distributed_run_without_kafka_tests_starts_no_broker(tmp_path: Path) -> None:
    """``-n 2`` over broker-free tests starts no broker: it needs no Java, and a broker port another process holds
    does not fail it."""
    with socket.socket() as broker, socket.socket() as controller:
        for held in (broker, controller):
            held.bind(("127.0.0.1", 0))
            held.listen()
        env = {
            **{name: value for name, value in os.environ.items() if name != "TAGGER_KAFKA_BOOTSTRAP_SERVERS"},
            "KAFKA_PORT": str(broker.getsockname()[1]),
            "KAFKA_CONTROLLER_PORT": str(controller.getsockname()[1]),
            "KAFKA_DATA_DIR": str(tmp_path / "kafka"),
        }
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "-m", "not kafka",
             f"--basetemp={tmp_path / 'basetemp'}", "tests/unit/test_drift.py"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not (tmp_path / "kafka.lock").exists()  # every scripts/kafka command takes this lock: none ran
