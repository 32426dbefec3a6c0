"""The index follower applies a large fetch without holding the event loop for all of it."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from stream_app.title_index.follower import APPLIED_BETWEEN_TURNS, IndexFollower
from stream_app.title_index.index import TitleIndex

NOW = 1_800_000_000.0


class Fetched(NamedTuple):
    key: bytes
    value: bytes | None
    offset: int
    timestamp: int


def test_a_large_fetch_is_applied_while_other_tasks_still_get_turns() -> None:
    """A fetch of 20,000 changes was applied in one stretch of the event loop (1.6 s in an audit), and every event
    and web request waited behind it."""
    writer = TitleIndex(30 * 86400.0, 300.0, clock=lambda: NOW)
    writer.finish_loading()
    count = 4 * APPLIED_BETWEEN_TURNS + 7
    judged = writer.check_many(
        [(str(n), f"Distinct project number {n} about {n * 7919}", None, NOW) for n in range(count)]
    )
    records = [Fetched(c.key, c.value, n, int(NOW * 1000)) for n, (_, changes) in enumerate(judged) for c in changes]
    assert len(records) == count

    reader = TitleIndex(30 * 86400.0, 300.0, clock=lambda: NOW)
    reader.finish_loading()
    turns_seen: list[int] = []
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    follower = IndexFollower(
        reader, "index", {}, on_skip=lambda reason: None, on_applied=lambda age: turns_seen.append(turns)
    )

    async def main() -> None:
        ticker = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        fetched: dict[TopicPartition, Any] = {TopicPartition("index", 0): records}
        await follower._take(fetched, loading=False)
        ticker.cancel()

    asyncio.run(main())
    assert len(turns_seen) == count and reader.entries == count
    # Between the first and the last record applied, the other task ran once per turn given.
    assert turns_seen[-1] - turns_seen[0] >= count // APPLIED_BETWEEN_TURNS
