"""The worker consumer's bookkeeping of seeks against fetches (on a broker: tests/integration/test_consumer.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import OffsetResetStrategy
from faust.types import TP

from stream_app.faust_patches.consumer import ReadOffsets, SeekClock, TaggerApp, seek_to_committed_or_earliest

STREAM, OTHER = TP("content", 0), TP("content", 1)


def test_a_fetch_before_a_seek_of_its_partition_predates_it_and_a_later_fetch_does_not() -> None:
    seeks = SeekClock()
    fetched_before = seeks.now
    seeks.sought([STREAM])
    fetched_after = seeks.now
    assert seeks.predates_seek(STREAM, fetched_before)
    assert not seeks.predates_seek(STREAM, fetched_after)
    assert not seeks.predates_seek(OTHER, fetched_before), "a seek moves only the partitions it names"


def test_the_read_offset_of_a_record_fetched_before_a_seek_is_not_kept() -> None:
    seeks = SeekClock()
    read_offsets = ReadOffsets(seeks)
    assert read_offsets[STREAM] is None, "nothing read yet"
    fetched_at = seeks.now
    read_offsets.delivering(STREAM, 150, fetched_at)
    read_offsets[STREAM] = 150
    assert read_offsets[STREAM] == 150, "no seek yet: Faust's fetch loop moves the read offset"

    read_offsets.delivering(STREAM, 151, fetched_at)
    seeks.sought([STREAM])  # lands while record 151 is handed on
    read_offsets.update({STREAM: 7})  # Faust's seek to the committed offset
    read_offsets[STREAM] = 151  # the fetch loop, done with 151
    assert read_offsets[STREAM] == 7, "records from 7 on are read again, not dropped as read"

    read_offsets[OTHER] = 151
    read_offsets[STREAM] = 9
    assert (read_offsets[OTHER], read_offsets[STREAM]) == (151, 9), "other updates are kept"


def test_the_check_that_records_flow_passes_over_a_partition_being_reset(caplog: pytest.LogCaptureFixture) -> None:
    """Faust's livelock detector read a fetched partition's position while aiokafka reset it (a seek to its earliest
    offset after a takeover) and crashed the worker on aiokafka's assertion. A partition with a position is still
    checked: one whose records are fetched but never processed is reported."""

    async def check() -> None:
        app = TaggerApp("livelock-test", broker="kafka://127.0.0.1:1")  # no broker is contacted
        app.topics.acking_topics.add(STREAM.topic)
        thread = cast(Any, app.consumer)._thread
        consumer = thread._consumer = thread._create_consumer(loop=asyncio.get_running_loop())
        try:
            assigned = [TopicPartition(tp.topic, tp.partition) for tp in (STREAM, OTHER)]
            consumer.assign(assigned)
            consumer._fetcher = SimpleNamespace(_subscriptions=consumer._subscription)  # made by start() otherwise
            for tp in assigned:  # both fetched up to offset 5 of 10, as the fetcher leaves them
                state = consumer._subscription.subscription.assignment.state_value(tp)
                state.seek(5)
                state.highwater, state.timestamp = 10, int(time.time() * 1000)
            consumer._subscription.subscription.assignment.state_value(assigned[0]).await_reset(
                OffsetResetStrategy.EARLIEST
            )
            thread.time_started = time.monotonic() - 3600
            with caplog.at_level(logging.ERROR):
                thread.verify_event_path(time.monotonic(), STREAM)
                assert not caplog.records
                thread.verify_event_path(time.monotonic(), OTHER)
            assert any(str(OTHER.partition) in record.getMessage() for record in caplog.records), caplog.text

            # aiokafka's thread may reset the partition after the test for a position and before Faust's read.
            other_state = consumer._subscription.subscription.assignment.state_value(assigned[1])
            faust_first_step = thread._verify_aiokafka_event_path

            def reset_meanwhile(now: float, tp: TP) -> bool:
                other_state.await_reset(OffsetResetStrategy.EARLIEST)
                return bool(faust_first_step(now, tp))

            thread._verify_aiokafka_event_path = reset_meanwhile
            thread.verify_event_path(time.monotonic(), OTHER)
            assert not other_state.has_valid_position
        finally:
            consumer._fetcher = None
            await consumer.stop()

    asyncio.run(check())


def test_a_seek_with_nothing_assigned_seeks_nothing() -> None:
    """A rebalance that leaves this worker no partition (more workers than partitions) can land just before
    Faust's recovery seeks; aiokafka's seek_to_committed asserts that something is assigned, and Faust's recovery
    let that crash the worker."""

    async def seek() -> None:
        app = TaggerApp("empty-seek-test", broker="kafka://127.0.0.1:1")  # no broker is contacted
        consumer = cast(Any, app.consumer)._thread._create_consumer(loop=asyncio.get_running_loop())
        try:
            consumer._subscription.subscribe({STREAM.topic})
            consumer._subscription.assign_from_subscribed(set())
            assert await seek_to_committed_or_earliest(consumer, set()) == {}
        finally:
            await consumer.stop()

    asyncio.run(seek())
