"""A worker whose loop stalled checks the batch it resumes with against every index change committed before."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.integration.harness import WorkerProcess, ids_in, produce, read_outputs, run
from tests.integration.test_worker import dataset_rows
from tools.corpus import distinct_rows
from tools.replay import event_value

pytestmark = pytest.mark.kafka

COPIES = 100
ENV = {"TAGGER_SESSION_TIMEOUT_SECONDS": "10"}
"""Longer than the stall: the stalled worker keeps its partition."""


def holder_of(partition: int, workers: tuple[WorkerProcess, WorkerProcess]) -> WorkerProcess:
    """The worker assigned input ``partition``, once each exports the lag of one partition (every 5 s)."""
    deadline = time.monotonic() + 60
    while True:
        held = [set(w.by_label("content_tagger_consumer_lag", "partition")) for w in workers]
        if [len(h) for h in held] == [1, 1] and held[0] != held[1]:
            [holder] = [w for w, h in zip(workers, held, strict=True) if str(partition) in h]
            return holder
        assert time.monotonic() < deadline, f"partitions held: {held}"
        time.sleep(0.5)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_copies_taken_after_a_stall_meet_originals_another_worker_stored_during_it(
    start_worker: Any, guarantee: str
) -> None:
    """The worker holding the copies' partition is stopped (as a GC or VM pause would) while the other stores the
    originals, then the copies are sent and it resumes: it took them from the broker before it had applied the other
    worker's changes, and showed them."""
    env = {**ENV, "TAGGER_PROCESSING_GUARANTEE": guarantee}
    first, topics = start_worker(partitions=2, **env)
    second, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **env)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    rows = distinct_rows(dataset_rows())[: COPIES + 2]
    warm, rows = rows[:2], rows[2:]
    # One event on each partition: both workers hold one and have processed a batch.
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), n) for n, r in enumerate(warm)]))
    run(read_outputs(bootstrap, topics, len(warm), timeout=60, settle=0.0))
    stalled = holder_of(1, (first, second))
    assert stalled.process is not None
    stalled.process.send_signal(signal.SIGSTOP)
    try:
        originals = [(str(r["id"]).encode(), event_value(r), 0) for r in rows]
        run(produce(bootstrap, topics.input, originals))
        run(read_outputs(bootstrap, topics, len(warm) + len(rows), timeout=60, settle=0.0))
        copies = [(f"{r['id']}-copy".encode(), event_value({**r, "id": f"{r['id']}-copy"}), 1) for r in rows]
        run(produce(bootstrap, topics.input, copies))
    finally:
        stalled.process.send_signal(signal.SIGCONT)
    outputs = run(read_outputs(bootstrap, topics, len(warm) + 2 * len(rows), timeout=90, settle=1.0))

    shown = [i for i in ids_in(outputs["tagged"]) + ids_in(outputs["review"]) if i.endswith("-copy")]
    assert not shown, f"{len(shown)} of {len(rows)} copies shown:\n{stalled.log_tail()}"
    landed = ids_in(outputs["tagged"]) + ids_in(outputs["review"]) + ids_in(outputs["duplicate"])
    expected = [str(r["id"]) for r in warm + rows] + [f"{r['id']}-copy" for r in rows]
    assert sorted(set(landed)) == sorted(expected), "an event was lost"
    assert stalled.process.poll() is None, stalled.log_tail()
    # It kept its partition through the stall, and caught the copies itself.
    assert stalled.total("content_tagger_duplicates_total") == len(rows), stalled.log_tail()
