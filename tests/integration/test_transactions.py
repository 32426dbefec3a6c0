"""The exactly-once stage's transactional producers on a real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from aiokafka import TopicPartition

from stream_app.transactions import PartitionTransactions
from tests.integration.harness import run


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
