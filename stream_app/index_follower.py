"""The title index's topic: declared compacted, read from its start by every worker and followed forever.

Each record is one :class:`~stream_app.title_index.IndexChange`. A worker marks what it writes with its own
writer id (a header), so it skips its own records as they come back and applies everyone else's, including its
own from before a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.title_index import TitleIndex

log = logging.getLogger(__name__)

WRITER_HEADER: Final = "tagger-writer"
FETCH_MAX_RECORDS: Final = 20_000
METADATA_RETRY_SECONDS: Final = 0.5
SKIP_LOG_EVERY: Final = 1000


def new_writer_id() -> bytes:
    """A writer id for this process: random, so records of an earlier run of the same worker are applied."""
    return uuid.uuid4().bytes


def writer_headers(writer_id: bytes) -> list[tuple[str, bytes]]:
    """The headers of a record this process writes to the index topic."""
    return [(WRITER_HEADER, writer_id)]


def written_by(headers: Sequence[tuple[str, bytes]] | None, writer_id: bytes) -> bool:
    """Whether a record with ``headers`` was written by this process."""
    return any(name == WRITER_HEADER and value == writer_id for name, value in headers or ())


class IndexFollower:
    """Reads the index topic into a :class:`TitleIndex`: to its end first (then :attr:`ready` is set), then each new
    record as it comes. A record that cannot be applied is counted by ``on_skip(reason)``, logged once, and passed."""

    def __init__(
        self,
        index: TitleIndex,
        topic: str,
        writer_id: bytes,
        client_options: Mapping[str, Any],
        on_skip: Callable[[str], None],
        on_applied: Callable[[float], None] | None = None,
    ) -> None:
        self.index = index
        self.topic = topic
        self.writer_id = writer_id
        self.client_options = dict(client_options)
        self.on_skip = on_skip
        self.on_applied = on_applied
        """Called with each applied record's age in seconds (its Kafka timestamp to now): the replication delay."""
        self.ready = asyncio.Event()
        self.loaded_records = 0
        self.skipped: dict[str, int] = {}

    async def run(self) -> None:
        """Follow the topic until cancelled."""
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.client_options)
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            started = time.monotonic()
            while not self.ready.is_set():
                if all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                    self.index.finish_loading()
                    self.ready.set()
                    log.info(
                        "title index loaded: %d records, %d entries in %.1f s",
                        self.loaded_records,
                        self.index.entries,
                        time.monotonic() - started,
                    )
                    break
                self._take(await consumer.getmany(timeout_ms=200, max_records=FETCH_MAX_RECORDS), loading=True)
            while True:
                self._take(await consumer.getmany(timeout_ms=500, max_records=FETCH_MAX_RECORDS), loading=False)
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The topic's partitions, once the topic exists (the worker declares it as it starts)."""
        while True:
            # As the review follower does: aiokafka's public partitions_for_topic reads metadata of subscribed
            # topics only, and an assigned-only consumer subscribes to none.
            await consumer._client.force_metadata_update()
            found = consumer._client.cluster.partitions_for_topic(self.topic)
            if found:
                return [TopicPartition(self.topic, partition) for partition in sorted(found)]
            await asyncio.sleep(METADATA_RETRY_SECONDS)

    def _take(self, fetched: Mapping[TopicPartition, Sequence[Any]], *, loading: bool) -> None:
        now = time.time()
        for tp, records in fetched.items():
            for record in records:
                if written_by(record.headers, self.writer_id):
                    continue
                if loading:
                    reason = self.index.load(record.key, record.value)
                    self.loaded_records += 1
                else:
                    reason = self.index.apply(record.key, record.value)
                if reason is not None:
                    self.on_skip(reason)
                    self.skipped[reason] = seen = self.skipped.get(reason, 0) + 1
                    if seen == 1 or seen % SKIP_LOG_EVERY == 0:  # a flood of bad records must not flood the log
                        log.warning(
                            "title index: skipped %s[%d]@%d (%s; %d so far)",
                            tp.topic,
                            tp.partition,
                            record.offset,
                            reason,
                            seen,
                        )
                elif self.on_applied is not None and not loading:
                    self.on_applied(max(0.0, now - record.timestamp / 1000))
