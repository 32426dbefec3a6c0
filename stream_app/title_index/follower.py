"""The title index's topic, read from its start by every worker and followed forever.

Each record is one :class:`~stream_app.title_index.store.IndexChange`. Every record is applied in the topic's order,
the worker's own included (they come back unchanged), so all workers converge on the topic's last value of each
title.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.allocator import give_back_free_memory
from stream_app.faust_patches.metadata import topic_partitions
from stream_app.log_repeats import SkipTally
from stream_app.title_index.index import APPLIED, UNCHANGED, TitleIndex

log = logging.getLogger(__name__)

INDEX_PARTITION: Final = 0
"""The one partition of the index topic that is written and read. The topic's order is the index's: records of
one title on two partitions could be applied in either order, and partitions added to the topic later would
scatter titles over partitions a running worker does not read."""
FETCH_MAX_RECORDS: Final = 20_000
APPLIED_BETWEEN_TURNS: Final = 500
"""Records applied before the event loop gets a turn: applying one costs 20-80 µs, and a whole fetch would hold the
loop, and every event behind it, for up to a second and a half."""
METADATA_RETRY_SECONDS: Final = 0.5
PROGRESS_CHECK_SECONDS: Final = 0.01
"""How often :meth:`IndexFollower.caught_up` looks at the position besides each fetch applied: a fetch of
transaction markers alone moves it without returning a record."""


WATCHED_RECORDS: Final = 100_000
"""Most records a :class:`Watch` keeps (about 10 MB): a second look waits a few fetches, in which the other workers
write a few batches; past it, the watch is marked :attr:`Watch.overflowed`."""


class Watched(NamedTuple):
    """A record of the index topic applied while a :class:`Watch` was open."""

    offset: int
    key: bytes | None
    value: bytes | None
    changed: bool
    """Whether it changed the index here (:data:`APPLIED`): a record of another writer."""


class Watch:
    """The records a follower applies while it is open (:meth:`IndexFollower.watch`), in the topic's order."""

    def __init__(self, limit: int = WATCHED_RECORDS) -> None:
        self.limit = limit
        self.records: list[Watched] = []
        self.overflowed = False
        """Whether records were left out past :attr:`limit`."""
        self._awaited: set[tuple[bytes | None, bytes | None]] = set()
        self._arrived = asyncio.Event()

    def add(self, record: Watched) -> None:
        if len(self.records) < self.limit:
            self.records.append(record)
        else:
            self.overflowed = True
        if self._awaited:
            self._awaited.discard((record.key, record.value))
            if not self._awaited:
                self._arrived.set()

    async def arrival(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        """Return once each of ``records`` (key, value) has been applied since the watch opened."""
        self._awaited = set(records) - {(record.key, record.value) for record in self.records}
        if self._awaited and not self.overflowed:
            await self._arrived.wait()


class IndexFollower:
    """Reads the index topic into a :class:`TitleIndex`: to its end first (then :attr:`ready` is set), then each new
    record as it comes. A record that cannot be applied is counted by ``on_skip(reason)``, logged, and passed."""

    def __init__(
        self,
        index: TitleIndex,
        topic: str,
        client_options: Mapping[str, Any],
        on_skip: Callable[[str], None],
        on_applied: Callable[[float], None] | None = None,
    ) -> None:
        self.index = index
        self.topic = topic
        self.client_options = dict(client_options)
        self.on_skip = on_skip
        self.on_applied = on_applied
        """Called with the age in seconds (its Kafka timestamp to now) of each record that changed the index
        here, which only another worker's can: the replication delay."""
        self.ready = asyncio.Event()
        self.loaded_records = 0
        self.skipped = SkipTally()
        self._consumer: AIOKafkaConsumer | None = None
        self._ends: AIOKafkaConsumer | None = None
        """A client that only asks for the partition's end: a broker answers a connection's requests in turn, and
        the follower's connection holds a fetch for up to half a second while nothing new comes."""
        self._partition = TopicPartition(topic, INDEX_PARTITION)
        self._unapplied: int | None = None
        """Offset of the record being applied while a fetch is (:meth:`_take`), else None."""
        self._moved = asyncio.Event()
        """Pulsed (set, then cleared) after each fetch applied."""
        self._watches: list[Watch] = []

    def watch(self) -> Watch:
        """Keep each record applied from now on, until :meth:`unwatch`."""
        watch = Watch()
        self._watches.append(watch)
        return watch

    def unwatch(self, watch: Watch) -> list[Watched]:
        """Stop keeping records for ``watch``; returns what it kept."""
        if watch in self._watches:
            self._watches.remove(watch)
        return watch.records

    async def applied_offset(self) -> int:
        """The offset of the first record of the index partition not applied yet (0 before the follower starts)."""
        if self._unapplied is not None:
            return self._unapplied
        if self._consumer is None or not self.ready.is_set():
            return 0
        # The position passes a fetch's records as they are returned, in the same turn of the loop as _take starts.
        return int(await self._consumer.position(self._partition))

    async def end_offset(self) -> int:
        """The index partition's end as the broker has it now, with the follower's isolation (read committed: the
        last stable offset, before any transaction still open)."""
        if self._ends is None:
            raise RuntimeError("the title index follower is not running")
        return int((await self._ends.end_offsets([self._partition]))[self._partition])

    async def caught_up_as_last_fetched(self, within_seconds: float) -> bool:
        """Whether the follower has applied the index partition up to the end its last fetch response gave (read
        committed: the last stable offset), and that response came within ``within_seconds`` of now, by the wall
        clock aiokafka stamps it with. False before it is ready, without such a response, or when the clock puts the
        response further than that either way."""
        consumer = self._consumer
        if consumer is None or not self.ready.is_set():
            return False
        heard_ms = consumer.last_poll_timestamp(self._partition)
        end = consumer.last_stable_offset(self._partition)
        if heard_ms is None or end is None or end < 0:  # no response yet, or read uncommitted (-1)
            return False
        if abs(time.time() - heard_ms / 1000) > within_seconds:
            return False
        return await self.applied_offset() >= int(end)

    async def caught_up(self, offset: int) -> None:
        """Return once every record of the index partition before ``offset`` is applied."""
        while await self.applied_offset() < offset:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), PROGRESS_CHECK_SECONDS)

    async def run(self) -> None:
        """Follow the topic until cancelled."""
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.client_options)
        asker = AIOKafkaConsumer(enable_auto_commit=False, **self.client_options)
        await consumer.start()
        try:
            await asker.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer, self._ends = consumer, asker
        try:
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            started = time.monotonic()
            while not all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                await self._take(await consumer.getmany(timeout_ms=200, max_records=FETCH_MAX_RECORDS), loading=True)
            self.index.finish_loading()
            give_back_free_memory()  # what loading and indexing the whole topic freed
            self.ready.set()
            log.info(
                "title index loaded: %d records, %d entries in %.1f s",
                self.loaded_records,
                self.index.entries,
                time.monotonic() - started,
            )
            while True:
                await self._take(await consumer.getmany(timeout_ms=500, max_records=FETCH_MAX_RECORDS), loading=False)
        finally:
            self._consumer = self._ends = None
            await asker.stop()
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The topic's :data:`INDEX_PARTITION`, once the topic exists (the worker declares it as it starts)."""
        while True:
            found = (await topic_partitions(consumer, [self.topic])).get(self.topic)
            if found:
                if found != [INDEX_PARTITION]:
                    log.warning(
                        "%s has %d partitions: only partition %d holds the title index", self.topic, len(found),
                        INDEX_PARTITION,
                    )  # fmt: skip
                return [TopicPartition(self.topic, INDEX_PARTITION)]
            await asyncio.sleep(METADATA_RETRY_SECONDS)

    async def _take(self, fetched: Mapping[TopicPartition, Sequence[Any]], *, loading: bool) -> None:
        try:
            await self._apply(fetched, loading=loading)
        finally:
            self._unapplied = None
            self._moved.set()
            self._moved.clear()

    async def _apply(self, fetched: Mapping[TopicPartition, Sequence[Any]], *, loading: bool) -> None:
        now = time.time()
        taken = 0
        for tp, records in fetched.items():
            for record in records:
                self._unapplied = record.offset
                taken += 1
                if taken % APPLIED_BETWEEN_TURNS == 0:
                    await asyncio.sleep(0)
                    now = time.time()
                if loading:
                    outcome = self.index.load(record.key, record.value) or APPLIED
                    self.loaded_records += 1
                else:
                    outcome = self.index.apply(record.key, record.value)
                for watch in self._watches:
                    watch.add(Watched(record.offset, record.key, record.value, outcome == APPLIED))
                if outcome == APPLIED:
                    if self.on_applied is not None and not loading:
                        self.on_applied(max(0.0, now - record.timestamp / 1000))
                elif outcome != UNCHANGED:
                    self.on_skip(outcome)
                    seen = self.skipped.add(outcome)
                    if seen is not None:
                        log.warning(
                            "title index: skipped %s[%d]@%d (%s; %d so far)",
                            tp.topic,
                            tp.partition,
                            record.offset,
                            outcome,
                            seen,
                        )
