"""The local broker behaves like Kafka: consumer groups commit offsets, transactions hide aborted writes."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

MESSAGES = 10_000
PARTITIONS = 3
# A bound on waiting for the broker, so that a broken broker fails a test instead of hanging it.
WAIT_S = 60.0


async def _produce_numbered(bootstrap: str, topic: str, count: int) -> None:
    """Send the numbers 0..count-1, in order, spread over the partitions by key; wait for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        deliveries = [await producer.send(topic, str(n).encode(), key=str(n % 97).encode()) for n in range(count)]
        await asyncio.gather(*deliveries)  # raises if the broker refused any message
    finally:
        await producer.stop()


async def _wait_for_assignment(consumer: AIOKafkaConsumer, partitions: int) -> set[TopicPartition]:
    async with asyncio.timeout(WAIT_S):
        while len(consumer.assignment()) < partitions:
            await asyncio.sleep(0.05)
    return set(consumer.assignment())


async def _positions(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    return {tp: await consumer.position(tp) for tp in partitions}


async def _drain(consumer: AIOKafkaConsumer, partitions: int) -> dict[int, list[bytes]]:
    """Read every assigned partition up to its end offset (as of the start) and return the values by partition.

    The end offset follows the consumer's isolation level: for ``read_committed`` it is the last stable offset,
    so a finished transaction (committed or aborted) is read past in full either way.
    """
    assigned = await _wait_for_assignment(consumer, partitions)
    ends = await consumer.end_offsets(list(assigned))
    seen: dict[int, list[bytes]] = defaultdict(list)
    async with asyncio.timeout(WAIT_S):
        while any(position < ends[tp] for tp, position in (await _positions(consumer, list(ends))).items()):
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                seen[tp.partition] += [record.value for record in records]
    return seen


async def _consume_group(bootstrap: str, topic: str, group: str) -> tuple[dict[int, list[int]], dict[int, int]]:
    """As a member of ``group``: read the topic to its end, commit, and return (values, start positions)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        assigned = await _wait_for_assignment(consumer, PARTITIONS)
        # Where the group's committed offsets (or "earliest", without any) put this member.
        start = {tp.partition: await consumer.position(tp) for tp in assigned}
        seen = await _drain(consumer, PARTITIONS)
        await consumer.commit()
    finally:
        await consumer.stop()
    return {p: [int(v) for v in values] for p, values in seen.items()}, start


async def _committed_and_end(bootstrap: str, topic: str, group: str) -> tuple[dict[int, int | None], dict[int, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: await consumer.committed(tp) for tp in partitions}
        ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()
    return committed, ends


def test_ten_thousand_messages_come_back_once_in_order_through_a_consumer_group(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("roundtrip", PARTITIONS)
    group = f"group-{uuid.uuid4().hex[:8]}"
    asyncio.run(_produce_numbered(kafka_bootstrap, topic, MESSAGES))

    seen, start = asyncio.run(_consume_group(kafka_bootstrap, topic, group))
    assert start == {p: 0 for p in range(PARTITIONS)}
    assert sorted(n for values in seen.values() for n in values) == list(range(MESSAGES))
    assert len(seen) == PARTITIONS  # the keys spread the messages over every partition
    for values in seen.values():  # sent in increasing order, so each partition holds them increasing
        assert values == sorted(values)

    committed, ends = asyncio.run(_committed_and_end(kafka_bootstrap, topic, group))
    assert committed == ends
    assert sum(ends.values()) == MESSAGES

    # The next member of the group starts at the committed offsets, so it has nothing left to read.
    seen_again, start_again = asyncio.run(_consume_group(kafka_bootstrap, topic, group))
    assert start_again == ends
    assert seen_again == {}


async def _committed_then_aborted(bootstrap: str, topic: str) -> None:
    """Write five messages in a committed transaction, then five in an aborted one."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        async with producer.transaction():
            for n in range(5):
                await producer.send(topic, f"committed-{n}".encode())
        await producer.begin_transaction()
        deliveries = [await producer.send(topic, f"aborted-{n}".encode()) for n in range(5)]
        await asyncio.gather(*deliveries)  # the aborted batch really is in the log before the abort
        await producer.abort_transaction()
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, isolation_level: str) -> list[str]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen = await _drain(consumer, 1)
    finally:
        await consumer.stop()
    return [value.decode() for values in seen.values() for value in values]


def test_read_committed_sees_a_committed_transaction_but_not_an_aborted_one(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("transactions")
    asyncio.run(_committed_then_aborted(kafka_bootstrap, topic))

    committed_view = asyncio.run(_read_all(kafka_bootstrap, topic, "read_committed"))
    uncommitted_view = asyncio.run(_read_all(kafka_bootstrap, topic, "read_uncommitted"))

    assert committed_view == [f"committed-{n}" for n in range(5)]
    assert uncommitted_view == committed_view + [f"aborted-{n}" for n in range(5)]
