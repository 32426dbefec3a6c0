"""Table recovery after a rebalance: the worker resumes its streams once the changelog is read, however fast, and
from where the previous owner of each partition stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP

from stream_app.agents import StreamProgress, changelog_refetches
from stream_app.consumer import RewindingConsumerThread
from stream_app.settings import Settings
from stream_app.worker import build_app


@pytest.fixture
def recovery(trained_model_dir: Path, tmp_path: Path) -> Any:
    return build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path)).tables.recovery


def test_a_recovery_that_ends_before_its_waiter_starts_still_releases_it(recovery: Any) -> None:
    """Faust's changelog reader ends recovery with set() then clear() in one step; when the records were fetched
    already, that step can come before the rebalance's waiter first runs, which must not then wait forever."""

    async def scenario() -> bool:
        recovery._set_recovery_started()
        waiter = asyncio.ensure_future(recovery.signal_recovery_end.wait())  # created, not started yet
        recovery._set_recovery_ended()  # what the reader does after the last changelog record...
        recovery.signal_recovery_end.set()
        recovery.signal_recovery_end.clear()  # ...and at the top of its next read
        return bool(await asyncio.wait_for(waiter, timeout=5.0))

    assert asyncio.run(scenario())


def test_a_waiter_waits_while_recovery_runs_and_is_released_when_it_ends(recovery: Any) -> None:
    async def scenario() -> tuple[bool, bool]:
        recovery._set_recovery_started()
        waiter = asyncio.ensure_future(recovery.signal_recovery_end.wait())
        for _ in range(5):
            await asyncio.sleep(0)
        waited = not waiter.done()
        recovery._set_recovery_ended()
        recovery.signal_recovery_end.set()
        recovery.signal_recovery_end.clear()
        return waited, bool(await asyncio.wait_for(waiter, timeout=5.0))

    assert asyncio.run(scenario()) == (True, True)


def test_a_stalled_recovery_reads_again_what_the_consumer_read_past() -> None:
    """Recovery saw nothing (or up to offset 9) while the consumer's position is at the partition's end: the
    records in between were fetched and dropped, so they are read again from the first one recovery lacks."""
    a, b, c, d = (TP("title-index-changelog", p) for p in range(4))
    seen = {a: -1, b: 9, c: 40, d: None}
    highwaters = {a: 72, b: 68, c: 40, d: 10}
    positions = {a: 73, b: 69, c: 41, d: 11}
    assert changelog_refetches(seen, highwaters, positions) == {a: 0, b: 10, d: 0}


def test_recovery_still_fetching_is_left_alone() -> None:
    """A position at the next record recovery needs (or unknown) means the records are still coming."""
    a, b = TP("title-index-changelog", 0), TP("title-index-changelog", 1)
    assert changelog_refetches({a: 9, b: -1}, {a: 72, b: 5}, {a: 10, b: None}) == {}


def test_stream_progress_is_the_offset_after_the_last_event_received_and_forgotten_on_a_rebalance() -> None:
    progress, tp = StreamProgress(), TP("content", 0)
    progress.received([SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o)) for o in range(100, 150)])  # type: ignore[misc]
    assert progress.next_offset == {tp: 150}
    progress.reassigned()
    assert progress.next_offset == {}


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_worker_consumer_rewinds_partitions_without_a_committed_offset(
    trained_model_dir: Path, tmp_path: Path, guarantee: str
) -> None:
    """Faust's seek after dropping fetched records goes through :func:`seek_to_committed_or_earliest` (tested on
    a broker in tests/integration/test_consumer.py) in both delivery modes."""
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path, processing_guarantee=guarantee))
    assert isinstance(cast(Any, app.consumer)._thread, RewindingConsumerThread)
