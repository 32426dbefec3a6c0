"""The exactly-once stage's transactional producers on a real broker."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.delivery.batched import Record
from stream_app.delivery.transactions import PRODUCER_STOP_SECONDS, PartitionTransactions
from tests.integration.harness import OwnBroker, create_topic, ids_in, produce, read_outputs, run
from tests.integration.test_worker import dataset_rows, distinct_rows
from tools.replay import event_value


def test_claims_made_at_once_leave_one_producer_per_claimed_partition(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Faust seeks, and so claims, from its fetch loop and from table recovery at the same time after a
    rebalance; a second claim must not stop a producer the first has already stopped (it crashed a worker)."""
    topic = new_topic("claims", partitions=3)
    kept, *given_up = (TopicPartition(topic, partition) for partition in range(3))

    async def scenario() -> set[TopicPartition]:
        transactions = PartitionTransactions(
            "route", f"claims-{uuid.uuid4().hex[:8]}", {"bootstrap_servers": kafka_bootstrap}
        )
        try:
            await transactions.claim([kept, *given_up])
            await asyncio.gather(transactions.claim([kept]), transactions.claim([kept]))
            return set(transactions._producers)
        finally:
            await transactions.stop()

    assert run(scenario()) == {kept}


def test_a_commit_cancelled_while_the_broker_is_away_ends_at_once_and_commits_nothing(
    own_broker: OwnBroker,
) -> None:
    """A worker that stops during a broker outage cancels the commit its agent is in. The cancel must end the
    commit at once: aiokafka's abort would wait for the broker, and hold up the stop with it (a worker hung 4
    minutes so). The stop must leave nothing of the producer running. The transaction must not count when the
    broker is back: the partition's next producer aborts it, and the next commit takes its place."""
    bootstrap = own_broker.bootstrap
    source, group = TopicPartition("in", 0), "outage"

    async def scenario() -> tuple[int | None, list[bytes]]:
        for name in ("in", "out"):
            await create_topic(bootstrap, name, 1)
        client = {"bootstrap_servers": bootstrap}
        transactions = PartitionTransactions("route", group, client)
        await transactions.claim([source])
        await transactions.commit(source, 1, [Record("out", b"1", b"first")])
        await asyncio.to_thread(own_broker.stop)
        commit = asyncio.ensure_future(transactions.commit(source, 2, [Record("out", b"2", b"lost")]))
        await asyncio.sleep(2)
        assert not commit.done(), "the commit did not wait for the broker: the scenario tests nothing"
        commit.cancel()
        await asyncio.wait({commit}, timeout=5)
        assert commit.cancelled(), "the cancelled commit was still running 5 s later"
        await asyncio.wait_for(transactions.stop(), PRODUCER_STOP_SECONDS + 5)  # raises TimeoutError if it hangs
        running = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        assert not running, f"the stopped producer left tasks running, and its connections open: {running}"
        await asyncio.to_thread(own_broker.start)
        successor = PartitionTransactions("route", group, client)
        await successor.claim([source])
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, isolation_level="read_committed")
        await consumer.start()
        try:
            # Right after a restart the group's offsets may not be readable yet (committed() answers None while
            # the coordinator loads them): wait for an answer, which must then be the first commit's.
            offset = None
            for _ in range(150):
                offset = await consumer.committed(source)
                if offset is not None:
                    break
                await asyncio.sleep(0.2)
            await successor.commit(source, 2, [Record("out", b"2", b"second")])
            await successor.stop()
            out = TopicPartition("out", 0)
            consumer.assign([out])
            await consumer.seek_to_beginning(out)
            # The coordinator answers a commit before it has written the commit markers, so a read_committed
            # reader may see "second" a fetch or two later: read until it arrives or 10 s have passed.
            values: list[bytes] = []
            deadline = asyncio.get_running_loop().time() + 10
            while b"second" not in values and asyncio.get_running_loop().time() < deadline:
                records = await consumer.getmany(out, timeout_ms=500)
                values += [record.value for record in records.get(out, []) if record.value is not None]
        finally:
            await consumer.stop()
        return offset, values

    offset, values = run(scenario())
    assert offset == 1
    assert values == [b"first", b"second"]


SYNCED = "Successfully synced group"
"""What aiokafka logs when the worker has joined its group after a rebalance."""


@pytest.mark.slow
def test_a_worker_expelled_unawares_and_given_its_partitions_back_goes_on(start_worker: Any) -> None:
    """A worker paused past its session (a long GC pause, a frozen VM) is expelled; another takes its partitions,
    and its producers fence the paused worker's. When the paused worker resumes and gets the partitions back, it
    must start new producers: the old ones are fenced, and a commit through them stopped the worker."""
    rows = distinct_rows(dataset_rows())[:160]
    first_part, second_part = rows[:80], rows[80:]
    # Every log record written: the test counts a line that repeats within seconds.
    env = {
        "TAGGER_PROCESSING_GUARANTEE": "exactly_once",
        "TAGGER_SESSION_TIMEOUT_SECONDS": "6",
        "TAGGER_LOG_REPEAT_SECONDS": "0",
    }
    first, topics = start_worker(partitions=2, **env)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]

    def send(part: list[dict[str, Any]]) -> None:
        run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in part]))

    def landed(expected: int) -> list[str]:
        outputs = run(read_outputs(bootstrap, topics, expected, timeout=90, settle=0.5))
        return ids_in(outputs["tagged"]) + ids_in(outputs["review"]) + ids_in(outputs["duplicate"])

    send(first_part)
    assert len(landed(80)) == 80, first.log_tail()
    assert first.process is not None
    first.process.send_signal(signal.SIGSTOP)
    try:
        # Ready once the first was expelled and this one claimed both partitions: their producers are fenced.
        second, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **env)
        assert second.stop() == 0
    finally:
        synced = first.log_text().count(SYNCED)
        first.process.send_signal(signal.SIGCONT)
    # No event is sent until the first has rejoined. One it took before it learnt it was expelled would be
    # committed through a fenced producer, and stop it (README, delivery guarantees): the zombie fencing that
    # exactly-once is for, not what this test is about.
    deadline = time.monotonic() + 60
    while first.log_text().count(SYNCED) == synced or first.page("/ready")[0] != 200:
        assert time.monotonic() < deadline and first.process.poll() is None, first.log_tail()
        time.sleep(0.2)
    send(second_part)
    ids = landed(160)
    assert first.process.poll() is None, f"the resumed worker stopped:\n{first.log_tail()}"
    assert sorted(ids) == sorted(str(r["id"]) for r in rows)
