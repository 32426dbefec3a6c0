"""Faust's Kafka consumer, with two fixes to how it re-reads records after a seek.

Faust 0.15.3 drops the records a fetch returns while the flow is stopped (during a rebalance) and relies on
seeking every assigned partition back to its committed offset to read them again. aiokafka's
``seek_to_committed`` leaves alone a partition with no committed offset (or 0), so a partition taken over from a
worker killed before its first commit stays after the dropped records, and they are never processed: in about 1 of
25 scale-out runs the survivor stopped after 600 of 1,200 events, its consumer at the end of every partition.
Such partitions go back to their earliest offset instead, where a consumer with no committed offset starts
(``consumer_auto_offset_reset="earliest"``).

Faust also delivers records fetched *before* a seek when they reach its fetch loop *after* it: its fetch loop
awaits between records, and a seek can land meanwhile. Those stale records move Faust's "read offset" past the
records the seek was meant to re-read, and it then discards them as already read: a scale-out run lost one event
of 1,200 that way. A :class:`SeekClock` orders every seek against every fetch, and records that a seek of their
partition followed are not delivered; the seek has put the consumer before them, so they are read again.

Last, a worker with a table resumes its flow for table recovery, then seeks every partition to its committed
offset, then resumes the flow again, which empties the agents' queues (to drop records fetched before the seek).
Records fetched *after* the seek and queued before that resume were emptied too, though their read offsets had
moved past them: nothing read them again, and Faust committed the offsets acked above them (2 of 11 scale-out
runs lost an event). Records fetched after such a seek now wait until the flow has resumed before they are handed
on (``tests/integration/race_app.py`` replays it).

Faust's check that every assigned partition's records flow (its "livelock detector", every 2.5 commit intervals)
reads a fetched partition's position without asking whether it has one. While aiokafka resets a partition (a seek
to its earliest offset, as above, or an offset out of range) it has none, and aiokafka's assertion crashed the
consumer: a survivor of a scale-out run stopped one second after taking over its peer's partitions. The check now
passes over a partition being reset; robinhood/faust #658 describes the same state crashing another of Faust's
reads of the position. For the same reason the seek above seeks nothing when nothing is assigned, where aiokafka
asserts (faust-streaming #44 and #54 are the upstream reports of such seeks crashing recovery).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Iterable, Mapping
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.consumer import RecordMap
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustKafkaConsumer
from faust.types import TP, Message
from faust.types.web import Web

from stream_app.faust_patches.eager import EagerHandOver
from stream_app.faust_patches.fetch_wait import bound_fetch_wait
from stream_app.faust_patches.in_loop import InLoopServiceThread
from stream_app.faust_patches.inlet import EventInlet
from stream_app.faust_patches.web import leave_bodies_compressed

log = logging.getLogger(__name__)


class SeekClock:
    """Orders a Kafka consumer's seeks and fetches: it ticks on every seek, and a fetch notes the time it returned.

    Both must happen on the consumer's own event loop, where a seek and the end of a fetch never interleave.
    """

    def __init__(self) -> None:
        self.now = 0
        # Faust's TP and aiokafka's TopicPartition are equal tuples with equal hashes: either finds an entry.
        self._sought: dict[tuple[str, int], int] = {}

    def sought(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Note that ``partitions`` were just sought (their positions moved)."""
        self.now += 1
        for tp in partitions:
            self._sought[tp] = self.now

    def predates_seek(self, tp: tuple[str, int], fetched_at: int) -> bool:
        """Whether a record of ``tp`` fetched at ``fetched_at`` was fetched before ``tp``'s last seek."""
        return self._sought.get(tp, 0) > fetched_at

    def watch(self, fetcher: Any) -> None:
        """Tick on every position change of an aiokafka ``Fetcher``: a seek to an offset, or a reset to the
        earliest or latest one (``seek_to_beginning``, ``seek_to_end``, ``seek_to_committed`` and ``seek`` all
        come down to these two)."""
        seek_to: Callable[[Any, int], None] = fetcher.seek_to
        request_offset_reset: Callable[[Any, Any], Any] = fetcher.request_offset_reset

        def seek_to_and_tick(tp: Any, offset: int) -> None:
            seek_to(tp, offset)
            self.sought([tp])

        def request_offset_reset_and_tick(tps: Any, strategy: Any) -> Any:
            tps = list(tps)
            waiters = request_offset_reset(tps, strategy)
            self.sought(tps)
            return waiters

        fetcher.seek_to = seek_to_and_tick
        fetcher.request_offset_reset = request_offset_reset_and_tick


async def seek_to_committed_or_earliest(
    consumer: AIOKafkaConsumer, positioned_elsewhere: Collection[str]
) -> dict[TopicPartition, int | None]:
    """Seek each assigned partition to its committed offset, and to its earliest offset when it has none.

    Partitions of the topics in ``positioned_elsewhere`` (the table changelogs, which table recovery positions)
    are left where they are when they have no committed offset. Returns the committed offsets (None: none).
    """
    assigned = consumer.assignment()
    if not assigned:
        # aiokafka asserts that something is assigned, and Faust's recovery would let that AssertionError crash the
        # worker: a rebalance that gives this worker nothing (more workers than partitions) can land between
        # Faust's check of the generation and this seek.
        return {}
    committed: dict[TopicPartition, int | None] = await consumer.seek_to_committed(*assigned)
    uncommitted = [tp for tp, offset in committed.items() if not offset and tp.topic not in positioned_elsewhere]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    return committed


class ReadOffsets(dict[TP, "int | None"]):
    """Faust's read offsets: a partition's records below its read offset are dropped as read already.

    Faust's fetch loop sets a partition's read offset once it has handed a record on, and a seek of the partition
    can land meanwhile: that update, for a record fetched before the seek, is ignored, as it would put the read
    offset past the records the seek is to read again. A missing partition reads None (nothing read yet).
    """

    def __init__(self, seeks: SeekClock) -> None:
        super().__init__()
        self._seeks = seeks
        self._delivering: tuple[TP, int, int] | None = None

    def __missing__(self, tp: TP) -> None:
        return None

    def delivering(self, tp: TP, offset: int, fetched_at: int) -> None:
        """Note the record the fetch loop is handing on, and when it was fetched."""
        self._delivering = (tp, offset, fetched_at)

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        delivering = self._delivering
        if delivering is not None and delivering[:2] == (tp, offset) and self._seeks.predates_seek(tp, delivering[2]):
            return
        super().__setitem__(tp, offset)


class RewindingConsumerThread(InLoopServiceThread, AIOKafkaConsumerThread):
    """Faust's consumer thread, run on the worker's event loop (:mod:`.in_loop`), reading committed records only,
    seeking with :func:`seek_to_committed_or_earliest`, timing its seeks and fetches on its consumer's
    :class:`SeekClock`, and with the fetch wait of :mod:`.fetch_wait`."""

    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> AIOKafkaConsumer:
        consumer = super()._create_consumer(loop)
        # Faust passes no isolation level: records an upstream transaction aborted were withdrawn, in either
        # processing guarantee. Read by consumer.start(), which Faust calls next.
        consumer._isolation_level = "read_committed"
        return consumer

    async def on_start(self) -> None:
        """Start the aiokafka consumer, time its seeks and bound its fetches' wait
        (:mod:`.fetch_wait`)."""
        await super().on_start()
        consumer = self._ensure_consumer()
        cast(TaggerConsumer, self.consumer).seeks.watch(consumer._fetcher)
        bound_fetch_wait(consumer)

    async def fetch(self, active_partitions: set[TP] | None, timeout: float) -> tuple[RecordMap, int]:
        """Faust's ``getmany``: the records fetched, and the :class:`SeekClock` time the fetch returned."""
        consumer = self._ensure_consumer()
        return cast(
            tuple[RecordMap, int],
            await self.call_thread(
                self._fetch_records_timed,
                consumer,
                active_partitions,
                timeout=timeout,
                max_records=consumer._max_poll_records,
            ),
        )

    async def _fetch_records_timed(
        self, consumer: AIOKafkaConsumer, active_partitions: set[TP], timeout: float, max_records: int | None
    ) -> tuple[RecordMap, int]:
        records = await self._fetch_records(consumer, active_partitions, timeout=timeout, max_records=max_records)
        # Read with no await since the fetch returned, so no seek came in between.
        return records, cast(TaggerConsumer, self.consumer).seeks.now

    def verify_event_path(self, now: float, tp: TP) -> None:
        """Faust's check that ``tp``'s records flow, passed over while the partition has no position: Faust reads
        it unasked, and aiokafka asserts there is one (a partition being reset has none)."""
        try:
            return super().verify_event_path(now, tp)
        except AssertionError:
            return None

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, or its earliest one when it has none."""
        changelogs = set(self.app.tables.changelog_topics)
        committed = await self.call_thread(seek_to_committed_or_earliest, self._ensure_consumer(), changelogs)
        return cast(Mapping[TP, int], committed)  # None for "no committed offset", as Faust's own returns it


class TaggerConsumer(EagerHandOver, FaustKafkaConsumer):
    """Faust's Kafka consumer with a :class:`RewindingConsumerThread`, handing on no record fetched before a seek
    of its partition, handing each record on without a task when it need not wait (:mod:`.eager`), and the
    records of a topic with an inlet to that inlet rather than through Faust's conductor (:mod:`.inlet`)."""

    _fetched_at = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seeks = SeekClock()
        self._read_offsets = ReadOffsets(self.seeks)
        self._read_offset = self._read_offsets
        self.flow_resumed = asyncio.Event()
        """Clear from a rebalance's seek until its flow resumes: records fetched meanwhile wait to be handed on."""
        self.flow_resumed.set()
        self.failed_from: dict[TP, int] = {}
        """Per partition, the first offset of a batch whose processing failed: no ack from there on counts."""
        self.inlets: dict[str, EventInlet] = {}
        """Per topic, where its records go instead of Faust's conductor (:mod:`.inlet`)."""
        self._conductor_callback = self.callback
        self.callback = self._hand_over

    def open_inlet(self, topics: Iterable[str], capacity: int | None = None) -> EventInlet:
        """A new inlet that ``topics``' records go to rather than to Faust's conductor, from the next record on."""
        inlet = EventInlet(self.app, capacity)
        for topic in topics:
            self.inlets[topic] = inlet
        return inlet

    def _hand_over(self, message: Message) -> Coroutine[Any, Any, None]:
        """The fetch loop's callback for each record: its topic's inlet, or else Faust's conductor. The coroutine
        itself, not one awaiting it: one frame less per record."""
        inlet = self.inlets.get(message.topic)
        if inlet is None:
            return cast(Coroutine[Any, Any, None], self._conductor_callback(message))
        return inlet.put(message)

    def hold_acks(self, events: Iterable[Any]) -> None:
        """Never ack ``events`` (nor anything after them in their partitions): their processing failed.

        The agent's batches (:meth:`.inlet.EventInlet.batches`, as Faust's ``take_events``) ack a batch's events in
        a ``finally``, also when the agent that took them raises or is cancelled (faust-streaming #189, #315), and
        Faust's consumer commits acked offsets as it stops: the batch would be committed unpublished. Held here,
        the offsets stay below it and a restart reads it again.
        """
        for event in events:
            message = event.message
            held = self.failed_from.get(message.tp)
            self.failed_from[message.tp] = message.offset if held is None else min(held, message.offset)

    def ack(self, message: Message) -> bool:
        """Faust's ack, refused for a message at or past a failed batch of its partition (:meth:`hold_acks`)."""
        held = self.failed_from.get(message.tp)
        if held is not None and message.offset >= held:
            return False
        return bool(super().ack(message))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Stop the flow, wait for the batch in flight and commit what was acked, then Faust's revocation.

        Faust forgets the revoked partitions' acked offsets before its rebalance handler stops the flow, waits for
        the agents and commits (faust-streaming #502), so the records acked since the last periodic commit were
        never committed and the partition's next owner processed them again: after a peer left, and even when the
        partition came back to the same worker (Faust's rebalances revoke everything). Here the handler's first
        steps come before Faust forgets: no ack can land between the commit and the forgetting (a commit made
        while the flow still ran left the acks of its round trip to be forgotten). Faust's handler repeats them
        afterwards with nothing left to do.
        """
        if revoked and not self.app.should_stop:
            self.stop_flow()
            self.app.flow_control.suspend()
            self.app.flow_control.clear()
            # A commit in flight may predate the last acks, and a commit asked for meanwhile is skipped.
            await self.maybe_wait_for_commit_to_finish()
            await self.wait_empty()  # the batch in flight acked, then everything acked committed
        await super().on_partitions_revoked(revoked)

    async def perform_seek(self) -> None:
        """Seek every assigned partition to its committed offset. While records flow (Faust resumed the flow for
        table recovery), hold back those fetched from there until the flow resumes again: Faust empties the
        agents' queues then, and would drop them with it."""
        # Read before any await: an exactly-once claim can outlast the rebalance. Every pass of table recovery
        # resumes the flow, so a hold never outlives the next one.
        if self.flow_active:
            self.flow_resumed.clear()
        await self.before_seek()
        await super().perform_seek()

    async def before_seek(self) -> None:
        """Work a rebalance's seek needs done first: nothing here."""

    def resume_flow(self) -> None:
        """Let records flow again, the held-back ones first (the queues have been emptied by now)."""
        super().resume_flow()
        self.flow_resumed.set()

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> RecordMap:
        records, self._fetched_at = await cast(RewindingConsumerThread, self._thread).fetch(active_partitions, timeout)
        return records

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's ``getmany``, leaving out the records a later seek of their partition will read again."""
        skipping: set[TP] = set()
        async for tp, message in super().getmany(timeout):
            if not self.flow_resumed.is_set():
                await self.flow_resumed.wait()
            # Checked at each record: Faust's fetch loop awaits between records, and a seek can land meanwhile.
            if self.seeks.predates_seek(tp, self._fetched_at):
                if tp not in skipping:
                    skipping.add(tp)
                    log.info(
                        "Skipping %s from offset %d: fetched before a seek that reads it again", tp, message.offset
                    )
                continue
            self._read_offsets.delivering(tp, message.offset, self._fetched_at)
            yield tp, message

    def partition_count(self, topic: str) -> int | None:
        """The number of partitions of ``topic``, a topic the group subscribes to, in this consumer's cluster
        metadata; None if it has none yet. Faust's ``topic_partitions`` reads the assignor's snapshot, which only
        the group's leader fills: on every other member it answers None."""
        partitions = cast(RewindingConsumerThread, self._thread)._ensure_consumer().partitions_for_topic(topic)
        return len(partitions) if partitions else None

    async def _seek(self, partition: TP, offset: int) -> None:
        # On the event loop, where the fetches run (in_loop.py): the SeekClock sees it in order with them.
        cast(RewindingConsumerThread, self._thread).seek(partition, offset)


class TaggerApp(faust.App):
    """A Faust app whose consumer is ``consumer_class`` (a :class:`TaggerConsumer`)."""

    consumer_class: type[TaggerConsumer] = TaggerConsumer

    def _new_web(self) -> Web:
        return cast(Web, leave_bodies_compressed(super()._new_web()))

    def _new_consumer(self) -> TaggerConsumer:
        return self.consumer_class(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.transport.loop,
        )
