"""The lag report against aiokafka's own consumer: partitions it no longer holds are left out, never raised."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from faust.types import TP

from stream_app.topology.tasks import partition_lags


def test_partitions_the_consumer_no_longer_holds_are_left_out_of_the_lag_report_not_raised() -> None:
    """A rebalance can revoke a partition between reading the assignment and asking for its position or highwater:
    aiokafka then raises (IllegalStateError, AssertionError), and out of the lag timer that would stop the worker."""

    async def report() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started: it holds no partition
        revoked, received_before = TP("content", 0), TP("content", 1)
        return await partition_lags([revoked, received_before], {received_before: 7}, consumer.position,
                                    consumer.highwater)  # fmt: skip

    assert asyncio.run(report()) == {}


def test_each_partitions_lag_runs_from_what_the_agent_received_or_else_the_position_to_the_highwater() -> None:
    async def position(tp: TP) -> int | None:
        return {0: 5, 2: None}[tp.partition]

    highwaters = {0: 9, 1: 10, 2: 4, 3: None}
    tps = [TP("content", p) for p in range(4)]
    lags = asyncio.run(partition_lags(tps, {tps[1]: 12, tps[3]: 1}, position, lambda tp: highwaters[tp.partition]))
    # 0 from its position; 1 from what the agent received, past the highwater the consumer last saw; 2 and 3 unknown
    assert lags == {0: 4, 1: 0}
