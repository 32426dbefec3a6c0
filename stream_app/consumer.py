"""Faust's Kafka consumer, rewinding partitions that have no committed offset when Faust seeks to the committed ones.

Faust 0.15.3 drops the records a fetch returns while the flow is stopped (during a rebalance) and relies on
seeking every assigned partition back to its committed offset to read them again. aiokafka's
``seek_to_committed`` leaves alone a partition with no committed offset (or 0), so a partition taken over from a
worker killed before its first commit stays after the dropped records, and they are never processed: in about 1 of
25 scale-out runs the survivor stopped after 600 of 1,200 events, its consumer at the end of every partition.
Such partitions go back to their earliest offset instead, where a consumer with no committed offset starts
(``consumer_auto_offset_reset="earliest"``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustKafkaConsumer
from faust.types import TP


async def seek_to_committed_or_earliest(
    consumer: AIOKafkaConsumer, positioned_elsewhere: Collection[str]
) -> dict[TopicPartition, int | None]:
    """Seek each assigned partition to its committed offset, and to its earliest offset when it has none.

    Partitions of the topics in ``positioned_elsewhere`` (the table changelogs, which table recovery positions)
    are left where they are when they have no committed offset. Returns the committed offsets (None: none).
    """
    committed: dict[TopicPartition, int | None] = await consumer.seek_to_committed()
    uncommitted = [tp for tp, offset in committed.items() if not offset and tp.topic not in positioned_elsewhere]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    return committed


class RewindingConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, seeking with :func:`seek_to_committed_or_earliest`."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, or its earliest one when it has none."""
        changelogs = set(self.app.tables.changelog_topics)
        committed = await self.call_thread(seek_to_committed_or_earliest, self._ensure_consumer(), changelogs)
        return cast(Mapping[TP, int], committed)  # None for "no committed offset", as Faust's own returns it


class TaggerConsumer(FaustKafkaConsumer):
    """Faust's Kafka consumer with a :class:`RewindingConsumerThread`."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TaggerApp(faust.App):
    """A Faust app whose consumer is ``consumer_class`` (a :class:`TaggerConsumer`)."""

    consumer_class: type[TaggerConsumer] = TaggerConsumer

    def _new_consumer(self) -> TaggerConsumer:
        return self.consumer_class(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.transport.loop,
        )
