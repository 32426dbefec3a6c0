"""The worker's composition: every part built once and wired into one Faust app. Nothing here does work."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import faust
from prometheus_client import CollectorRegistry

from stream_app.classifier import Classifier
from stream_app.delivery.kafka import READ_COMMITTED, aiokafka_client, faust_credentials
from stream_app.delivery.publish import Publisher
from stream_app.delivery.transactions import PartitionTransactions
from stream_app.drift import DriftMonitor, Reference
from stream_app.faust_patches.consumer import TaggerApp
from stream_app.faust_patches.transacted import TransactedApp
from stream_app.metrics import Metrics
from stream_app.pipeline import Pipeline
from stream_app.review.board import ReviewBoard
from stream_app.review.sessions import session_secret
from stream_app.review.sign_outs import SignOuts
from stream_app.review.views import FAUST_VIEWS_OFF
from stream_app.settings import Settings
from stream_app.title_index.follower import IndexFollower
from stream_app.title_index.index import TitleIndex
from stream_app.title_index.second_look import SecondLook
from stream_app.topology.agent import BatchTagger, IndexOwnership, StreamProgress, register_agent
from stream_app.topology.tasks import register_tasks
from stream_app.topology.topics import WorkerTopics
from stream_app.topology.web import register_pages

METADATA_MAX_AGE_MS = 5_000
"""How often the consumer refreshes cluster metadata. A group assignment made while a just-created topic was
still missing from the metadata leaves that topic unassigned until the next refresh (Kafka's default is 5
minutes), so the worker would stall that long on a first start; a refresh seeing the topic triggers a rebalance
that assigns it."""


def transport_options(settings: Settings) -> dict[str, Any]:
    """The Faust app options that set how the worker reads and writes Kafka (shared with bench/floor.py)."""
    return {
        "broker": settings.broker_url,
        "broker_credentials": faust_credentials(settings),
        "datadir": str(settings.data_dir),
        "web_port": settings.web_port,
        "topic_partitions": settings.partitions,
        "broker_commit_interval": settings.commit_interval_seconds,
        "consumer_auto_offset_reset": "earliest",
        "consumer_metadata_max_age_ms": METADATA_MAX_AGE_MS,
        "producer_acks": -1,
        # Only records sent one at a time linger: a batch's outputs leave as closed record batches (0016).
        "producer_linger": settings.producer_linger_seconds,
        "producer_max_batch_size": 262_144,
        "autodiscover": False,
        # No leader election is used. Its topic's one partition, always empty, sat in every fetch of the worker's
        # consumer, and alone in those sent while the input's records waited for the agent (decision 0039).
        "topic_disable_leader": True,
    }


def new_faust_app(settings: Settings) -> TaggerApp:
    """The Faust app: the worker's consumer (exactly-once: the transacted one), none of Faust's own web views."""
    app_class = TransactedApp if settings.exactly_once else TaggerApp
    return app_class(
        settings.app_id,
        **transport_options(settings),
        web_bind=settings.web_host,
        web_host=settings.web_host,
        # Faust's exactly-once names a transaction after the partition a record is sent to; ours are per source
        # partition (stream_app/delivery/transactions.py).
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout_seconds,
        # Faust refuses a session timeout above its request timeout (90 s by default) when the consumer starts.
        broker_request_timeout=max(90.0, settings.session_timeout_seconds + 30.0),
        key_serializer="raw",
        value_serializer="raw",
        **FAUST_VIEWS_OFF,
    )


def create_app(
    settings: Settings,
    classifier: Classifier,
    registry: CollectorRegistry | None = None,
    model_dir: Path | None = None,
) -> faust.App:
    """Build the worker for ``settings`` serving ``classifier``, loaded from ``model_dir`` (by default
    ``TAGGER_MODEL_DIR``); nothing connects until the worker starts."""
    registry = registry if registry is not None else CollectorRegistry()
    reference = Reference.from_card(classifier.card)
    metrics = Metrics(registry, reference.confidence_bin_edges)
    metrics.set_model(classifier.version, classifier.threshold, reference.below_threshold_share)
    pipeline = Pipeline(classifier, metrics, DriftMonitor(reference, settings.drift_window, classifier.card_threshold))

    app = new_faust_app(settings)
    topics = WorkerTopics.declare(app, settings)
    client = aiokafka_client(settings)
    transactions = PartitionTransactions("tag", settings.app_id, client) if settings.exactly_once else None
    if transactions is not None:
        transacted = cast(TransactedApp, app)
        transacted.owners = {settings.input_topic: transactions}

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust's stub has no signal arguments
        async def release_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            await transacted.release(revoked)

    index = TitleIndex(settings.dedupe_ttl_seconds, settings.max_clock_skew_seconds)
    metrics.track_dedupe_entries(lambda: index.entries)
    follower = IndexFollower(
        index,
        str(topics.index.get_topic_name()),
        {**client, **READ_COMMITTED},
        on_skip=lambda reason: metrics.skipped("title_index", reason),
        on_applied=metrics.index_replicated,
    )
    ownership, progress, board = (
        IndexOwnership(settings.partitions),
        StreamProgress(),
        ReviewBoard(settings.review_recent_limit, settings.review_board_max_items),
    )
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    publisher = Publisher(app.producer, transactions)
    second_look = SecondLook(follower, on_timeout=metrics.index_barrier_timeouts.inc)
    tag = BatchTagger(
        pipeline, index, topics, publisher, metrics, ownership, model_thread, second_look, board.published
    )

    register_agent(app, topics.input, tag, follower, progress, settings)
    signed_out = SignOuts(session_secret(settings), caught_up=False)
    register_tasks(
        app, settings, topics, follower, ownership, progress, board, pipeline, metrics, signed_out,
        model_dir if model_dir is not None else settings.model_dir,
    )  # fmt: skip
    register_pages(app, settings, registry, pipeline, follower, topics, board, signed_out)
    app.tagger_metrics = metrics  # type: ignore[attr-defined]  # for tests
    return app
