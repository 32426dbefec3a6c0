"""The Faust wiring: topics, the title table, the two agents and the web pages, declared once each.

Data flows one way::

    input topic --validate_events--> dead-letter topic
                        |
                        +--(keyed by dedupe key)--> <app_id>-content-by-title
                                                            |
                                                      route_events --> tagged | review | duplicates

Re-keying by the dedupe key before the table lookup makes copies of one title meet in one table partition,
whichever input partition they arrived on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import AsyncIterable, Callable, Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import faust
import faust.web
import mode
from faust.serializers import codecs
from faust.types import TP, EventT, StoreT, StreamT
from mode.utils.locks import Event
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream_app.classifier import Classifier
from stream_app.consumer import TaggerApp
from stream_app.dedupe import DedupeIndex, DedupeVerdict, digest_of_ref
from stream_app.drift import DriftMonitor, Reference
from stream_app.kafka_client import aiokafka_security as _aiokafka_security
from stream_app.kafka_client import faust_credentials as _credentials
from stream_app.labels import LabelStore
from stream_app.lifecycle import ModelLifecycle, Retrainer
from stream_app.metrics import Metrics
from stream_app.pipeline import Admitted, Output, Pipeline, utc_iso
from stream_app.review import ReviewBoard
from stream_app.review_follower import follow_decisions
from stream_app.review_web import FAUST_VIEWS_OFF, REVIEW_PATHS, ReviewSite, review_view
from stream_app.settings import Settings
from stream_app.title_store import TitleStore, split_title_key, title_key
from stream_app.transactions import PartitionTransactions, Record, TransactedApp

log = logging.getLogger(__name__)

PRODUCER_BUFFER_MESSAGES = 10_000
"""Table changelog messages that may wait to be sent before Faust pauses the streams to drain them."""
SWEEP_INTERVAL_SECONDS = 1.0
"""How often each partition's expired titles are deleted from the table: a sweep costs what it deletes (not what
the table holds), so frequent sweeps keep each one short."""
ROCKSDB_OPTIONS = {
    "write_buffer_size": 16 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 64 << 20,
    "block_cache_compressed_size": 16 << 20,
}
"""Memory bounds of a ``rocksdb://`` title table: Faust's defaults (3 write buffers of 64 MB, a 2 GB block cache)
would let its memory grow far past the table's size on disk."""
METADATA_MAX_AGE_MS = 5_000
"""How often the consumer refreshes cluster metadata. A group assignment made while a just-created internal
topic was still missing from the metadata leaves that topic unassigned until the next refresh (Kafka's
default is 5 minutes), so the worker would stall that long on a first start; a refresh seeing the topic
triggers a rebalance that assigns it."""


class PartitionView(MutableMapping[str, Any]):
    """The slice of the title table that belongs to one partition, keyed by ref.

    Table keys are bytes, the partition's prefix then the ref (see :func:`title_key`), so a sweep can find its own
    entries; writes must happen while an event of that partition is the stream's current event, because Faust sends
    each change to the changelog partition of the current event.
    """

    def __init__(
        self, table: MutableMapping[bytes, Any], partition: int, store: Mapping[bytes, Any] | None = None
    ) -> None:
        self.table = table
        self.partition = partition
        self.store = table if store is None else store
        """Where :meth:`get` reads: the table's store. Reading through a Faust table also calls its sensors and
        raises KeyError on a miss, which costs more than the look-up (the dedupe reads a dozen entries per event)."""

    def __getitem__(self, key: str) -> Any:
        value = self.store.get(title_key(self.partition, key))
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.store.get(title_key(self.partition, key))
        return default if value is None else value

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[title_key(self.partition, key)] = value

    def __delitem__(self, key: str) -> None:
        del self.table[title_key(self.partition, key)]

    def __iter__(self) -> Iterator[str]:
        for key in list(self.table):
            split = split_title_key(key)
            if split is not None and split[0] == self.partition:
                yield split[1]

    def __len__(self) -> int:
        return sum(1 for _ in self)


TITLE_KEY_CODEC = "tagger-title-key"


class TitleKeyCodec(codecs.Codec):
    """Reads title table keys from the changelog and RocksDB: today's keys (:func:`title_key`, bytes, which Faust
    writes as they are) as they are; a JSON string, as earlier versions wrote their ``"<partition>/<ref>"`` str
    keys, as its 10-byte key when its ref is canonical, else as the string's bytes. A key of today never starts
    with ``"``."""

    def _dumps(self, key: Any) -> bytes:
        return bytes(key) if isinstance(key, (bytes, bytearray)) else json.dumps(str(key)).encode()

    def _loads(self, raw: bytes) -> Any:
        if not raw.startswith(b'"'):
            return bytes(raw)
        text = str(json.loads(raw))
        partition, slash, ref = text.partition("/")
        if not (slash and partition.isdigit()):
            return raw
        digest = digest_of_ref(ref) if int(partition) < 256 else None  # only a canonical ref was written binary
        return bytes([0, int(partition)]) + digest if digest is not None else text.encode()


class TitleTable(faust.Table[bytes, bytes]):
    """The title table: keys through :class:`TitleKeyCodec`, values raw bytes (the binary entries of dedupe.py).

    Keys are the 10-byte :func:`title_key` in memory too: 16 bytes less per title than a 13-character str."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_serializer = TITLE_KEY_CODEC  # the value stays "raw", as Faust gives bytes

    def _new_store_by_url(self, url: Any) -> StoreT[bytes, bytes]:
        """A :class:`TitleStore` for ``memory://``, Faust's store for any other URL."""
        if str(url).partition(":")[0] != "memory":
            return cast(StoreT[bytes, bytes], super()._new_store_by_url(url))
        return TitleStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )


@contextlib.contextmanager
def as_current_event(event: EventT[Any]) -> Iterator[None]:
    """Make ``event`` the current event of this task while the block writes to a table.

    Faust sends a table change to the changelog partition of the current event, which a batch from
    ``take_events`` does not set. Only this task's context variable is set: the stream's own
    ``current_event`` attribute must stay untouched, because the take buffer reads it concurrently.
    """
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


class RecoveryEndSignal(Event):
    """Faust's "table recovery ended" signal, which a waiter cannot miss.

    Faust's recovery loop sets this signal after the last changelog record and clears it again before its next
    read, without yielding in between. When the changelog records were already fetched as the rebalance began
    (the partitions of a worker that just died), that happens before the rebalance's waiter has started to wait:
    it then waits forever and the worker never resumes its streams (seen about once in ten kills). A waiter
    arriving after recovery has ended returns at once.
    """

    def __init__(self, recovery: Any) -> None:
        super().__init__()
        self.recovery = recovery

    async def wait(self) -> bool:
        if not self.recovery.in_recovery:
            return True
        return await super().wait()


RECOVERY_STALL_SECONDS = 5.0
"""How long table recovery may go without a changelog record before its consumed-but-lost records are re-fetched."""


def changelog_refetches(
    seen: dict[TP, int | None], highwaters: dict[TP, int | None], positions: dict[TP, int | None]
) -> dict[TP, int]:
    """The offsets to re-read changelog partitions from, when recovery stalled: those the consumer has read past
    the last record recovery saw (``seen``), short of the partition's last offset (``highwaters``).

    Faust 0.15.3 drops the records a fetch returns during a rebalance and seeks back only to committed offsets,
    which changelogs do not have (see stream_app/consumer.py). Recovery then waits forever for records it will
    never be sent; reading them again is harmless (recovery skips offsets it saw).
    """
    refetch = {}
    for tp, highwater in highwaters.items():
        last = seen.get(tp)
        last = -1 if last is None else last
        position = positions.get(tp)
        if highwater is not None and last < highwater and position is not None and position > last + 1:
            refetch[tp] = last + 1
    return refetch


class StreamProgress:
    """Per input partition: the offset after the last event the validate stage received.

    The consumer lag is counted from it rather than from the consumer's position: when records the consumer
    fetched never reach the agents (Faust 0.15.3 dropped them during a rebalance, see stream_app/consumer.py), a
    lag counted from the position reads 0 while nothing is processed.
    """

    def __init__(self) -> None:
        self.next_offset: dict[TP, int] = {}

    def received(self, events: Sequence[EventT[Any]]) -> None:
        for event in events:
            self.next_offset[event.message.tp] = event.message.offset + 1

    def reassigned(self) -> None:
        self.next_offset.clear()


def encode(record: dict[str, Any]) -> bytes:
    """Serialize an output record as compact UTF-8 JSON."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def transport_options(settings: Settings) -> dict[str, Any]:
    """The Faust app options that set how the worker reads and writes Kafka (shared with bench/floor.py)."""
    return {
        "broker": settings.broker_url,
        "broker_credentials": _credentials(settings),
        "datadir": str(settings.data_dir),
        "web_port": settings.web_port,
        "topic_partitions": settings.partitions,
        "broker_commit_interval": settings.commit_interval_seconds,
        "consumer_auto_offset_reset": "earliest",
        "consumer_metadata_max_age_ms": METADATA_MAX_AGE_MS,
        "producer_acks": -1,
        # Every batch waits for its records' delivery before it is acked, so a linger adds to each hop.
        "producer_linger": settings.producer_linger_seconds,
        "producer_max_batch_size": 262_144,
        "autodiscover": False,
    }


def create_app(settings: Settings, classifier: Classifier, registry: CollectorRegistry | None = None) -> faust.App:
    """Build the Faust app for ``settings`` serving ``classifier``; nothing connects until the worker starts."""
    registry = registry if registry is not None else CollectorRegistry()
    reference = Reference.from_card(classifier.card)
    metrics = Metrics(registry, reference.confidence_bin_edges)
    metrics.set_model(classifier.version, classifier.threshold, reference.below_threshold_share)
    drift = DriftMonitor(reference, window=settings.drift_window, threshold=classifier.threshold)
    pipeline = Pipeline(classifier, metrics, drift)
    # The model runs on a thread of its own: onnxruntime releases the GIL, so the event loop goes on with the
    # other stage and Kafka meanwhile, on the second core (BENCHMARKS.md, "The model on its own thread").
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    app_class = TransactedApp if settings.exactly_once else TaggerApp
    app = app_class(
        settings.app_id,
        **transport_options(settings),
        store=settings.store,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        # Faust's exactly-once is never used: it cannot cover a re-keying stage (transactions.py has our own).
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout_seconds,
        table_standby_replicas=0,
        # Table keys are str: JSON keeps them str across a changelog restore ("raw" would give bytes back).
        key_serializer="json",
        value_serializer="json",
        **FAUST_VIEWS_OFF,
    )
    # Table writes queue in the producer's buffer; past max_messages Faust pauses every stream to drain it (and
    # logs a warning per message). Our batches write a few entries per event, so let it absorb a whole batch burst.
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
    # internal=True: Faust creates the topic with ``settings.partitions`` partitions when it is missing.
    input_topic = app.topic(
        settings.input_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        internal=True,
    )
    by_title_topic = app.topic(
        f"{settings.app_id}-content-by-title",
        key_serializer="raw",
        value_serializer="json",
        partitions=settings.partitions,
        internal=True,
    )
    output_topics = {
        kind: app.topic(name, key_serializer="raw", value_serializer="raw", partitions=settings.partitions)
        for kind, name in (
            ("tagged", settings.tagged_topic),
            ("review", settings.review_topic),
            ("duplicate", settings.duplicates_topic),
            ("deadletter", settings.deadletter_topic),
        )
    }
    codecs.register(TITLE_KEY_CODEC, TitleKeyCodec())
    title_index = TitleTable(
        app,
        name="title-index",
        default=None,
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        options=dict(ROCKSDB_OPTIONS) if settings.store.startswith("rocksdb") else None,  # Faust pops keys from it
        help="Dedupe state, per partition: first-seen titles with their LSH buckets, and the near copies found.",
    )
    app.tables.add(title_index)
    recovery = cast(Any, app.tables).recovery  # TableManagerT does not declare it
    recovery._signal_recovery_end = RecoveryEndSignal(recovery)
    last_sweep: dict[int, float] = {}
    progress = StreamProgress()
    # Each partition's index, with its in-memory LSH buckets built from the table when first needed. A rebalance
    # drops them: a partition assigned again may have been written by another worker meanwhile.
    indexes: dict[int, DedupeIndex] = {}

    def title_index_of(partition: int) -> DedupeIndex:
        index = indexes.get(partition)
        if index is None:
            view = PartitionView(title_index, partition, title_index.data)
            index = indexes[partition] = DedupeIndex(view, settings.dedupe_ttl_seconds)
        return index

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust's stub has no signal arguments
    async def forget_indexes(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Drop the indexes (and their LSH buckets) built before this rebalance."""
        indexes.clear()
        progress.reassigned()

    by_title_name = by_title_topic.get_topic_name()
    transactions: tuple[PartitionTransactions, PartitionTransactions] | None = None
    if settings.exactly_once:
        client = {"bootstrap_servers": settings.kafka_bootstrap_servers, **_aiokafka_security(settings)}
        transactions = (
            PartitionTransactions("validate", settings.app_id, client),
            PartitionTransactions("route", settings.app_id, client),
        )
        cast(TransactedApp, app).owners = {settings.input_topic: transactions[0], by_title_name: transactions[1]}

    def record_of(result: Output | Admitted) -> Record:
        """The record a stage sends for ``result``: an output, or a validated event forwarded by title."""
        if isinstance(result, Admitted):
            return Record(by_title_name, result.dedupe_key.encode(), encode(result.to_wire()))
        key = result.key.encode() if result.key is not None else None
        return Record(output_topics[result.kind].get_topic_name(), key, encode(result.record))

    async def deliver(records: Sequence[Record]) -> None:
        """Send ``records`` through the app's producer and wait until the broker has them all: the batch they
        came from is acked after this, so its offsets are committed only once its records are stored."""
        # The producer itself, not Topic.send: Faust's per-message futures and callbacks cost more than the send.
        pending = [await app.producer.send(r.topic, r.key, r.value, None, None, None) for r in records]
        for delivery in pending:
            await delivery

    async def publish(
        owner: PartitionTransactions | None, events: Sequence[EventT[Any]], records: Sequence[Record]
    ) -> None:
        """Send the records made from ``events`` (one each, in order): delivered before the batch is acked, or,
        exactly-once, committed in one transaction per source partition with that partition's next offset."""
        if owner is None:
            await deliver(records)
            return
        record_of_event = {id(event): record for event, record in zip(events, records, strict=True)}
        for source, part in _by_partition(events).items():
            await owner.commit(source, part[-1].message.offset + 1, [record_of_event[id(event)] for event in part])

    def admit(event: EventT[Any]) -> Output | Admitted:
        message = event.message
        return pipeline.admit(
            event.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            event_time=message.timestamp,
        )

    # An unexpected error in an agent stops the worker instead of restarting the agent: a restarted agent skips the
    # event it failed on, while a restarted worker resumes from the last committed offset (errors.py).
    @app.agent(input_topic, name="validate_events", supervisor_strategy=mode.CrashingSupervisor)
    async def validate_events(stream: StreamT[bytes]) -> AsyncIterable[None]:
        """Validate input messages in batches: dead-letter each, or forward it keyed by its dedupe key."""
        batches = cast(faust.Stream[Any], stream).take_events(
            settings.batch_size, within=settings.batch_timeout_seconds
        )
        owner = transactions[0] if transactions is not None else None
        async for taken in batches:
            progress.received(taken)
            events = _uncommitted(taken, owner)
            await publish(owner, events, [record_of(admit(event)) for event in events])
            yield None

    @app.agent(by_title_topic, name="route_events", supervisor_strategy=mode.CrashingSupervisor)
    async def route_events(stream: StreamT[Any]) -> AsyncIterable[None]:
        """De-duplicate, classify and route validated events in batches; outputs are sent before the ack."""
        batches = cast(faust.Stream[Any], stream).take_events(
            settings.batch_size, within=settings.batch_timeout_seconds
        )
        owner = transactions[1] if transactions is not None else None
        async for taken in batches:
            events = _uncommitted(taken, owner)
            if not events:
                continue
            batch = [Admitted.from_wire(cast(dict[str, Any], event.value)) for event in events]
            by_item = {id(item): event for item, event in zip(batch, events, strict=True)}

            def check(item: Admitted, by_item: dict[int, EventT[Any]] = by_item) -> DedupeVerdict:
                event = by_item[id(item)]
                index = title_index_of(event.message.partition)
                with as_current_event(event):
                    return index.check_and_add(
                        str(item.event.id), item.event.title, item.event.description, item.event_time
                    )

            checked = pipeline.dedupe(batch, check)
            await send_table_changes(app.producer.buffer)
            predictions = await asyncio.get_running_loop().run_in_executor(model_thread, checked.classify)
            outputs = pipeline.route(checked, predictions)
            if owner is not None:
                # The titles first: no committed output may outlive the table entry that keeps its copies out.
                await app.producer.flush()
            await publish(owner, events, [record_of(output) for output in outputs])
            now = time.time()
            for item in batch:
                metrics.latency(now - item.consumed_at)
            metrics.set_last_event(max(item.event_time for item in batch))
            _sweep_expired(list(zip(events, batch, strict=True)), title_index_of, last_sweep, now)
            # Not len(title_index): a RocksDB store counts its entries by reading every key.
            metrics.set_dedupe_entries(sum(index.entries for index in indexes.values()))
            yield None

    feedback_topic = app.topic(
        settings.feedback_topic, key_serializer="raw", value_serializer="raw", partitions=settings.partitions
    )
    board = ReviewBoard(settings.review_recent_limit)

    @app.task
    async def declare_output_topics() -> None:
        """Create the output topics when they are missing, so consumers can subscribe before the first event."""
        for topic in (*output_topics.values(), feedback_topic):
            await topic.maybe_declare()

    @app.task
    async def follow_review() -> None:
        """Feed the review board the review, tagged and feedback topics; keep new decisions as labels."""
        await follow_decisions(settings, board, metrics, LabelStore(settings.labels_path))

    async def publish_decision(feedback: dict[str, Any], tagged: dict[str, Any]) -> None:
        key = feedback["id"].encode()
        await (await feedback_topic.send(key=key, value=encode(feedback)))
        await (await output_topics["tagged"].send(key=key, value=encode(tagged)))

    site = ReviewSite(settings, board, publish_decision, lambda: utc_iso(time.time()))
    for path in REVIEW_PATHS:
        app.page(path)(review_view(site))

    @app.timer(interval=RECOVERY_STALL_SECONDS)
    async def unstick_recovery() -> None:
        """Re-fetch changelog records a stalled table recovery never received (see ``changelog_refetches``)."""
        received = [*recovery._active_events_received_at.values(), recovery._recovery_started_at or 0.0]
        idle = time.monotonic() - max(received)
        if not recovery.in_recovery or recovery.tables.changelog_queue.qsize() or idle < RECOVERY_STALL_SECONDS:
            return
        positions = {tp: await app.consumer.position(tp) for tp in recovery.active_highwaters}
        for tp, offset in changelog_refetches(recovery.active_offsets, recovery.active_highwaters, positions).items():
            log.warning("table recovery stalled on %s at offset %s: reading it again from there", tp, offset)
            await app.consumer.seek(tp, offset)

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        """Export the consumer lag of each assigned input partition: records not yet received by the validate stage
        (not merely fetched, so records the consumer read past but lost show as lag)."""
        for tp in app.consumer.assignment():
            if tp.topic != settings.input_topic:
                continue
            position = progress.next_offset.get(tp) or await app.consumer.position(tp)
            highwater = app.consumer.highwater(tp)
            if position is not None and highwater is not None:
                metrics.set_lag(tp.partition, max(0, highwater - position))

    lifecycle = ModelLifecycle(
        pipeline, metrics, settings.candidates_dir, settings.shadow_events, settings.review_threshold
    )
    retrain = Retrainer(settings)

    @app.timer(interval=settings.candidate_poll_seconds)
    async def manage_models() -> None:
        """Take up, shadow, promote or refuse candidate models; start a retrain when enough labels came in."""
        lifecycle.poll()
        await retrain.maybe_start(pipeline.classifier)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        """Prometheus exposition of the worker's metrics."""
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        """Liveness: the model version served."""
        return web.json({"status": "ok", "model_version": pipeline.classifier.version})

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        """Readiness: 200 while the worker processes events, 503 with the reason before that and in a rebalance."""
        reason = unready_reason(app.rebalancing_count, app.rebalancing)
        if reason is not None:
            return web.json({"status": "not ready", "reason": reason}, status=503)
        return web.json({"status": "ready", "model_version": pipeline.classifier.version})

    app.tagger_metrics = metrics  # type: ignore[attr-defined]  # for tests and the review page
    return app


def unready_reason(rebalances: int, rebalancing: bool) -> str | None:
    """Why the worker cannot process events yet, or None once it can.

    Faust starts a rebalance when the consumer joins its group and ends it only once the partitions are assigned,
    the tables recovered and the fetcher resumed; its web server (``/health``) answers before the first join.
    """
    if rebalances == 0:
        return "not yet joined its consumer group"
    if rebalancing:
        return "rebalancing: taking up partitions and recovering their table state"
    return None


async def send_table_changes(buffer: Any) -> None:
    """Hand the table changes waiting in Faust's producer buffer to the producer now, in this task.

    A task of Faust's own sends them one by one, and the producer's sender, waking between two of them, sent a
    produce request for every one or two: 58% of the worker's requests held nothing else (BENCHMARKS.md). Sent
    here, a batch's changes go out together, in one request or two.
    """
    while buffer.pending.qsize():
        await buffer._send_pending(buffer.pending.get_nowait())
    buffer.message_sent.set()  # what Faust's task signals after a send: a flush waiting on it sees the buffer empty


def _uncommitted(events: Sequence[EventT[Any]], owner: PartitionTransactions | None) -> list[EventT[Any]]:
    """The events not committed already (all of them at-least-once): the consumer can hand a record out twice,
    which Faust's at-least-once commits absorb but a transaction would emit twice."""
    if owner is None:
        return list(events)
    return [event for event in events if event.message.offset >= owner.committed(event.message.tp)]


def _by_partition(events: Sequence[EventT[Any]]) -> dict[TP, list[EventT[Any]]]:
    """A batch's events grouped by the partition they were read from, in order."""
    groups: dict[TP, list[EventT[Any]]] = {}
    for event in events:
        groups.setdefault(event.message.tp, []).append(event)
    return groups


def _sweep_expired(
    batch: list[tuple[EventT[Any], Admitted]],
    title_index_of: Callable[[int], DedupeIndex],
    last_sweep: dict[int, float],
    now: float,
) -> None:
    """Delete expired titles of each partition in this batch, at most once a sweep interval per partition."""
    latest = {event.message.partition: (event, item) for event, item in batch}
    for partition, (event, item) in latest.items():
        if now - last_sweep.get(partition, float("-inf")) < SWEEP_INTERVAL_SECONDS:
            continue
        last_sweep[partition] = now
        with as_current_event(event):
            title_index_of(partition).expire(item.event_time)
