"""The second look at a batch: its new titles judged again against what other workers stored at the same time.

Two workers that check an original and its copy at the same time each judge their title before the other's index
change reaches them: copies that reach two workers within the replication delay, and, however far apart they were
produced, an original and a copy waiting in two workers' backlogs when they catch up together (after a broker
outage, a rebalance, a stall of the fleet or of the host they share). The barrier before a batch
(:mod:`~stream_app.title_index.barrier`) cannot help with either. So a worker stores its batch's index changes
before its outputs, waits until its follower has applied every record before them in the topic, and judges each
title it found new again against the entries other workers stored before its own. The index topic has one
partition, so every worker sees the same order: of two titles that copy each other, the one whose entry came first
stays new and the other becomes its copy, whichever worker holds which. When the follower has applied every record
before them by the time they are stored, and none was another writer's, there is nothing to judge them against,
and the batch goes on without waiting for its own changes to come back.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka.structs import RecordMetadata

from stream_app.dedupe import DedupeVerdict
from stream_app.title_index.barrier import BARRIER_TIMEOUT_SECONDS
from stream_app.title_index.follower import INDEX_PARTITION, IndexFollower, Watch, Watched


class Window:
    """The records applied while a batch's second look waited, as its titles are judged against them."""

    def __init__(self, watched: Sequence[Watched], own: set[tuple[bytes | None, bytes | None]]) -> None:
        """``own``: the batch's own records (key, value)."""
        self.watched = watched
        self.others = [
            (position, record.key, record.value)
            for position, record in enumerate(watched)
            if record.changed and record.key is not None and record.value is not None
            and (record.key, record.value) not in own
        ]  # fmt: skip
        """The entries (position, key, value) other writers stored: the records that changed the index here."""

    @functools.cached_property
    def _positions(self) -> dict[tuple[bytes | None, bytes | None], int]:
        positions: dict[tuple[bytes | None, bytes | None], int] = {}
        for position, record in enumerate(self.watched):
            positions.setdefault((record.key, record.value), position)
        return positions

    def position(self, key: bytes, value: bytes) -> int:
        """Where this worker's record (key, value) is among those watched; past the last if the follower did not
        reach it in time, so that every entry watched counts as before it: a title shown twice is the worse
        mistake."""
        return self._positions.get((key, value), len(self.watched))


def through_copies(
    event_ids: Sequence[str], verdicts: Sequence[DedupeVerdict], copies: Mapping[int, DedupeVerdict]
) -> dict[int, DedupeVerdict]:
    """The ``copies`` a second look found among a batch's events (by position), and, for each other event its check
    found to copy one of those, its verdict passed on to that one's original, so that no duplicate record names an
    event that was not shown. ``verdicts`` are the check's, one per event of ``event_ids``; a check names only
    titles it found new, so one step is enough. A match through a near one is near, at the lower similarity. An
    event met again later in the batch with the same title (an upstream's retry), which its check found new as its
    own entry's replay, takes the verdict of its first time: the item is shown once, or is a copy both times."""
    if not copies:
        return {}
    turned = {event_ids[position]: verdict for position, verdict in copies.items()}
    passed = dict(copies)
    for position, verdict in enumerate(verdicts):
        if position in copies:
            continue
        if verdict.duplicate_of is None:
            again = turned.get(event_ids[position])
            if again is not None and again.dedupe_key == verdict.dedupe_key:
                passed[position] = again
            continue
        via = turned.get(verdict.duplicate_of)
        if via is None:
            continue
        exact = verdict.match == "exact" and via.match == "exact"
        similarity = min(verdict.similarity, via.similarity)
        passed[position] = DedupeVerdict(verdict.dedupe_key, via.duplicate_of, "exact" if exact else "near", similarity)
    return passed


def stored_from(delivered: Sequence[Any], topic: str) -> int | None:
    """The first offset of the last record batch of a batch's index changes, from their deliveries' results
    (aiokafka's record metadata, one per record batch sent), if every one went to ``topic``'s index partition with
    a known offset; else None."""
    if not delivered or any(
        not isinstance(metadata, RecordMetadata)
        or metadata.topic != topic
        or metadata.partition != INDEX_PARTITION
        or not isinstance(metadata.offset, int)
        or metadata.offset < 0
        for metadata in delivered
    ):
        return None
    return max(int(metadata.offset) for metadata in delivered)


class SecondLook:
    """Second looks through a worker's index follower: :meth:`watch` before a batch is checked, :meth:`settle`
    once its index changes are stored."""

    def __init__(
        self,
        follower: IndexFollower,
        on_timeout: Callable[[], None],
        timeout_seconds: float = BARRIER_TIMEOUT_SECONDS,
    ) -> None:
        self.follower = follower
        self.on_timeout = on_timeout
        self.timeout_seconds = timeout_seconds

    def watch(self) -> Watch:
        """Keep every index record applied from now on."""
        return self.follower.watch()

    async def settle(
        self, watch: Watch, claims: Iterable[tuple[bytes | None, bytes | None]], stored_from: int | None = None
    ) -> list[Watched]:
        """Wait until the follower has applied the batch's stored ``claims`` (key, value), and so every record
        before them, and return the records applied since ``watch`` opened, closing it. Past the timeout (the broker
        away, the follower far behind), the records applied so far; and those the watch kept, if it overflowed (it
        then left out records that may come before the claims): either is counted by ``on_timeout``.

        ``stored_from``: the offset of the first record of the claims' last record batch, when all of them went to
        the index partition. If the follower has applied every record before it, and none of those the watch kept
        was another writer's, nothing can come before the claims that the second look would judge them against: the
        watch is closed at once, without waiting for the claims to come back."""
        if (
            stored_from is not None
            and not watch.overflowed
            and not any(record.changed for record in watch.records)
            and await self.follower.applied_offset() >= stored_from
        ):
            return self.close(watch)
        try:
            await asyncio.wait_for(watch.arrival(claims), self.timeout_seconds)
        except TimeoutError:
            self.on_timeout()
        else:
            if watch.overflowed:
                self.on_timeout()
        return self.close(watch)

    def close(self, watch: Watch) -> list[Watched]:
        """Stop keeping records for ``watch`` (again, if it was closed already); returns what it kept."""
        return self.follower.unwatch(watch)
