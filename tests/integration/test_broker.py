"""The local broker behaves like Kafka: consumer groups commit offsets, transactions hide aborted writes."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def _produce_numbered(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for n in range(count):
            await producer.send(topic, str(n).encode(), key=str(n % 97).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _consume_group(bootstrap: str, topic: str, group: str, idle_ms: int) -> dict[int, list[int]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[int, list[int]] = defaultdict(list)
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=idle_ms)
            if not batches and consumer.assignment():
                break
            for tp, records in batches.items():
                seen[tp.partition] += [int(r.value) for r in records]
            await consumer.commit()
    finally:
        await consumer.stop()
    return seen


async def _committed_and_end(bootstrap: str, topic: str, group: str) -> tuple[dict[int, int], dict[int, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        committed = {tp.partition: await consumer.committed(tp) for tp in partitions}
        ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()
    return committed, ends


def test_ten_thousand_messages_come_back_once_through_a_consumer_group(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("roundtrip", 3)
    group = f"group-{uuid.uuid4().hex[:8]}"
    asyncio.run(_produce_numbered(kafka_bootstrap, topic, 10_000))
    seen = asyncio.run(_consume_group(kafka_bootstrap, topic, group, idle_ms=2000))

    everything = sorted(n for values in seen.values() for n in values)
    assert everything == list(range(10_000))
    for values in seen.values():  # the producer sent in increasing order, so each partition is increasing
        assert values == sorted(values)
    committed, ends = asyncio.run(_committed_and_end(kafka_bootstrap, topic, group))
    assert committed == ends
    assert sum(ends.values()) == 10_000
    assert asyncio.run(_consume_group(kafka_bootstrap, topic, group, idle_ms=1500)) == {}


async def _transactional_batches(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        async with producer.transaction():
            for n in range(5):
                await producer.send(topic, f"committed-{n}".encode())
        await producer.begin_transaction()
        for n in range(5):
            await producer.send(topic, f"aborted-{n}".encode())
        await producer.flush()
        await producer.abort_transaction()
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, isolation_level: str) -> list[str]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level=isolation_level,
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[str] = []
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1500)
            if not batches and consumer.assignment():
                break
            values += [r.value.decode() for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return values


def test_read_committed_sees_a_committed_transaction_but_not_an_aborted_one(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("transactions")
    asyncio.run(_transactional_batches(kafka_bootstrap, topic))
    committed_view = asyncio.run(_read_all(kafka_bootstrap, topic, "read_committed"))
    uncommitted_view = asyncio.run(_read_all(kafka_bootstrap, topic, "read_uncommitted"))
    assert committed_view == [f"committed-{n}" for n in range(5)]
    assert uncommitted_view == committed_view + [f"aborted-{n}" for n in range(5)]
