"""The lag report: partitions aiokafka's consumer no longer holds are left out, never raised, and a broker that
does not answer leaves the report empty."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaTimeoutError
from faust.types import TP

from stream_app.topology.tasks import partition_lags

ENDS = {TP("content", 0): 9, TP("content", 1): 10, TP("content", 2): 4}


async def end_offsets(*tps: TP) -> Mapping[TP, int]:
    """The broker's end offsets of ``ENDS`` (a partition it does not know is left out, as aiokafka leaves it)."""
    return {tp: ENDS[tp] for tp in tps if tp in ENDS}


def test_partitions_the_consumer_no_longer_holds_are_left_out_of_the_lag_report_not_raised() -> None:
    """A rebalance can revoke a partition between reading the assignment and asking for its position: aiokafka then
    raises IllegalStateError, and out of the lag timer that would stop the worker."""

    async def report() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started: it holds no partition
        revoked, received_before = TP("content", 0), TP("content", 1)
        return await partition_lags([revoked, received_before], {received_before: 7}, consumer.position, end_offsets)

    assert asyncio.run(report()) == {1: 3}


def test_each_partitions_lag_runs_from_what_the_agent_received_or_else_the_position_to_the_end_offset() -> None:
    async def position(tp: TP) -> int | None:
        return {0: 5, 2: None}[tp.partition]

    tps = [TP("content", p) for p in range(4)]
    lags = asyncio.run(partition_lags(tps, {tps[1]: 12, tps[3]: 1}, position, end_offsets))
    # 0 from its position; 1 from what the agent received (past an end offset read earlier); 2 has no position yet
    # and 3 no end offset
    assert lags == {0: 4, 1: 0}


def test_a_broker_that_does_not_answer_leaves_the_lag_report_empty_not_raised() -> None:
    async def no_answer(*tps: TP) -> Mapping[TP, int]:
        raise KafkaTimeoutError()

    async def position(tp: TP) -> int | None:
        return 0

    assert asyncio.run(partition_lags([TP("content", 0)], {TP("content", 0): 3}, position, no_answer)) == {}
