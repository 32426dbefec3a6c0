"""The worker's consumer after a rebalance: the lag counts from what the agent finished, and partitions without
a committed offset are rewound to their start in both delivery modes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP

from stream_app.faust_patches.consumer import RewindingConsumerThread
from stream_app.settings import Settings
from stream_app.topology.agent import StreamProgress
from stream_app.worker import build_app


def test_stream_progress_is_the_first_offset_not_finished_and_forgotten_on_a_rebalance() -> None:
    progress, tp = StreamProgress(), TP("content", 0)

    def events(offsets: range) -> Any:
        return [SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o)) for o in offsets]

    progress.taken(events(range(100, 150)))
    assert progress.next_offset == {tp: 100}  # held, not finished: a stuck agent's batch counts as lag
    progress.processed(events(range(100, 150)))
    assert progress.next_offset == {tp: 150}
    progress.taken(events(range(150, 160)))
    assert progress.next_offset == {tp: 150}
    progress.reassigned()
    assert progress.next_offset == {}


def test_a_stretch_the_agent_is_never_given_is_skipped_unless_the_agent_moved_on_meanwhile() -> None:
    now = [100.0]
    progress, tp = StreamProgress(clock=lambda: now[0]), TP("content", 0)
    assert progress.idle_since(tp) is None  # nothing taken since the assignment: the lag counts from the position
    progress.processed([SimpleNamespace(message=SimpleNamespace(tp=tp, offset=9))])  # type: ignore[list-item]
    assert progress.idle_since(tp) == 100.0 and progress.next_offset == {tp: 10}
    progress.skip(tp, 10, 62)  # markers and aborted records up to the end
    assert progress.next_offset == {tp: 62}
    now[0] = 130.0
    progress.taken([SimpleNamespace(message=SimpleNamespace(tp=tp, offset=62))])  # type: ignore[list-item]
    progress.skip(tp, 40, 70)  # read when the agent was at 40: it has moved on since
    assert progress.next_offset == {tp: 62} and progress.idle_since(tp) == 130.0


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_worker_consumer_rewinds_partitions_without_a_committed_offset(
    trained_model_dir: Path, tmp_path: Path, guarantee: str
) -> None:
    """Faust's seek after dropping fetched records goes through :func:`seek_to_committed_or_earliest` (tested on
    a broker in tests/integration/test_consumer.py) in both delivery modes."""
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path, processing_guarantee=guarantee))
    assert isinstance(cast(Any, app.consumer)._thread, RewindingConsumerThread)
