"""Stopping the worker on a real broker: a stop exits 0, and a stop that hangs ends in an exit all the same, with
status 3, after ``TAGGER_STOP_TIMEOUT_SECONDS``, so that a supervisor restarts the process."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from stream_app.worker import STOP_TIMEOUT_EXIT_STATUS
from tests.integration.harness import ROOT, account, produce, produce_paced, run
from tools.replay import event_value, mixed_stream, read_rows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_stop_that_hangs_exits_with_status_3_after_the_stop_timeout(start_worker: Any) -> None:
    worker, _ = start_worker(module="tests.integration.stuck_stop_app", TAGGER_STOP_TIMEOUT_SECONDS="3")
    status = worker.stop(timeout=60)
    assert status == STOP_TIMEOUT_EXIT_STATUS, f"exit status {status}:\n{worker.log_tail()}"
    log = worker.log_text()
    assert "has not stopped 3 s after it began to" in log
    assert "in never_finish" in log, "the stacks logged do not show the stuck shutdown step"


def test_a_stop_that_finishes_exits_0_before_the_stop_timeout(start_worker: Any) -> None:
    worker, _ = start_worker(TAGGER_STOP_TIMEOUT_SECONDS="60")
    status = worker.stop(timeout=60)
    assert status == 0, f"exit status {status}:\n{worker.log_tail()}"
    assert "has not stopped" not in worker.log_text()


def emitted(worker: Any) -> float:
    """Records the worker has emitted so far, from its /metrics."""
    return float(worker.total("content_tagger_events_out_total"))


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_stop_in_mid_stream_finishes_by_itself(start_worker: Any, guarantee: str) -> None:
    """SIGTERM while batches are being sent and committed: the worker stops by itself, exit status 0."""
    worker, topics = start_worker(TAGGER_PROCESSING_GUARANTEE=guarantee, TAGGER_STOP_TIMEOUT_SECONDS="60")
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    messages = mixed_stream(read_rows(ROOT / "data" / "dataset.csv"), 6000, seed=3)
    run(produce(bootstrap, topics.input, [(m.key, m.value, None) for m in messages]))
    deadline = time.monotonic() + 120
    while emitted(worker) < 500 and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped_at = emitted(worker)
    status = worker.stop(timeout=90)
    assert status == 0, f"exit status {status}:\n{worker.log_tail()}"
    assert 500 <= stopped_at < len(messages), f"not stopped in mid-stream: {stopped_at} emitted"


REBALANCED = "generation id"
"""What Faust logs when a rebalance has given the worker its partitions."""


def distinct_events(count: int, prefix: str) -> list[tuple[bytes, bytes, None]]:
    """``count`` valid events of distinct titles, ids prefixed by ``prefix``."""
    rows = read_rows(ROOT / "data" / "dataset.csv")
    events = []
    for n in range(count):
        row = rows[n % len(rows)]
        event = {**row, "id": f"{prefix}-{n}", "title": f"{row['title']} ({prefix} {n})"}
        events.append((str(event["id"]).encode(), event_value(event), None))
    return events


def wait_for_rebalance(worker: Any, seen: int) -> None:
    """Wait until ``worker`` has logged more than ``seen`` rebalances."""
    deadline = time.monotonic() + 60
    while worker.log_text().count(REBALANCED) == seen:
        assert time.monotonic() < deadline, f"no rebalance:\n{worker.log_tail()}"
        time.sleep(0.02)


def test_a_fleet_stopped_just_after_a_rebalance_processes_nothing_twice_when_it_restarts(start_worker: Any) -> None:
    """A worker commits what it processed when a rebalance takes its partitions (faust-streaming #502 lost it).

    The commit interval is longer than the test, so only the commits of the rebalance and of the stops count: the
    second worker's partition is committed by its rebalance or never."""
    settings = {"TAGGER_COMMIT_INTERVAL_SECONDS": "600"}
    first, topics = start_worker(partitions=2, **settings)
    second, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **settings)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    before = distinct_events(60, "before")
    run(produce(bootstrap, topics.input, before))
    ids = [key.decode() for key, _, _ in before]
    assert not run(account(bootstrap, topics, ids, timeout=90, settle=0)).missing(ids)

    rebalances = second.log_text().count(REBALANCED)
    assert first.stop() == 0
    wait_for_rebalance(second, rebalances)  # the second takes both partitions over
    assert second.stop() == 0

    start_worker(partitions=2, topics=topics, app_id=first.app_id, **settings)
    after = distinct_events(60, "after")
    run(produce(bootstrap, topics.input, after))
    ids += [key.decode() for key, _, _ in after]
    ledger = run(account(bootstrap, topics, ids, timeout=90, settle=2))
    assert not ledger.missing(ids), ledger.missing(ids)
    assert ledger.repeated() == {}


def test_peers_joining_and_leaving_a_flowing_stream_make_the_worker_process_nothing_twice(start_worker: Any) -> None:
    """At least once, a rebalance in mid-stream commits the records acked up to the moment the partitions are
    revoked, those of the batch in flight too: a commit made while records still flowed left the acks of its round
    trip uncommitted, and they were processed again (decision 0049)."""
    settings = {"TAGGER_COMMIT_INTERVAL_SECONDS": "600"}  # only the rebalances' and stops' commits count
    worker, topics = start_worker(partitions=2, **settings)
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    events = distinct_events(4500, "flowing")
    sending = threading.Thread(target=run, args=(produce_paced(bootstrap, topics.input, events, rate=300),))
    sending.start()
    for _ in range(2):
        rebalances = worker.log_text().count(REBALANCED)
        peer, _ = start_worker(partitions=2, topics=topics, app_id=worker.app_id, **settings)
        wait_for_rebalance(worker, rebalances)
        time.sleep(1)
        assert peer.stop() == 0
        time.sleep(1)
    sending.join()
    ids = [key.decode() for key, _, _ in events]
    ledger = run(account(bootstrap, topics, ids, timeout=120, settle=3))
    assert not ledger.missing(ids), ledger.missing(ids)[:10]
    assert ledger.repeated() == {}
