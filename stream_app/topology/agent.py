"""The one agent: each batch of input messages through every stage, and what it made published in one go.

A batch is validated, checked against the title index, classified on the model's own thread, routed, and what it
made published (:class:`BatchTagger`): its index changes first, in both guarantees, so that no output is ever
stored without the index change its event made, and so that the batch's second look
(:mod:`~stream_app.title_index.second_look`) can wait for them to come back through the topic; then its outputs,
exactly-once in one transaction per input partition with the offsets they consume. An error or a cancellation
stops the worker without acking the batch (:func:`register_agent`), so a restart reads it again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Final, cast

import faust
import mode
from faust.types import TP, AppT, EventT, StreamT, TopicT

from stream_app.bounded import remember
from stream_app.classifier import Prediction
from stream_app.dedupe import DedupeVerdict
from stream_app.delivery.batched import Record
from stream_app.delivery.publish import Publisher, encode
from stream_app.faust_patches.consumer import TaggerConsumer
from stream_app.metrics import Metrics
from stream_app.pipeline import Admitted, Output, Pipeline
from stream_app.review.board import PublishedRecords
from stream_app.settings import Settings
from stream_app.title_index.barrier import IndexBarrier
from stream_app.title_index.follower import INDEX_PARTITION, IndexFollower, Watch
from stream_app.title_index.index import TitleIndex
from stream_app.title_index.second_look import SecondLook, Window, stored_from, through_copies
from stream_app.title_index.store import IndexChange
from stream_app.topology.topics import WorkerTopics

SWEEP_INTERVAL_SECONDS = 1.0
MAX_UNPUBLISHED: Final = 100_000
"""Most index changes a worker that gets no batch keeps for its next one (about 10 MB)."""
"""How often expired titles are deleted from the index: a sweep costs what it deletes (not what the index holds),
so frequent sweeps keep each one short."""


INLINE_MODEL_TEXTS = 16
"""Batches of at most this many texts are classified on the event loop: the hop to the model's thread and back
costs more than the model takes for a few texts, and a worker under light load sends batches of a few events."""


class IndexOwnership:
    """Which expired titles this worker deletes from the index topic: those whose digest falls, modulo the input
    partition count, on an input partition assigned to it. Every worker expires every title in its own memory;
    one deletion record per title is enough for the topic's compaction and the other workers."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.assigned: set[int] = set()

    def owns(self, change: IndexChange) -> bool:
        return int.from_bytes(change.key, "big") % self.partitions in self.assigned


class StreamProgress:
    """Per input partition: the first offset the agent has not finished with (taken and not yet published, or not
    yet taken).

    The consumer lag is counted from it rather than from the consumer's position: when records the consumer
    fetched never reach the agent (see stream_app/faust_patches/consumer.py), a lag counted from the position
    reads 0 while nothing is processed; and an agent stuck on the batch it holds, with nothing behind it, would
    show no lag either.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.next_offset: dict[TP, int] = {}
        self.changed_at: dict[TP, float] = {}
        """When the agent last took or finished events of each partition (``clock`` seconds)."""
        self.clock = clock

    def taken(self, events: Sequence[EventT[Any]]) -> None:
        """The agent took ``events`` to work on: a partition it had finished nothing of counts from the first."""
        now = self.clock()
        for event in events:
            self.next_offset.setdefault(event.message.tp, event.message.offset)
            self.changed_at[event.message.tp] = now

    def processed(self, events: Sequence[EventT[Any]]) -> None:
        """The agent published what ``events`` made."""
        now = self.clock()
        for event in events:
            self.next_offset[event.message.tp] = event.message.offset + 1
            self.changed_at[event.message.tp] = now

    def idle_since(self, tp: TP) -> float | None:
        """When the agent last took or finished events of ``tp``; None if it has not since the assignment."""
        return self.changed_at.get(tp) if tp in self.next_offset else None

    def skip(self, tp: TP, start: int, end: int) -> None:
        """Offsets ``start`` to ``end`` of ``tp`` hold nothing the agent can be given (transaction markers, aborted
        records): count from ``end``, unless the agent has moved on since ``start`` was read."""
        if self.next_offset.get(tp) == start:
            self.next_offset[tp] = end

    def reassigned(self) -> None:
        self.next_offset.clear()
        self.changed_at.clear()


class BatchTagger:
    """Validates, de-duplicates, classifies and routes one batch, and publishes what it made."""

    def __init__(
        self,
        pipeline: Pipeline,
        index: TitleIndex,
        topics: WorkerTopics,
        publisher: Publisher,
        metrics: Metrics,
        ownership: IndexOwnership,
        model_thread: Executor,
        second_look: SecondLook,
        published: PublishedRecords | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.index = index
        self.topics = topics
        self.publisher = publisher
        self.metrics = metrics
        self.ownership = ownership
        self.model_thread = model_thread
        """onnxruntime releases the GIL: on a thread of its own, the model runs while the event loop goes on
        with Kafka, on the second core (for batches of more than :data:`INLINE_MODEL_TEXTS` texts)."""
        self.published = published
        """Where the review and tagged records go as well, for this worker's review follower to find them."""
        self.second_look = second_look
        """Where each batch that stored index changes gets its second look."""
        self.index_topic = str(topics.index.get_topic_name())
        self.last_sweep = float("-inf")
        """When a batch last swept (:meth:`sweep`)."""
        self.last_idle_sweep = float("-inf")
        """When the timer last swept between batches (:meth:`sweep_idle`): kept apart, so that it never makes the
        next batch skip its own sweep, the one that publishes with the outputs."""
        self.unpublished: OrderedDict[bytes, IndexChange] = OrderedDict()
        """Changes a sweep between batches (:meth:`sweep_idle`) made, by key, for the next batch to publish; at most
        :data:`MAX_UNPUBLISHED`."""

    async def __call__(self, events: Sequence[EventT[Any]]) -> None:
        admitted = [self.admit(event) for event in events]
        fresh = [item for item in admitted if isinstance(item, Admitted)]
        # The whole batch checked at once (its signatures are cheaper so), handed to the pipeline item by item.
        titles = [(str(item.event.id), item.event.title, item.event.description, item.event_time) for item in fresh]
        watch = self.second_look.watch() if fresh else None
        try:
            replayed_copies = self.index.replayed_copies
            checks = self.index.check_many(titles)
            # A replay's check gives the second look its crashed worker never gave (TitleIndex.check_many).
            self.metrics.second_look_copies.inc(self.index.replayed_copies - replayed_copies)
            judged = dict(zip(map(id, fresh), checks, strict=True))
            stored = [self.index_record(change) for _, made in checks for change in made]
            # The index changes leave now, and are stored before any output (Publisher.send_ahead), while the batch
            # is classified and looked at again.
            ahead = await self.publisher.send_ahead([*self.sweep(), *stored])
            checked = self.pipeline.dedupe(fresh, lambda item: judged[id(item)][0])
            predictions: list[Prediction] | asyncio.Future[list[Prediction]] = []
            if 0 < len(checked.texts) <= INLINE_MODEL_TEXTS:
                predictions = checked.classify()
            elif checked.texts:
                predictions = asyncio.get_running_loop().run_in_executor(self.model_thread, checked.classify)
            copies: dict[int, DedupeVerdict] = {}
            if watch is not None:
                copies, corrected = await self.look_again(watch, titles, checks, stored, ahead)
                if corrected:
                    ahead = [*ahead, *await self.publisher.send_ahead(corrected)]
        finally:
            if watch is not None:
                self.second_look.close(watch)
        if not isinstance(predictions, list):
            predictions = await predictions
        if copies:
            predictions = checked.turn_copies(copies, predictions)
        routed = iter(self.pipeline.route(checked, predictions))
        made = [[self.output_record(item if isinstance(item, Output) else next(routed))] for item in admitted]
        await self.publisher.publish(events, made, ahead)
        done = time.monotonic()
        self.metrics.latencies([done - item.consumed_at for item in fresh])
        if fresh:
            self.metrics.set_last_event(max(item.event_time for item in fresh), now=time.time())

    async def look_again(
        self,
        watch: Watch,
        titles: Sequence[tuple[str, str, str | None, float]],
        checks: Sequence[tuple[DedupeVerdict, list[IndexChange]]],
        stored: Sequence[Record],
        deliveries: Sequence[asyncio.Future[Any]],
    ) -> tuple[dict[int, DedupeVerdict], list[Record]]:
        """The second look (:mod:`~stream_app.title_index.second_look`): once the batch's index changes (``stored``,
        made by ``checks`` of ``titles``) are delivered, wait until the follower has applied them, and judge each
        title that stored an entry again against the entries other workers stored before its own. Returns the
        positions in ``titles`` of the events whose verdicts changed with their new verdicts
        (:func:`~stream_app.title_index.second_look.through_copies`), and the index changes that leave their entries
        as one check at a time would have."""
        delivered = [await delivery for delivery in deliveries]
        own = {(record.key, record.value) for record in stored}
        window = Window(await self.second_look.settle(watch, own, stored_from(delivered, self.index_topic)), own)
        if not window.others:
            return {}, []  # no other worker stored anything meanwhile
        earlier = self.index.earlier_entries(window.others)
        copies: dict[int, DedupeVerdict] = {}
        corrected: list[Record] = []
        for position, (title, (verdict, made)) in enumerate(zip(titles, checks, strict=True)):
            claim = made[-1] if made else None
            if claim is None or claim.value is None or verdict.match == "exact":
                # An exact copy (a replay found one put its original's entry back), or a title it held (a replay
                # of its own event): it stored no entry of its own.
                continue
            # A near copy's entry is judged too: another worker may have stored its title under the same key.
            again = self.index.recheck(title, claim.key, earlier, window.position(claim.key, claim.value))
            if again is not None:
                copies[position] = again[0]
                corrected += map(self.index_record, again[1])
        if not copies:
            return {}, corrected
        verdicts = [verdict for verdict, _ in checks]
        self.metrics.second_look_copies.inc(sum(verdicts[position].duplicate_of is None for position in copies))
        return through_copies([event_id for event_id, *_ in titles], verdicts, copies), corrected

    def admit(self, event: EventT[Any]) -> Output | Admitted:
        message = event.message
        return self.pipeline.admit(
            event.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            event_time=message.timestamp,
        )

    def sweep(self) -> list[Record]:
        """What this worker publishes to the index topic for the titles it owns: what the sweeps since the last
        batch made (:meth:`sweep_idle`), then, at most once a :data:`SWEEP_INTERVAL_SECONDS`, deletions of those
        expired since the last sweep and entries a deletion came after in the topic although they were fresh
        (:meth:`TitleIndex.expire`)."""
        changes, self.unpublished = list(self.unpublished.values()), OrderedDict()
        now = time.time()
        if now - self.last_sweep >= SWEEP_INTERVAL_SECONDS:
            self.last_sweep = now
            changes += self.index.expire()
        # Owned now: a change made for a partition revoked since is the new owner's to publish.
        return [self.index_record(change) for change in changes if self.ownership.owns(change)]

    def sweep_idle(self, now: float) -> None:
        """Sweep when no batch has for a :data:`SWEEP_INTERVAL_SECONDS`: a worker given no events (more workers than
        partitions, or quiet ones) must still let expired titles go, or its index would grow without end. What it
        owns waits for the next batch to publish it with the outputs (it is deleted here already)."""
        if not self.index.loaded or min(now - self.last_sweep, now - self.last_idle_sweep) < SWEEP_INTERVAL_SECONDS:
            return
        self.last_idle_sweep = now
        for change in self.index.expire():
            if self.ownership.owns(change):
                # Past the bound, the oldest deletions are not published: the topic keeps those expired entries,
                # which a starting worker loads and lets go at its first sweep.
                remember(self.unpublished, change.key, change, MAX_UNPUBLISHED)

    def output_record(self, output: Output) -> Record:
        key = output.key.encode() if output.key is not None else None
        value = encode(output.record)
        if self.published is not None and (output.kind == "tagged" or output.kind == "review"):
            self.published.put(value, output.record)
        return Record(self.topics.name(output.kind), key, value)

    def index_record(self, change: IndexChange) -> Record:
        return Record(self.index_topic, change.key, change.value, partition=INDEX_PARTITION)


def register_agent(
    app: AppT,
    source: TopicT,
    tag: BatchTagger,
    follower: IndexFollower,
    progress: StreamProgress,
    settings: Settings,
) -> None:
    """Declare ``tag_events``, the agent that takes batches off ``source`` once the title index is loaded, and the
    timer that sweeps the index between batches."""
    barrier = IndexBarrier(follower, on_timeout=tag.metrics.index_barrier_timeouts.inc)

    @app.timer(interval=SWEEP_INTERVAL_SECONDS)
    async def sweep_between_batches() -> None:
        """Let expired titles go on a worker that gets no batch (see :meth:`BatchTagger.sweep_idle`)."""
        tag.sweep_idle(time.time())

    # An unexpected error in the agent stops the worker instead of restarting the agent: a restarted agent skips
    # the event it failed on, while a restarted worker resumes from the last committed offset (errors.py).
    @app.agent(source, name="tag_events", supervisor_strategy=mode.CrashingSupervisor)
    async def tag_events(stream: StreamT[bytes]) -> AsyncIterable[None]:
        """Tag input messages in batches: each ends in exactly one output topic, sent before the batch's ack."""
        # Records go from the consumer's fetch loop to the batches without Faust's per-record path (inlet.py).
        inlet = cast(TaggerConsumer, app.consumer).open_inlet(source.topics)
        batches = inlet.batches(cast(faust.Stream[Any], stream), settings.batch_size, settings.batch_linger_seconds)
        try:
            await follower.ready.wait()
            async for taken in batches:
                taken_at = time.monotonic()
                progress.taken(taken)
                events = tag.publisher.uncommitted(taken)
                try:
                    if events:
                        # The index catches up with the topic, however long the loop stalled before it got the
                        # events; what it still misses, the second look judges.
                        await barrier.wait(taken_at)
                        await tag(events)
                except BaseException:  # cancelled too: a batch not published must not be acked
                    cast(TaggerConsumer, app.consumer).hold_acks(taken)
                    raise
                progress.processed(taken)
                yield None
        finally:
            # Now rather than whenever the generator is collected: closing acks the batch it holds, and a
            # failed one is held (hold_acks) before.
            await batches.aclose()
