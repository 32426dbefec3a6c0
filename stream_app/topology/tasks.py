"""The worker's background work beside the agent: creating its topics, following the title index and the review
topics, exporting the consumer lag, and managing candidate models."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

from aiokafka.errors import IllegalStateError, KafkaError
from faust.types import TP, AppT

from stream_app.delivery.kafka import READ_COMMITTED, aiokafka_client
from stream_app.errors import RebalanceStalled
from stream_app.faust_patches.consumer import TaggerConsumer
from stream_app.lifecycle.candidates import ModelLifecycle
from stream_app.lifecycle.fleet import fleet_model
from stream_app.lifecycle.retrain import Retrainer
from stream_app.metrics import Metrics
from stream_app.pipeline import Pipeline
from stream_app.review.board import ReviewBoard
from stream_app.review.follower import follow_decisions
from stream_app.review.labels import LabelStore
from stream_app.review.sign_outs import LONGEST_SESSION_SECONDS, SignOuts
from stream_app.settings import Settings
from stream_app.title_index.follower import IndexFollower
from stream_app.topology.agent import IndexOwnership, StreamProgress
from stream_app.topology.gaps import IDLE_SECONDS, EmptyStretches
from stream_app.topology.retention import KeptTopic, check_retention
from stream_app.topology.topics import WorkerTopics

log = logging.getLogger(__name__)


async def partition_lags(
    assigned: Sequence[TP],
    received: Mapping[TP, int],
    position: Callable[[TP], Awaitable[int | None]],
    end_offsets: Callable[..., Awaitable[Mapping[TP, int]]],
    owned: Callable[[], Collection[int]] | None = None,
) -> dict[int, int]:
    """Each of ``assigned``'s lag: from the offset after the last record the agent ``received`` (else the consumer's
    ``position``) to the partition's end offset, asked of the broker. A partition the consumer no longer holds
    (revoked in a rebalance since the assignment was read, or while its position was awaited) is left out this
    time, and so is every partition while the broker does not answer, and one not ``owned`` any more once the
    answers are in (a rebalance during the wait moved it, and its new owner reports it)."""
    # The end offset is asked of the broker, not read from the consumer's last fetch: a consumer holding records the
    # agent has not taken stops fetching, so its highwater, and a lag counted to it, would stop growing.
    starts: dict[TP, int] = {}
    try:
        for tp in assigned:
            try:
                at = received.get(tp)  # 0 when the agent holds a partition's first record
                if at is None:
                    at = await position(tp)
            except IllegalStateError:  # not assigned any more
                continue
            if at is not None:
                starts[tp] = at
        ends = await end_offsets(*starts) if starts else {}
    except KafkaError as error:
        log.debug("no lag this time: %r", error)
        return {}
    kept = set(owned()) if owned is not None else {tp.partition for tp in starts}
    return {
        tp.partition: max(0, ends[tp] - at)
        for tp, at in starts.items()
        if ends.get(tp) is not None and tp.partition in kept
    }


REBALANCE_LIMIT_SECONDS: Final = 300.0
"""Longest a rebalance may last before the worker stops: more than three times what Faust's recovery waits for any
one of its steps (``broker_request_timeout``, 90 s), after which it gives up for good."""


class RebalanceWatch:
    """Tells a rebalance that will never end. Faust's recovery waits ``broker_request_timeout`` for each step (the
    seek to the committed offsets, which waits while the group coordinator is away, say); past it, it ends its loop
    silently, and the worker stays paused, not ready, through every later rebalance too. Stopping lets the
    worker's supervisor start it afresh."""

    def __init__(self, limit_seconds: float = REBALANCE_LIMIT_SECONDS) -> None:
        self.limit_seconds = limit_seconds
        self.since: float | None = None

    def check(self, rebalancing: bool, now: float) -> None:
        """Note whether a rebalance is under way at ``now`` (monotonic seconds); raises :class:`RebalanceStalled`
        once one has lasted past the limit."""
        if not rebalancing:
            self.since = None
        elif self.since is None:
            self.since = now
        elif now - self.since > self.limit_seconds:
            raise RebalanceStalled(
                f"a rebalance has not ended in {now - self.since:.0f} s (Faust's recovery gave up): stopping, so that "
                "the worker's supervisor restarts it"
            )


def register_tasks(
    app: AppT,
    settings: Settings,
    topics: WorkerTopics,
    follower: IndexFollower,
    ownership: IndexOwnership,
    progress: StreamProgress,
    board: ReviewBoard,
    pipeline: Pipeline,
    metrics: Metrics,
    signed_out: SignOuts,
    model_dir: Path,
) -> None:
    """Declare the worker's tasks, timers and rebalance handler on ``app``; ``model_dir`` is the folder of the model
    the pipeline serves at start."""

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust's stub has no signal arguments
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Take up the input partitions assigned in this rebalance."""
        # Counted from the cluster's metadata, which every worker of the group reads alike: a TAGGER_PARTITIONS
        # other than the real count gives two workers one key, or none (undeleted for ever).
        consumer = cast(TaggerConsumer, app.consumer)
        ownership.partitions = consumer.partition_count(settings.input_topic) or settings.partitions
        ownership.assigned = {tp.partition for tp in assigned if tp.topic == settings.input_topic}
        progress.reassigned()
        metrics.keep_lags(ownership.assigned)

    @app.task
    async def follow_index() -> None:
        """Create missing topics, check that the ones read back whole keep their records long enough (a
        :class:`ConfigError` out of a task stops the worker), load the title index from its topic, then apply
        changes as they come."""
        await topics.create_missing()
        await check_retention(
            aiokafka_client(settings),
            [
                KeptTopic(
                    topics.index.get_topic_name(),
                    settings.dedupe_ttl_seconds + 2 * settings.max_clock_skew_seconds,
                    "TAGGER_DEDUPE_TTL_DAYS, and twice TAGGER_MAX_CLOCK_SKEW_SECONDS",
                ),
                KeptTopic(topics.sign_outs.get_topic_name(), LONGEST_SESSION_SECONDS, "the longest review session"),
                KeptTopic(topics.name("review"), math.inf, "an item waits for review until a decision on it"),
                KeptTopic(topics.feedback.get_topic_name(), math.inf, "a decision keeps its item decided"),
            ],
        )
        await follower.run()

    @app.task
    async def follow_review() -> None:
        """Feed the review board the review, tagged and feedback topics; keep new decisions as labels; read the
        reviewers' sign-outs."""
        await follow_decisions(settings, board, metrics, LabelStore(settings.labels_path), signed_out)

    watch = RebalanceWatch()
    # The agent's own isolation level: aborted records are what it is never given.
    stretches = EmptyStretches({**aiokafka_client(settings), **READ_COMMITTED})

    @app.timer(interval=5.0)
    async def watch_rebalance() -> None:
        """Stop the worker (an error out of a timer stops it) when a rebalance has lasted past the limit."""
        watch.check(app.rebalancing, time.monotonic())

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        """Export the consumer lag of each assigned input partition: records the agent has not finished (not
        merely fetched, so records the consumer read past but lost show as lag, and so does a batch the agent is
        stuck on)."""
        assigned = [tp for tp in app.consumer.assignment() if tp.topic == settings.input_topic]
        lags = await partition_lags(
            assigned, progress.next_offset, app.consumer.position, app.consumer.highwaters, lambda: ownership.assigned
        )
        now = time.monotonic()
        for partition, lag in lags.items():
            tp = TP(settings.input_topic, partition)
            since = progress.idle_since(tp)  # None while the lag counts from the position: nothing to read again
            if lag > 0 and since is not None and now - since >= IDLE_SECONDS:
                start = progress.next_offset[tp]
                if not await stretches.holds_records(tp.topic, partition, start, start + lag):
                    progress.skip(tp, start, start + lag)
                    lag = 0
            metrics.set_lag(partition, lag)

    lifecycle = ModelLifecycle(
        pipeline,
        metrics,
        settings.candidates_dir,
        settings.shadow_events,
        settings.review_threshold,
        registry=bool(settings.registry_url),
        serving_dir=model_dir,
    )
    fleet = fleet_model(settings, metrics, pipeline.classifier.version)

    def serving_dir() -> Path:
        """The folder of the model serving now: the registry's champion, else the last promoted or started with."""
        if fleet is not None and fleet.champion_dir is not None:
            return fleet.champion_dir
        return lifecycle.serving_dir or model_dir

    retrain = Retrainer(settings, serving_dir)

    @app.timer(interval=settings.candidate_poll_seconds)
    async def manage_models() -> None:
        """Take up, shadow, promote or refuse candidate models; start a retrain when a trigger fires; follow the
        registry's champion, canary and shadow."""
        await lifecycle.poll()
        await retrain.maybe_start(pipeline.classifier, pipeline.drift.snapshot(), metrics)
        if fleet is not None:
            await fleet.poll(pipeline)
