"""The lag report: partitions aiokafka's consumer no longer holds are left out, never raised, and a broker that
does not answer leaves the report empty."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaTimeoutError
from faust.types import TP

from stream_app.errors import RebalanceStalled
from stream_app.faust_patches.consumer import TaggerApp
from stream_app.topology.tasks import RebalanceWatch, partition_lags

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


def test_an_agent_holding_a_partition_s_first_record_counts_the_lag_from_offset_0_not_the_position() -> None:
    async def past_the_held_batch(tp: TP) -> int | None:
        return 9

    tp = TP("content", 0)
    assert asyncio.run(partition_lags([tp], {tp: 0}, past_the_held_batch, end_offsets)) == {0: 9}


def test_a_partition_moved_while_its_end_offset_was_asked_is_left_to_its_new_owner() -> None:
    owned = {0, 1}

    async def rebalanced_meanwhile(*tps: TP) -> Mapping[TP, int]:
        owned.discard(0)  # a rebalance ran during the request
        return await end_offsets(*tps)

    async def unasked(tp: TP) -> int | None:
        raise AssertionError("the agent received a record of each: no position is asked")

    tps = [TP("content", 0), TP("content", 1)]
    lags = asyncio.run(partition_lags(tps, {tps[0]: 1, tps[1]: 2}, unasked, rebalanced_meanwhile, lambda: owned))
    assert lags == {1: 8}


def test_a_broker_that_does_not_answer_leaves_the_lag_report_empty_not_raised() -> None:
    async def no_answer(*tps: TP) -> Mapping[TP, int]:
        raise KafkaTimeoutError()

    async def position(tp: TP) -> int | None:
        return 0

    assert asyncio.run(partition_lags([TP("content", 0)], {TP("content", 0): 3}, position, no_answer)) == {}


def test_a_rebalance_lasting_past_the_limit_stops_the_worker_and_one_that_ends_does_not() -> None:
    watch = RebalanceWatch(limit_seconds=300)
    for now in (0.0, 100.0, 299.0):
        watch.check(True, now)
    watch.check(False, 301.0)  # it ended: the next one is timed afresh
    watch.check(True, 400.0)
    watch.check(True, 700.0)
    with pytest.raises(RebalanceStalled, match="has not ended in 301 s"):
        watch.check(True, 701.0)


def test_faust_recovery_gives_up_for_good_on_a_slow_seek_and_the_watch_tells() -> None:
    """Faust's own recovery service and app, with a consumer whose seek to the committed offsets outlasts
    ``broker_request_timeout`` (as while the group coordinator is away; 0.5 s here, 90 s in the worker): the
    recovery loop ends, the app stays rebalancing through the next rebalance too, and only the watch ends it.
    The consumer stands in for a broker that stays away past the timeout, which the broker tests cannot stage."""

    class SlowSeekConsumer:
        def __init__(self) -> None:
            self.seek_seconds, self.seeks, self.resumed = 2.0, 0, 0

        def assignment(self) -> set[TP]:
            return {TP("content", 0)}

        def resume_partitions(self, tps: Any) -> None:
            pass

        async def perform_seek(self) -> None:
            self.seeks += 1
            await asyncio.sleep(self.seek_seconds)

        def resume_flow(self) -> None:
            self.resumed += 1

    async def rebalance(app: Any, seconds: float) -> None:
        app.on_rebalance_start()
        app.tables.recovery.signal_recovery_start.set()
        await asyncio.sleep(seconds)

    async def stall() -> tuple[bool, int, int]:
        app = TaggerApp("stall-test", broker="kafka://127.0.0.1:1", broker_request_timeout=0.5)
        consumer = SlowSeekConsumer()
        app.consumer = consumer  # type: ignore[assignment]
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        await recovery.start()
        await rebalance(app, 1.5)
        consumer.seek_seconds = 0.0
        await rebalance(app, 1.0)  # the broker is back: the next rebalance would seek at once, if anything ran it
        watch = RebalanceWatch(limit_seconds=1.0)
        watch.check(app.rebalancing, 0.0)
        with pytest.raises(RebalanceStalled):
            watch.check(app.rebalancing, 2.0)
        await recovery.stop()
        return app.rebalancing, consumer.seeks, consumer.resumed

    assert asyncio.run(stall()) == (True, 1, 0)
