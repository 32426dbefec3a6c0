"""The Faust wiring: topics, the title index, the agent and the web pages, declared once each.

Data flows one way, in one hop::

    input topic --tag_events--> tagged | review | duplicates | dead-letter
                      |   ^
                      v   |  (the other workers' changes)
               <app_id>-title-index (compacted)

Every worker holds the whole title index (title_index.py), so copies meet whichever input partition or worker
they arrive on; the index's changes go out with the outputs of the events that made them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import AsyncIterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import faust
import faust.web
import mode
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP, EventT, StreamT
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream_app.classifier import Classifier
from stream_app.consumer import TaggerApp
from stream_app.drift import DriftMonitor, Reference
from stream_app.errors import InvalidDecision
from stream_app.index_follower import IndexFollower, new_writer_id, writer_headers
from stream_app.labels import LabelStore, read_labels
from stream_app.lifecycle import ModelLifecycle, Retrainer
from stream_app.metrics import Metrics
from stream_app.pipeline import Admitted, Output, Pipeline, utc_iso
from stream_app.registry import fleet_model
from stream_app.review import ReviewBoard, decide, render_page
from stream_app.settings import Settings
from stream_app.title_index import IndexChange, TitleIndex
from stream_app.transactions import PartitionTransactions, Record, TransactedApp

log = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 1.0
"""How often expired titles are deleted from the index: a sweep costs what it deletes (not what the index holds),
so frequent sweeps keep each one short."""
METADATA_MAX_AGE_MS = 5_000
"""How often the consumer refreshes cluster metadata. A group assignment made while a just-created topic was
still missing from the metadata leaves that topic unassigned until the next refresh (Kafka's default is 5
minutes), so the worker would stall that long on a first start; a refresh seeing the topic triggers a rebalance
that assigns it."""


class StreamProgress:
    """Per input partition: the offset after the last event the agent received.

    The consumer lag is counted from it rather than from the consumer's position: when records the consumer
    fetched never reach the agent (see stream_app/consumer.py), a lag counted from the position reads 0 while
    nothing is processed.
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
        # Every batch waits for its records' delivery before it is acked, so a linger adds to its latency.
        "producer_linger": settings.producer_linger_seconds,
        "producer_max_batch_size": 262_144,
        "autodiscover": False,
    }


def index_topic_name(app_id: str) -> str:
    """The title index's compacted topic of the worker group ``app_id``."""
    return f"{app_id}-title-index"


class IndexOwnership:
    """Which expired titles this worker deletes from the index topic: those whose digest falls, modulo the input
    partition count, on an input partition assigned to it. Every worker expires every title in its own memory;
    one deletion record per title is enough for the topic's compaction and the other workers."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.assigned: set[int] = set()

    def owns(self, change: IndexChange) -> bool:
        return int.from_bytes(change.key, "big") % self.partitions in self.assigned


def create_app(settings: Settings, classifier: Classifier, registry: CollectorRegistry | None = None) -> faust.App:
    """Build the Faust app for ``settings`` serving ``classifier``; nothing connects until the worker starts."""
    registry = registry if registry is not None else CollectorRegistry()
    reference = Reference.from_card(classifier.card)
    metrics = Metrics(registry, reference.confidence_bin_edges)
    metrics.set_model(classifier.version, classifier.threshold, reference.below_threshold_share)
    drift = DriftMonitor(reference, window=settings.drift_window, threshold=classifier.threshold)
    pipeline = Pipeline(classifier, metrics, drift)
    # The model runs on a thread of its own: onnxruntime releases the GIL, so the event loop goes on with Kafka
    # meanwhile, on the second core (docs/decisions).
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    app_class = TransactedApp if settings.exactly_once else TaggerApp
    app = app_class(
        settings.app_id,
        **transport_options(settings),
        web_bind=settings.web_host,
        web_host=settings.web_host,
        # Faust's exactly-once names a transaction after the partition a record is sent to; ours are per source
        # partition (transactions.py).
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout_seconds,
        key_serializer="raw",
        value_serializer="raw",
    )
    # internal=True: Faust creates the topic with ``settings.partitions`` partitions when it is missing.
    input_topic = app.topic(
        settings.input_topic,
        key_serializer="raw",
        value_serializer="raw",
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
    index_topic = app.topic(
        index_topic_name(settings.app_id),
        key_serializer="raw",
        value_serializer="raw",
        partitions=1,  # read whole by every worker: one partition keeps every title's changes in one order
        compacting=True,
        internal=True,
    )
    index_name = index_topic.get_topic_name()
    index = TitleIndex(settings.dedupe_ttl_seconds, settings.max_clock_skew_seconds)
    writer_id = new_writer_id()
    headers = writer_headers(writer_id)
    client = {"bootstrap_servers": settings.kafka_bootstrap_servers, **_aiokafka_security(settings)}
    follower = IndexFollower(
        index,
        index_name,
        writer_id,
        {**client, "isolation_level": "read_committed" if settings.exactly_once else "read_uncommitted"},
        on_skip=lambda reason: metrics.skipped_record("title_index", reason),
        on_applied=metrics.index_replicated,
    )
    ownership = IndexOwnership(settings.partitions)
    progress = StreamProgress()
    last_sweep = [float("-inf")]

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust's stub has no signal arguments
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Take up the input partitions assigned in this rebalance."""
        ownership.assigned = {tp.partition for tp in assigned if tp.topic == settings.input_topic}
        progress.reassigned()

    transactions: PartitionTransactions | None = None
    if settings.exactly_once:
        transactions = PartitionTransactions("tag", settings.app_id, client)
        cast(TransactedApp, app).owners = {settings.input_topic: transactions}

    def output_record(output: Output) -> Record:
        key = output.key.encode() if output.key is not None else None
        return Record(output_topics[output.kind].get_topic_name(), key, encode(output.record))

    def index_record(change: IndexChange) -> Record:
        return Record(index_name, change.key, change.value, headers)

    async def deliver(records: Sequence[Record]) -> None:
        """Send ``records`` through the app's producer and wait until the broker has them all: the batch they
        came from is acked after this, so its offsets are committed only once its records are stored."""
        # The producer itself, not Topic.send: Faust's per-message futures and callbacks cost more than the send.
        pending = [await app.producer.send(r.topic, r.key, r.value, None, None, r.headers) for r in records]
        for delivery in pending:
            await delivery

    async def publish(events: Sequence[EventT[Any]], records: Sequence[list[Record]], swept: list[Record]) -> None:
        """Send the records made from ``events`` (a list each, in order) and the index's expiry deletions:
        delivered before the batch is acked, or, exactly-once, committed in one transaction per source partition
        with that partition's next offset."""
        if transactions is None:
            await deliver([*swept, *(record for made in records for record in made)])
            return
        made_by = {id(event): made for event, made in zip(events, records, strict=True)}
        for source, part in _by_partition(events).items():
            sent = [*swept, *(record for event in part for record in made_by[id(event)])]
            swept = []
            await transactions.commit(source, part[-1].message.offset + 1, sent)

    def admit(event: EventT[Any]) -> Output | Admitted:
        message = event.message
        return pipeline.admit(
            event.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            event_time=message.timestamp,
        )

    async def tag(events: Sequence[EventT[Any]]) -> None:
        """Validate, de-duplicate, classify and route one batch, and publish what it made."""
        admitted = [admit(event) for event in events]
        changes: dict[int, list[IndexChange]] = {}

        def check(item: Admitted) -> Any:
            verdict, changes[id(item)] = index.check(
                str(item.event.id), item.event.title, item.event.description, item.event_time
            )
            return verdict

        fresh = [item for item in admitted if isinstance(item, Admitted)]
        checked = pipeline.dedupe(fresh, check)
        if checked.texts:
            predictions = await asyncio.get_running_loop().run_in_executor(model_thread, checked.classify)
        else:
            predictions = []
        routed = iter(pipeline.route(checked, predictions))
        records: list[list[Record]] = []
        for item in admitted:
            if isinstance(item, Output):
                records.append([output_record(item)])
            else:
                records.append([*map(index_record, changes[id(item)]), output_record(next(routed))])
        now = time.time()
        swept: list[Record] = []
        if now - last_sweep[0] >= SWEEP_INTERVAL_SECONDS:
            last_sweep[0] = now
            swept = [index_record(change) for change in index.expire() if ownership.owns(change)]
        await publish(events, records, swept)
        done = time.time()
        for item in fresh:
            metrics.latency(done - item.consumed_at)
        if fresh:
            metrics.set_last_event(max(item.event_time for item in fresh))
        metrics.set_dedupe_entries(index.entries)

    # An unexpected error in an agent stops the worker instead of restarting the agent: a restarted agent skips the
    # event it failed on, while a restarted worker resumes from the last committed offset (errors.py).
    @app.agent(input_topic, name="tag_events", supervisor_strategy=mode.CrashingSupervisor)
    async def tag_events(stream: StreamT[bytes]) -> AsyncIterable[None]:
        """Tag input messages in batches: each ends in exactly one output topic, sent before the batch's ack."""
        batches = cast(faust.Stream[Any], stream).take_events(
            settings.batch_size, within=settings.batch_timeout_seconds
        )
        await follower.ready.wait()
        async for taken in batches:
            progress.received(taken)
            events = _uncommitted(taken, transactions)
            if events:
                await tag(events)
            yield None

    @app.task
    async def follow_index() -> None:
        """Load the title index from its topic, then apply the other workers' changes as they come."""
        await index_topic.maybe_declare()
        await follower.run()

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

    @app.page("/review")
    class ReviewPage(faust.web.View):
        """The review page: items waiting for a person, and the forms that decide them."""

        async def get(self, request: Any) -> Any:
            return self.html(render_page(board, request.query.get("notice", "")))

        async def post(self, request: Any) -> Any:
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                return self.html(render_page(board, "Refused: the form was sent from another site."), status=403)
            form = {key: str(value) for key, value in (await request.post()).items()}
            try:
                feedback, tagged = decide(board, form, utc_iso(time.time()))
            except InvalidDecision as error:
                return self.html(render_page(board, f"Not saved: {error}"), status=400)
            key = feedback["id"].encode()
            await (await feedback_topic.send(key=key, value=encode(feedback)))
            await (await output_topics["tagged"].send(key=key, value=encode(tagged)))
            board.waiting.pop(feedback["id"], None)  # gone at once; the feedback record confirms it soon
            notice = f"Saved: {feedback['id']} is {feedback['tag']} ({feedback['verdict']})."
            return self.html(render_page(board, notice), status=200)

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        """Export the consumer lag of each assigned input partition: records not yet received by the agent
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
    fleet = fleet_model(settings, metrics)
    retrain = Retrainer(settings, lambda: fleet.champion_dir if fleet is not None else None)

    @app.timer(interval=settings.candidate_poll_seconds)
    async def manage_models() -> None:
        """Take up, shadow, promote or refuse candidate models; start a retrain when a trigger fires; follow the
        registry's champion and canary."""
        await lifecycle.poll()
        await retrain.maybe_start(pipeline.classifier, pipeline.drift.snapshot(), metrics)
        if fleet is not None:
            await fleet.poll(pipeline)

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
        """Readiness: 200 while the worker processes events, 503 with the reason before that (the title index
        loading, the group not joined) and in a rebalance."""
        reason = unready_reason(app.rebalancing_count, app.rebalancing, follower.ready.is_set())
        if reason is not None:
            return web.json({"status": "not ready", "reason": reason}, status=503)
        return web.json({"status": "ready", "model_version": pipeline.classifier.version})

    app.tagger_metrics = metrics  # type: ignore[attr-defined]  # for tests and the review page
    return app


def unready_reason(rebalances: int, rebalancing: bool, index_loaded: bool) -> str | None:
    """Why the worker cannot process events yet, or None once it can.

    Faust starts a rebalance when the consumer joins its group and ends it only once the partitions are assigned
    and the fetcher resumed; its web server (``/health``) answers before the first join.
    """
    if not index_loaded:
        return "loading the title index"
    if rebalances == 0:
        return "not yet joined its consumer group"
    if rebalancing:
        return "rebalancing: taking up partitions"
    return None


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


async def follow_decisions(settings: Settings, board: ReviewBoard, metrics: Metrics, labels: LabelStore) -> None:
    """Read the review, tagged and feedback topics from their start, forever, into ``board``.

    Feedback read while the review and tagged topics are still catching up waits until they have, so a decision
    always finds the prediction it judges. A decision already in the labelled store is not appended again.
    """
    stored = {(label["id"], label["decided_at"]) for label in read_labels(settings.labels_path)[0]}
    names = (settings.review_topic, settings.tagged_topic, settings.feedback_topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, **_aiokafka_security(settings)
    )
    await consumer.start()
    try:
        while True:
            await consumer._client.force_metadata_update()
            cluster = consumer._client.cluster
            partitions = [TopicPartition(n, p) for n in names for p in cluster.partitions_for_topic(n) or ()]
            if {tp.topic for tp in partitions} == set(names):
                break
            await asyncio.sleep(1.0)  # the topics may not exist yet
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        predictions = [tp for tp in partitions if tp.topic != settings.feedback_topic]
        catch_up = await consumer.end_offsets(predictions)
        held: list[dict[str, Any]] = []
        while True:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for message in records:
                    record = json.loads(message.value)
                    if tp.topic == settings.review_topic:
                        board.on_review(record)
                    elif tp.topic == settings.tagged_topic:
                        board.on_tagged(record)
                    else:
                        held.append(record)
            if catch_up and all([await consumer.position(tp) >= end for tp, end in catch_up.items()]):
                catch_up = {}
            if not catch_up:
                for record in held:
                    judgement = board.on_feedback(record)
                    metrics.judged(
                        judgement.verdict,
                        judgement.model_version,
                        judgement.route,
                        judgement.predicted_tag,
                        judgement.correct,
                    )
                    if judgement.label and (record["id"], record["decided_at"]) not in stored:
                        labels.append(judgement.label)
                held.clear()
            metrics.set_review_backlog(len(board.waiting))
    finally:
        await consumer.stop()


def _aiokafka_security(settings: Settings) -> dict[str, Any]:
    """aiokafka client arguments for the configured security protocol (the same as the Faust app's)."""
    protocol = settings.security_protocol.upper()
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    return options


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context trusting ``TAGGER_SSL_CAFILE`` (the system's CAs when empty)."""
    return ssl.create_default_context(cafile=settings.ssl_cafile or None)


def _credentials(settings: Settings) -> Any:
    """Faust broker credentials for the configured security protocol, or None for PLAINTEXT."""
    protocol = settings.security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    ssl_context = _ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        mechanism=settings.sasl_mechanism,
        ssl_context=ssl_context,
    )
