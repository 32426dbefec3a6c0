"""The worker's consumer fixes on a real broker. Seeking back to the committed offsets, as Faust does after
dropping records it fetched during a rebalance: a partition nobody committed goes back to its first record instead
of staying past the dropped ones. And a backlogged partition is fetched again while one beside it is idle."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.faust_patches.consumer import seek_to_committed_or_earliest
from stream_app.faust_patches.fetch_wait import bound_fetch_wait
from tests.integration.harness import ROOT, run
from tests.integration.race_app import SEEK_LINGER_SECONDS

RECORDS_PER_PARTITION = 5


async def read_everything(bootstrap: str, partitions: list[TopicPartition]) -> AIOKafkaConsumer:
    """A started group consumer that has fetched every record of ``partitions`` (its positions at the ends)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for tp in partitions:
            for n in range(RECORDS_PER_PARTITION):
                await producer.send_and_wait(tp.topic, f"{tp.partition}-{n}".encode(), partition=tp.partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"rewind-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    consumer.assign(partitions)
    fetched = 0
    while fetched < RECORDS_PER_PARTITION * len(partitions):
        fetched += sum(len(records) for records in (await consumer.getmany(timeout_ms=1000)).values())
    return consumer


def test_a_partition_without_a_committed_offset_is_read_again_from_its_first_record(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    stream, changelog = new_topic("rewind-stream", partitions=2), new_topic("rewind-changelog")
    uncommitted, committed, changelog_tp = (
        TopicPartition(stream, 0),
        TopicPartition(stream, 1),
        TopicPartition(changelog, 0),
    )

    async def scenario() -> tuple[dict[TopicPartition, int | None], dict[TopicPartition, int], int]:
        consumer = await read_everything(kafka_bootstrap, [uncommitted, committed, changelog_tp])
        try:
            await consumer.commit({committed: 3})
            # aiokafka's own seek leaves the uncommitted partition at its end: the records are never read again.
            await consumer.seek_to_committed()
            left_at = await consumer.position(uncommitted)
            offsets = await seek_to_committed_or_earliest(consumer, positioned_elsewhere={changelog})
            positions = {tp: await consumer.position(tp) for tp in (uncommitted, committed, changelog_tp)}
            return offsets, positions, left_at
        finally:
            await consumer.stop()

    offsets, positions, left_at = run(scenario())
    assert left_at == RECORDS_PER_PARTITION
    assert offsets == {uncommitted: None, committed: 3, changelog_tp: None}
    assert positions[uncommitted] == 0, "a partition nobody committed restarts from its first record"
    assert positions[committed] == 3, "a committed partition restarts from its committed offset"
    assert positions[changelog_tp] == RECORDS_PER_PARTITION, "table recovery positions the changelogs itself"


SEEK_RACE_RECORDS, SEEK_RACE_COMMITTED = 200, 100


def offsets_handed_on(
    scenario: str,
    consumer: str,
    committed: int,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    idle_seconds: float = 3.0,
) -> tuple[list[int], str]:
    """Run a ``scenario`` of ``tests/integration/race_app.py`` with ``consumer`` on a partition of 200 records
    committed up to ``committed``; return the offsets its agent got, in order, once it has been idle for
    ``idle_seconds``, and its log."""
    topic, app_id = new_topic(f"{scenario}-race"), f"{scenario}-race-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, 0)

    async def prepare() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for n in range(SEEK_RACE_RECORDS):
                await producer.send(topic, str(n).encode(), partition=0)
            await producer.flush()
        finally:
            await producer.stop()
        if not committed:
            return
        committer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=app_id, enable_auto_commit=False)
        await committer.start()
        try:
            committer.assign([tp])
            await committer.commit({tp: committed})
        finally:
            await committer.stop()

    run(prepare())
    offsets_path, log_path = tmp_path / "offsets.txt", tmp_path / "worker.log"
    env = {
        **os.environ,
        "SEEK_RACE_BOOTSTRAP": kafka_bootstrap,
        "SEEK_RACE_TOPIC": topic,
        "SEEK_RACE_APP_ID": app_id,
        "SEEK_RACE_OFFSETS": str(offsets_path),
        "SEEK_RACE_DATA_DIR": str(tmp_path / "data"),
    }
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.race_app", scenario, consumer],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline, last_size, idle_since = time.monotonic() + 90, -1, time.monotonic()
        while time.monotonic() < deadline and worker.poll() is None:
            size = offsets_path.stat().st_size if offsets_path.exists() else 0
            if size != last_size:
                last_size, idle_since = size, time.monotonic()
            elif size and time.monotonic() - idle_since > idle_seconds:
                break
            time.sleep(0.2)
        assert worker.poll() is None, log_path.read_text(errors="replace")[-3000:]
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return [int(line) for line in offsets_path.read_text().split()], log_path.read_text(errors="replace")


def offsets_handed_on_after_a_seek(
    consumer: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> list[int]:
    """The offsets the ``seek`` race app handed on, its partition committed up to offset 100."""
    offsets, _ = offsets_handed_on("seek", consumer, SEEK_RACE_COMMITTED, kafka_bootstrap, new_topic, tmp_path)
    return offsets


def test_records_fetched_before_a_seek_do_not_hide_the_records_it_reads_again(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    offsets = offsets_handed_on_after_a_seek("tagger", kafka_bootstrap, new_topic, tmp_path)
    assert offsets[0] == SEEK_RACE_COMMITTED, "the worker starts at the committed offset"
    assert set(offsets) == set(range(SEEK_RACE_RECORDS)), "every record below and above the seek is handed on"
    assert offsets.index(0) < 10, "records fetched before the seek wait for the re-read (only those in flight run)"


def test_faust_alone_loses_the_records_a_seek_reads_again(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The race the worker's consumer closes, shown with Faust's own: records of the first fetch, handed on after
    the seek, move its read offset past the records below them, which it then drops as read already."""
    offsets = offsets_handed_on_after_a_seek("faust", kafka_bootstrap, new_topic, tmp_path)
    assert offsets[0] == SEEK_RACE_COMMITTED
    assert set(range(SEEK_RACE_COMMITTED)) - set(offsets), "Faust hands on none of them a second time"


def offsets_handed_on_across_a_rebalance(
    consumer: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> list[int]:
    """The offsets the ``rebalance`` race app handed on, after checking that the rebalance it asked for happened."""
    # The worker's consumer hands nothing on while the seek lingers, nor during the rebalance before it.
    idle = SEEK_LINGER_SECONDS + 5
    offsets, log = offsets_handed_on("rebalance", consumer, 0, kafka_bootstrap, new_topic, tmp_path, idle)
    assert log.count("Setting newly assigned partitions") >= 2, log[-3000:]
    assert offsets[0] == 0, "the worker starts at the first record"
    return offsets


def test_records_fetched_after_a_rebalance_seek_are_not_lost_when_the_flow_resumes(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    offsets = offsets_handed_on_across_a_rebalance("tagger", kafka_bootstrap, new_topic, tmp_path)
    assert set(offsets) == set(range(SEEK_RACE_RECORDS)), (
        f"never handed on: {sorted(set(range(SEEK_RACE_RECORDS)) - set(offsets))[:20]}"
    )


def test_faust_alone_drops_the_records_fetched_between_a_rebalance_seek_and_the_resume(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The race the worker's consumer closes, shown with Faust's own: the records queued after the seek are
    emptied from the queue when the flow resumes, past their read offsets, so nothing reads them again."""
    offsets = offsets_handed_on_across_a_rebalance("faust", kafka_bootstrap, new_topic, tmp_path)
    assert set(range(SEEK_RACE_RECORDS)) - set(offsets), "Faust hands every record on"


IDLE_FETCH_WAIT_MS = 5_000
"""The wait the test consumer is built with: longer than Faust's 1.5 s, so the two outcomes lie seconds apart."""


def records_fetched_again_beside_an_idle_partition(
    kafka_bootstrap: str, new_topic: Callable[..., str], bounded: bool
) -> int:
    """How many more records of a backlogged partition a consumer gets within 2 s of taking all it held, while
    the partition beside it (same broker) has none: aiokafka has meanwhile sent a fetch of the idle partition
    alone, which the broker holds for the consumer's fetch wait (bounded by :func:`bound_fetch_wait` or not)."""
    topic = new_topic("fetch-wait", partitions=2)
    busy, idle = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def scenario() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for n in range(40):  # one record batch each, so that a fetch of 1 KiB returns several and not all
                await producer.send_and_wait(topic, b"%03d" % n + b"x" * 100, partition=busy.partition)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=IDLE_FETCH_WAIT_MS,
            request_timeout_ms=IDLE_FETCH_WAIT_MS + 10_000,
            max_partition_fetch_bytes=1024,
        )
        await consumer.start()
        try:
            if bounded:
                bound_fetch_wait(consumer)
            consumer.assign([busy, idle])
            first = await consumer.getmany(busy, timeout_ms=10_000, max_records=1)
            assert len(first.get(busy, [])) == 1
            # Past aiokafka's prefetch backoff (0.1 s) the rest of the fetch still waits to be taken, so aiokafka
            # fetches the idle partition alone.
            await asyncio.sleep(0.3)
            held = await consumer.getmany(busy, timeout_ms=0)
            assert held.get(busy), "the first fetch returned more than one record"
            again = await consumer.getmany(busy, timeout_ms=2_000)
            return len(again.get(busy, []))
        finally:
            await consumer.stop()

    return cast(int, run(scenario()))


def test_a_backlog_is_fetched_again_while_the_partition_beside_it_is_idle(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    assert records_fetched_again_beside_an_idle_partition(kafka_bootstrap, new_topic, bounded=True) > 0


def test_aiokafka_alone_holds_a_backlog_behind_the_fetch_of_an_idle_partition(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """What :func:`bound_fetch_wait` works around, shown with aiokafka's own fetcher: the backlog's next fetch
    waits for the idle partition's, which the broker holds for the whole fetch wait."""
    assert records_fetched_again_beside_an_idle_partition(kafka_bootstrap, new_topic, bounded=False) == 0
