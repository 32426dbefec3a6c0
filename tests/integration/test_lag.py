"""The consumer lag of a stuck agent counts the batch it holds and keeps growing with the input, past what the
consumer buffers: the backlog ``ContentTaggerStalled`` fires on; and offsets the agent is never given (an
aborted transaction's records, transaction markers) are never shown and stop counting once the partition is idle
(real broker)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.harness import produce, read_outputs, run
from tools.replay import event_value

pytestmark = [pytest.mark.kafka]

FIRST, MORE = 8_000, 2_000
"""Messages sent before the first reading, more than the consumer and Faust buffer for a stuck agent (an inlet of
4,096 events and a fetch of 1 MiB), then after it."""


def lag(worker: Any) -> float:
    """The worker's ``content_tagger_consumer_lag`` of partition 0 (-1 before its first report)."""
    found = worker.samples("content_tagger_consumer_lag", partition="0")
    return found[0][1] if found else -1.0


def settled(worker: Any, at_least: float, timeout: float) -> float:
    """The lag once it reads ``at_least`` and two reports 6 s apart agree, or the last reading at ``timeout``."""
    deadline, last = time.monotonic() + timeout, -1.0
    while time.monotonic() < deadline:
        now = lag(worker)
        if now >= at_least and now == last:
            return now
        last = now
        time.sleep(6.0)
    return last


def test_the_lag_of_a_stuck_agent_counts_its_batch_and_grows_past_what_the_consumer_buffers(start_worker: Any) -> None:
    # A stuck agent never finishes its stop: the deadline ends it (test_stop.py tests that part).
    worker, topics = start_worker(module="tests.integration.stuck_agent_app", TAGGER_STOP_TIMEOUT_SECONDS="3")
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    description = "A long enough description of a project, as scrapers send them. " * 4

    def send(first: int, count: int) -> None:
        events = (
            {"id": n, "title": f"Project number {n}", "description": description} for n in range(first, first + count)
        )
        run(produce(bootstrap, topics.input, [(str(e["id"]).encode(), event_value(e), 0) for e in events]))

    send(0, FIRST)
    # The first batch, which the agent took and holds, counts too: with nothing behind it, it is all the backlog.
    before = settled(worker, FIRST, 90)
    assert before >= FIRST, (before, worker.log_tail())
    send(FIRST, MORE)
    after = settled(worker, before + MORE, 60)
    assert after >= before + MORE, (before, after, worker.log_tail())


async def commit_one_then_abort(bootstrap: str, topic: str, aborted: int) -> None:
    """One event in a committed transaction, then ``aborted`` events in a transaction that is aborted, as a
    transactional scraper does when it fails half-way."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"scraper-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        async with producer.transaction():
            event = {"id": "kept", "title": "Object detection with YOLO on drones", "description": "Drones."}
            await producer.send_and_wait(topic, event_value(event), key=b"kept", partition=0)
        await producer.begin_transaction()
        for n in range(aborted):
            event = {"id": f"aborted-{n}", "title": f"Aborted project number {n}", "description": "Never sent."}
            await producer.send(topic, event_value(event), key=f"aborted-{n}".encode(), partition=0)
        await producer.flush()
        await producer.abort_transaction()
    finally:
        await producer.stop()


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_an_upstream_s_aborted_transaction_is_never_shown_and_leaves_no_lag(start_worker: Any, guarantee: str) -> None:
    """Read committed, the 50 aborted records and the two markers are never given to the agent: counted as lag on
    a quiet stream, they fired ContentTaggerStalled (critical) on a worker with nothing to do. At least once, the
    worker read them uncommitted, and tagged and showed the 50 events their writer had withdrawn."""
    worker, topics = start_worker(TAGGER_PROCESSING_GUARANTEE=guarantee)
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    run(commit_one_then_abort(bootstrap, topics.input, 50))
    outputs = run(read_outputs(bootstrap, topics, 1, timeout=60, settle=0.5))
    assert sum(len(records) for records in outputs.values()) == 1, outputs
    deadline, readings = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        readings.append(lag(worker))
        if readings[-1] == 0 and len(readings) > 1:
            break
        time.sleep(2.0)
    assert readings[-1] == 0, (readings, worker.log_tail())
    assert worker.total("content_tagger_events_consumed_total") == 1
