"""Record batches sent by ``send_batched`` on a real broker: where aiokafka's own ``send`` would put them, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.delivery.batched import Record, send_batched
from tests.integration.harness import run

PARTITIONS = 4


async def read_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def test_keyed_records_land_where_send_puts_them_in_order_across_full_batches(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Downstream consumers rely on Kafka's key partitioning (one id, one partition, in order), so the batched
    path must place every keyed record as the producer's own ``send`` does, keep each partition's order when a
    batch fills up, and deliver records without a key too."""
    batched, reference = new_topic("batched", PARTITIONS), new_topic("reference", PARTITIONS)
    keys = [f"item-{i}".encode() for i in range(300)]
    value = b"x" * 400  # 300 records of ~450 bytes: several 16 kB batches per partition

    async def scenario() -> tuple[list[Any], list[Any]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=16_384, acks="all")
        await producer.start()
        try:
            records = [Record(batched, key, value + key, [("n", str(i).encode())]) for i, key in enumerate(keys)]
            records += [Record(batched, None, b"no key %d" % i) for i in range(20)]
            futures = await send_batched(producer, records)
            assert len(futures) > PARTITIONS, "no batch filled up: the overflow path is not exercised"
            await asyncio.gather(*futures)
            for key in keys:
                await producer.send(reference, value + key, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        return await read_all(kafka_bootstrap, batched, 320), await read_all(kafka_bootstrap, reference, 300)

    sent, expected = run(scenario())
    assert len(sent) == 320
    where = {record.key: record.partition for record in expected}
    keyed = [record for record in sent if record.key is not None]
    assert {record.key: record.partition for record in keyed} == where
    assert len(set(where.values())) == PARTITIONS
    for partition in range(PARTITIONS):
        numbers = [int(dict(r.headers)["n"]) for r in keyed if r.partition == partition]
        assert numbers == sorted(numbers), f"partition {partition} is out of order"
    assert all(record.value == value + record.key for record in keyed)
    assert sorted(r.value for r in sent if r.key is None) == sorted(b"no key %d" % i for i in range(20))


def test_records_of_an_aborted_transaction_are_not_read(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    """In a transaction, the batches' partitions join it: an abort must take every batched record with it, and a
    commit must make them readable (read_committed), or exactly-once would show a failed batch's outputs."""
    topic = new_topic("batched-txn", PARTITIONS)

    async def scenario() -> list[Any]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-txn")
        await producer.start()
        try:
            await producer.begin_transaction()
            await asyncio.gather(
                *await send_batched(producer, [Record(topic, b"k%d" % i, b"aborted") for i in range(40)])
            )
            await producer.abort_transaction()
            await producer.begin_transaction()
            await asyncio.gather(
                *await send_batched(producer, [Record(topic, b"k%d" % i, b"committed") for i in range(40)])
            )
            await producer.commit_transaction()
        finally:
            await producer.stop()
        return await read_all(kafka_bootstrap, topic, 40)

    records = run(scenario())
    assert [record.value for record in records] == [b"committed"] * 40
