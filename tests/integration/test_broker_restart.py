"""The broker goes away mid-stream for 20 seconds and comes back: the worker resumes by itself and loses nothing.

This test runs its own broker (its own ports and data folder, through ``scripts/kafka``) so that stopping it
disturbs no other test.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.replay import mixed_stream, read_rows
from tests.integration.harness import Produced, Topics, WorkerProcess, account, free_port, produce, run

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KAFKA = ROOT / "scripts" / "kafka"
EVENTS = 6000
OUTAGE_SECONDS = 20.0


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A broker of this test's own: the environment that ``scripts/kafka`` needs to start and stop it."""
    env = {
        **os.environ,
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_DATA_DIR": str(tmp_path / "kafka"),
    }
    subprocess.run([KAFKA, "start"], env=env, check=True)
    try:
        yield env
    finally:
        subprocess.run([KAFKA, "stop"], env=env, check=True)


def test_the_worker_resumes_after_a_broker_outage_and_loses_nothing(
    own_broker: dict[str, str], trained_model_dir: Path, tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{own_broker['KAFKA_PORT']}"
    topics = Topics(input="content", tagged="tagged", review="review", duplicate="duplicates", deadletter="dead")
    worker = WorkerProcess(
        {
            "TAGGER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TAGGER_APP_ID": "tagger-outage",
            "TAGGER_INPUT_TOPIC": topics.input,
            "TAGGER_TAGGED_TOPIC": topics.tagged,
            "TAGGER_REVIEW_TOPIC": topics.review,
            "TAGGER_DUPLICATES_TOPIC": topics.duplicate,
            "TAGGER_DEADLETTER_TOPIC": topics.deadletter,
            "TAGGER_MODEL_DIR": str(trained_model_dir),
            "TAGGER_WEB_PORT": str(free_port()),
            "TAGGER_DATA_DIR": str(tmp_path / "worker"),
        },
        tmp_path / "worker.log",
    )
    worker.start()
    try:
        messages = mixed_stream(read_rows(ROOT / "data" / "dataset.csv"), EVENTS, seed=7)
        first, second = messages[: EVENTS // 2], messages[EVENTS // 2 :]
        produced: list[Produced] = run(produce(bootstrap, topics.input, [(m.key, m.value, None) for m in first]))
        # The outage starts while the worker is still working through the first half.
        time.sleep(2.0)
        subprocess.run([KAFKA, "stop"], env=own_broker, check=True)
        outage_started = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
        subprocess.run([KAFKA, "start"], env=own_broker, check=True)
        outage = time.monotonic() - outage_started
        produced += run(produce(bootstrap, topics.input, [(m.key, m.value, None) for m in second]))
        expected = [
            m.key.decode() if m.key is not None else f"@{p.partition}/{p.offset}"
            for m, p in zip(messages, produced, strict=True)
        ]
        ledger = run(account(bootstrap, topics, expected, timeout=240))
        missing = ledger.missing(expected)
        lost = f"{len(missing)} lost after a {outage:.0f} s outage, e.g. {missing[:10]}"
        assert not missing, f"{lost}\n{worker.log_tail()}"
        assert worker.process.poll() is None, "the worker died during the outage"
        print(f"\nbroker outage {outage:.0f} s: {len(expected)} inputs, {ledger.repeats()} repeats, all accounted for")
    finally:
        worker.stop()

