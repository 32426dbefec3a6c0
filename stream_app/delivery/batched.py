"""Sending a batch's records as one Kafka record batch per topic partition.

aiokafka's ``send`` costs, per record, a metadata wait, a partition look-up over sets, a future and a trip through
the accumulator; ``create_batch``/``send_batch`` pay those once per partition. The records land where ``send``
would put them: aiokafka's default partitioner chooses (murmur2 of the key, as the Java client; a random
available partition for a record without a key), unless the record names its partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

_PARTITIONER = DefaultPartitioner()


# A named tuple, not a frozen dataclass: several are made for every event, at half the cost.
class Record(NamedTuple):
    """One record to send."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None
    """Where it goes; None to let the partitioner choose by its key."""


async def send_batched(producer: AIOKafkaProducer, records: Sequence[Record]) -> list[asyncio.Future[Any]]:
    """Queue ``records`` on ``producer`` in one record batch per topic partition (more when one fills up), in
    order within each partition; the futures resolve when the broker has each batch, or fail with its error.

    In a transaction, the partitions join the producer's open transaction as ``send`` would add them.
    """
    partitions: dict[str, tuple[list[int], list[int]]] = {}
    builders: dict[tuple[str, int], Any] = {}
    futures: list[asyncio.Future[Any]] = []
    for record in records:
        partition = record.partition
        if partition is None:
            if record.topic not in partitions:
                every = sorted(await producer.partitions_for(record.topic))
                available = list(producer.client.cluster.available_partitions_for_topic(record.topic))
                partitions[record.topic] = every, available
            every, available = partitions[record.topic]
            # One partition needs no hash (murmur2 is pure Python, and bench and small deployments have one).
            partition = every[0] if len(every) == 1 else _PARTITIONER(record.key, every, available)
        builder = builders.get((record.topic, partition)) or producer.create_batch()
        # A full batch takes no more records, an empty one always takes the first: the loop ends in one turn.
        while builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers or []) is None:
            futures.append(await _send(producer, builder, record.topic, partition))
            builder = producer.create_batch()
        builders[record.topic, partition] = builder
    for (topic, partition), builder in builders.items():
        futures.append(await _send(producer, builder, topic, partition))
    return futures


async def _send(producer: AIOKafkaProducer, builder: Any, topic: str, partition: int) -> asyncio.Future[Any]:
    # Closed, a batch leaves at the sender's next turn: an open one lingers (linger_ms) for sends that never come.
    builder.close()
    return cast(asyncio.Future[Any], await producer.send_batch(builder, topic, partition=partition))
