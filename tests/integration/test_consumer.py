"""Seeking back to the committed offsets on a real broker, as Faust does after dropping records it fetched during a
rebalance: a partition nobody committed goes back to its first record instead of staying past the dropped ones."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.consumer import seek_to_committed_or_earliest
from tests.integration.harness import run

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
