"""Whether the input offsets an idle agent has not finished hold any record it could still be given.

The consumer lag counts from the first offset the agent has not finished (:class:`~stream_app.topology.agent.
StreamProgress`). Some offsets never reach it: the control markers that end producers' transactions and, read
committed, the records of aborted transactions. After them, on a quiet stream, the lag would stay at their
count, and ``ContentTaggerStalled`` would fire on a worker with nothing to do. So when a partition's lag has not
moved for a while, a consumer of the agent's own isolation level reads that stretch once: no record in it means
there is nothing to wait for.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

IDLE_SECONDS: Final = 10.0
"""How long a partition's unfinished offsets must stay as they are before the stretch is read."""
PROBE_SECONDS: Final = 3.0
"""Longest a stretch is read; one not read through by then keeps its lag."""


class EmptyStretches:
    """Reads stretches of input offsets, each with a consumer of its own (no group, nothing committed) that lives
    for that read: a stretch is read at most once, on a partition that has been idle for a while."""

    def __init__(self, client_options: Mapping[str, Any]) -> None:
        self.client_options = dict(client_options)
        self._known: dict[tuple[str, int], tuple[int, int, bool]] = {}
        """The last stretch read of each partition and whether it held a record: not read again unchanged."""

    async def holds_records(self, topic: str, partition: int, start: int, end: int) -> bool:
        """Whether offsets ``start`` to ``end`` (excluded) of the partition hold a record a consumer of this
        isolation level is given; True when that cannot be told (the broker does not answer in time)."""
        key = (topic, partition)
        known = self._known.get(key)
        if known is not None and known[:2] == (start, end):
            return known[2]
        try:
            held = await self._read(TopicPartition(topic, partition), start, end)
        except KafkaError:
            return True
        self._known[key] = (start, end, held)
        return held

    async def _read(self, tp: TopicPartition, start: int, end: int) -> bool:
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.client_options)
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + PROBE_SECONDS
            while time.monotonic() < deadline:
                fetched = (await consumer.getmany(tp, timeout_ms=200, max_records=1)).get(tp, [])
                if fetched:
                    return bool(fetched[0].offset < end)
                if await consumer.position(tp) >= end:  # past the stretch, skipping what it does not give
                    return False
            return True
        finally:
            await consumer.stop()
