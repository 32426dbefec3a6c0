"""The worker's /ready page on a real broker: not ready until it has joined its consumer group and taken up its
partitions, not ready while a rebalance moves them, ready again after it; /health (liveness) answers all along."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.harness import produce, read_outputs, run
from tests.integration.test_worker import dataset_rows, distinct_rows
from tools.replay import event_value

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """The consumer group's state and its number of members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (entry,) = [g for response in described for g in response.groups]
    return str(entry[2]), len(entry[5])


class ReadyPoller(threading.Thread):
    """Asks a worker's /ready page every 5 ms and keeps each answer, until stopped: a rebalance of two partitions
    can end within a few tens of milliseconds."""

    def __init__(self, worker: Any) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.answers: list[tuple[int | None, dict[str, Any]]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.answers.append(self.worker.page("/ready"))
            time.sleep(0.005)


def test_ready_only_after_joining_the_group_and_not_while_a_rebalance_moves_partitions(start_worker: Any) -> None:
    worker, topics = start_worker(partitions=2)
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    answers = worker.start_answers

    # Faust's web server starts before the consumer joins its group: alive, but not ready, and saying why.
    early = [body for health, ready, body in answers if health == 200 and ready == 503]
    assert early, f"never alive-but-not-ready while starting: {answers}"
    assert all(body["status"] == "not ready" and body["reason"] for body in early)
    assert answers[-1][1] == 200 and answers[-1][2]["status"] == "ready"
    assert run(group_state(bootstrap, worker.app_id)) == ("Stable", 1)

    # A second member joins: the first gives up a partition and is not ready until the rebalance has ended.
    poller = ReadyPoller(worker)
    poller.start()
    second, _ = start_worker(partitions=2, topics=topics, app_id=worker.app_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not poller.answers or poller.answers[-1][0] != 200):
        time.sleep(0.1)
    poller.stopped.set()
    poller.join()
    rebalancing = [body for status, body in poller.answers if status == 503]
    assert rebalancing, f"the first worker stayed ready through the rebalance: {poller.answers[:5]}"
    assert all("rebalancing" in body["reason"] for body in rebalancing)
    assert poller.answers[-1][0] == 200 and second.page("/ready")[0] == 200
    assert run(group_state(bootstrap, worker.app_id)) == ("Stable", 2)

    # Both ready: events on both partitions are processed, each into exactly one output.
    rows = distinct_rows(dataset_rows())[:60]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in rows]))
    outputs = run(read_outputs(bootstrap, topics, len(rows), 120, settle=1.0))
    emitted = sorted(record["id"] for kind in ("tagged", "review", "duplicate") for record in outputs[kind])
    assert emitted == sorted(str(r["id"]) for r in rows)
