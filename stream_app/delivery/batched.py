"""Sending a batch's records as one Kafka record batch per topic partition.

aiokafka's ``send`` costs, per record, a metadata wait, a partition look-up over sets, a future and a trip through
the accumulator; ``create_batch``/``send_batch`` pay those once per partition. The records land where ``send``
would put them: a keyed record on Kafka's default partition for its key (murmur2, as the Java client), one
without a key on a random available partition.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any, Protocol, cast

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2


class OutgoingRecord(Protocol):
    """What :func:`send_batched` sends of a record."""

    @property
    def topic(self) -> str: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> list[tuple[str, bytes]] | None: ...


def key_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partition for ``key`` among ``partitions`` (murmur2, positive, modulo the count)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


async def send_batched(producer: AIOKafkaProducer, records: Sequence[OutgoingRecord]) -> list[asyncio.Future[Any]]:
    """Queue ``records`` on ``producer`` in one record batch per topic partition (more when one fills up), in
    order within each partition; the futures resolve when the broker has each batch, or fail with its error.

    In a transaction, the partitions join the producer's open transaction as ``send`` would add them.
    """
    counts: dict[str, int] = {}
    builders: dict[tuple[str, int], Any] = {}
    futures: list[asyncio.Future[Any]] = []
    for record in records:
        count = counts.get(record.topic)
        if count is None:
            count = counts[record.topic] = len(await producer.partitions_for(record.topic))
        if record.key is None:
            partition = _any_available(producer, record.topic, count)
        else:
            partition = 0 if count == 1 else key_partition(record.key, count)
        builder = builders.get((record.topic, partition))
        if builder is None:
            builder = builders[record.topic, partition] = producer.create_batch()
        if builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers or []) is None:
            # Full (a batch always takes its first record): send it, and go on in a new one.
            futures.append(await _send(producer, builder, record.topic, partition))
            builder = builders[record.topic, partition] = producer.create_batch()
            builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers or [])
    for (topic, partition), builder in builders.items():
        futures.append(await _send(producer, builder, topic, partition))
    return futures


async def _send(producer: AIOKafkaProducer, builder: Any, topic: str, partition: int) -> asyncio.Future[Any]:
    # Closed, a batch leaves at the sender's next turn: an open one lingers (linger_ms) for sends that never come.
    builder.close()
    return cast(asyncio.Future[Any], await producer.send_batch(builder, topic, partition=partition))


def _any_available(producer: AIOKafkaProducer, topic: str, count: int) -> int:
    """A random partition of ``topic`` with a leader, any partition if none has one (as aiokafka's ``send``)."""
    available = producer.client.cluster.available_partitions_for_topic(topic)
    return random.choice(sorted(available)) if available else random.randrange(count)  # noqa: S311 - spreading load
