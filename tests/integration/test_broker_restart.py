"""The broker goes away mid-stream for 20 seconds and comes back: nothing is lost. An at-least-once worker resumes
by itself; an exactly-once worker may stop on a transaction that failed during the outage, and once restarted (as
a supervisor would) it repeats nothing either.

This test runs its own broker (the ``own_broker`` fixture) so that stopping it disturbs no other test.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.integration.harness import OwnBroker, Produced, Topics, WorkerProcess, account, free_port, produce, run
from tools.replay import mixed_stream, read_rows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 6000
OUTAGE_SECONDS = 20.0


class Supervisor:
    """Starts the worker again whenever it exits, as systemd, Kubernetes or Compose's restart policy would."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            if self.worker.process is not None and self.worker.process.poll() is not None:
                self.restarts += 1
                self.worker.start(timeout=120)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_worker_resumes_after_a_broker_outage_and_loses_nothing(
    own_broker: OwnBroker, trained_model_dir: Path, tmp_path: Path, guarantee: str
) -> None:
    bootstrap = own_broker.bootstrap
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
            "TAGGER_PROCESSING_GUARANTEE": guarantee,
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
        own_broker.stop()
        outage_started = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        if guarantee == "at_least_once":
            assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
        own_broker.start()
        outage = time.monotonic() - outage_started
        with Supervisor(worker) as supervisor:
            produced += run(produce(bootstrap, topics.input, [(m.key, m.value, None) for m in second]))
            expected = [
                m.key.decode() if m.key is not None else f"@{p.partition}/{p.offset}"
                for m, p in zip(messages, produced, strict=True)
            ]
            ledger = run(account(bootstrap, topics, expected, timeout=240))
        missing = ledger.missing(expected)
        lost = f"{len(missing)} lost after a {outage:.0f} s outage, e.g. {missing[:10]}"
        assert not missing, f"{lost}\n{worker.log_tail()}"
        if guarantee == "at_least_once":
            assert supervisor.restarts == 0, f"the worker died after the outage:\n{worker.log_tail()}"
        else:
            assert ledger.repeats() == 0, f"{ledger.repeats()} repeated outputs in exactly-once mode"
        # aiokafka logs every retry while the broker is away (over 2,000 refused connections in 20 s): the log
        # writes the first of each kind per 10 s window, and says how many it left out.
        log = worker.log_text()
        refused = log.count("Unable connect to node")
        assert 0 < refused <= 5 * (1 + supervisor.restarts), f"{refused} refused-connection lines in the log"
        assert "more like this in the" in log
        print(
            f"\nbroker outage {outage:.0f} s ({guarantee}): {len(expected)} inputs, {ledger.repeats()} repeats, "
            f"{supervisor.restarts} restarts, all accounted for, {refused} refused-connection lines logged"
        )
    finally:
        worker.stop()
