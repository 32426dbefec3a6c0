"""Every Prometheus metric of the worker, created together against a registry passed in."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_app import APPROVED_TAGS
from stream_app.batch_histogram import BatchHistogram
from stream_app.drift import DriftSnapshot
from stream_app.errors import DEADLETTER_REASONS, MODEL_REFUSAL_REASONS, SKIP_REASONS
from stream_app.metric_labels import (
    BATCH_BUCKETS,
    INFERENCE_BUCKETS,
    LATENCY_BUCKETS,
    MATCHES,
    MAX_JUDGED_VERSIONS,
    OUTCOMES,
    PREFIX,
    REPLICATION_BUCKETS,
    ROUTES,
    SIGN_IN_OUTCOMES,
    SKIPPED_TOPICS,
    VERDICTS,
)

if TYPE_CHECKING:
    from stream_app.lifecycle.shadow import ShadowCounts


class _MetricMaker:
    """Makes metrics of the worker's prefix in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(PREFIX + name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(PREFIX + name, doc, labels, registry=self.registry)

    def histogram(self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> Histogram:
        return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=self.registry)

    def batch_histogram(
        self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> BatchHistogram:
        return BatchHistogram(PREFIX + name, doc, buckets, labels, registry=self.registry)


class Metrics:
    """The worker's metrics.

    Every label value is one of a fixed set created up front, so each series reads 0 from the start and a
    typo or an unexpected value raises ``KeyError`` instead of adding a series. The per-message methods
    update pre-resolved children: a dict look-up and an atomic add.
    """

    def __init__(self, registry: CollectorRegistry, confidence_bin_edges: Sequence[float]) -> None:
        """Create every metric in ``registry``; confidence buckets are the model card's bins."""
        make = _MetricMaker(registry)
        self._stream_metrics(make, confidence_bin_edges)
        self._feedback_and_model_metrics(make)
        self._resolve_children()

    def _stream_metrics(self, make: _MetricMaker, confidence_bin_edges: Sequence[float]) -> None:
        self.events_consumed = make.counter("events_consumed", "Input messages consumed.")
        self.events_out = make.counter("events_out", "Records emitted, by output topic.", ["outcome"])
        self.tagged_events = make.counter("tagged", "Events auto-tagged (not sent to review), by tag.", ["tag"])
        self.deadletters = make.counter("deadletters", "Input messages dead-lettered, by reason.", ["reason"])
        self.duplicates = make.counter("duplicates", "Events dropped as copies, by match kind.", ["match"])
        self.processing_latency = make.batch_histogram(
            "processing_latency_seconds",
            "Time from consuming an event to its output being acknowledged.",
            LATENCY_BUCKETS,
        )
        self.inference_batch = make.histogram(
            "inference_batch_duration_seconds", "Duration of one ONNX call on a batch.", INFERENCE_BUCKETS
        )
        self.inference_message = make.histogram(
            "inference_message_duration_seconds",
            "ONNX time per event (batch duration / batch size).",
            INFERENCE_BUCKETS,
        )
        self.batch_size = make.histogram("batch_size", "Events classified per ONNX call.", BATCH_BUCKETS)
        # Buckets are the model card's reference bins (the 0 edge is implicit), so the live histogram
        # compares with the reference bin for bin.
        self.confidence = make.batch_histogram(
            "confidence",
            "Model confidence of classified events (tagged and review), by predicted tag.",
            [e for e in confidence_bin_edges if 0.0 < e < 1.0] + [1.0],
            ["tag"],
        )
        self.drift_confidence_psi = make.gauge("drift_confidence_psi", "PSI of confidence (drift window).")
        self.drift_tag_psi = make.gauge("drift_tag_psi", "PSI of predicted tags (drift window).")
        self.below_threshold_share = make.gauge("below_threshold_share", "Drift window share below the threshold.")
        self.reference_below_threshold_share = make.gauge(
            "reference_below_threshold_share", "Share below the threshold on the model card's reference."
        )
        self.review_threshold = make.gauge("review_threshold", "Confidence below which events go to review.")
        self.drift_window_events = make.gauge("drift_window_events", "Events in the drift window.")
        self.dedupe_entries = make.gauge("dedupe_entries", "Entries in the title index held by this worker.")
        self.index_replication_delay = make.histogram(
            "index_replication_delay_seconds",
            "Time from another worker writing a title index change to this worker applying it.",
            REPLICATION_BUCKETS,
        )
        self.index_barrier_timeouts = make.counter(
            "index_barrier_timeouts",
            "Batches checked before this worker knew its title index held every change committed before they were "
            "taken (the index topic's end could not be read or reached in time), or judged again before their own "
            "changes came back through the topic or past more records than a second look keeps (second look).",
        )
        self.second_look_copies = make.counter(
            "second_look_copies",
            "Events a second look (or a replay's check) found to copy a title another worker stored first.",
        )
        self.model_info = make.gauge("model_info", "The model being served (always 1).", ["version", "threshold"])
        self.last_event_timestamp = make.gauge(
            "last_event_timestamp_seconds", "Event time (Kafka timestamp) of the last processed event."
        )
        self.consumer_lag = make.gauge(
            "consumer_lag",
            "Input messages the agent has not finished: not yet taken, or taken and not yet published (the batch in "
            "work).",
            ["partition"],
        )
        self._lag_partitions: set[int] = set()
        # A new value at each start: the restart alert counts its changes.
        self.start_time = make.gauge("start_time_seconds", "Unix time this worker started (made its metrics).")
        self.start_time.set_to_current_time()

    def _feedback_and_model_metrics(self, make: _MetricMaker) -> None:
        self.feedback_decisions = make.counter(
            "feedback_decisions", "Feedback decisions seen, by verdict.", ["verdict"]
        )
        # ``version`` takes one value per model this worker served or saw judged: a handful over its life.
        self.online_judged = make.counter(
            "online_judged",
            "Model predictions a person has judged, by model version, route and predicted tag.",
            ["version", "route", "tag"],
        )
        self.online_shown = make.counter(
            "online_shown",
            "Auto-tagged items published (by any worker) since this worker started, by model version: what people "
            "may report as wrongly tagged.",
            ["version"],
        )
        self.online_correct = make.counter(
            "online_correct",
            "Judged predictions the person agreed with, by model version, route and predicted tag.",
            ["version", "route", "tag"],
        )
        self.review_backlog = make.gauge(
            "review_backlog",
            "Items waiting for a decision that this worker holds (at most TAGGER_REVIEW_BOARD_MAX_ITEMS).",
        )
        self.review_board_full = make.gauge(
            "review_board_full",
            "1 while the review board holds TAGGER_REVIEW_BOARD_MAX_ITEMS and more review items wait on the topic, "
            "not loaded until decisions free room.",
        )
        self.review_sign_ins = make.counter(
            "review_sign_ins",
            "Sign-ins on the review pages (accounts mode), by outcome: signed_in, wrong (name or password), limited "
            "(refused by a failure limit).",
            ["outcome"],
        )

        self.skipped_records = make.counter(
            "skipped_records",
            "Malformed records skipped (read, counted, logged and not acted on), by topic role and reason.",
            ["topic", "reason"],
        )
        self.model_refusals = make.counter("model_refusals", "Candidate models refused, by reason.", ["reason"])
        self.model_promotions = make.counter("model_promotions", "Candidate models promoted to serve.")
        self.retrains_skipped = make.counter(
            "retrains_skipped",
            "Retrain checks or starts skipped because a file could not be read or the exporter could not start.",
        )
        # ``version`` takes one value per model this worker served (champion or canary): a handful over its life.
        self.model_served = make.counter(
            "model_served", "Classified events, by the model version that served them and route.", ["version", "route"]
        )
        self.registry_reachable = make.gauge("registry_reachable", "1 while the model registry answers, 0 when not.")
        # ``version`` takes one value per shadow model this worker ran: a handful over its life.
        self.shadow_compared = make.counter(
            "shadow_compared", "Events a shadow model classified beside the live one, by shadow model version.",
            ["version"],
        )  # fmt: skip
        self.shadow_agreed = make.counter(
            "shadow_agreed", "Shadowed events on which the shadow model picked the live model's tag.", ["version"]
        )
        self.shadow_review = make.counter(
            "shadow_review",
            "Shadowed events a model would send to review, by shadow model version and model (shadow or live).",
            ["version", "model"],
        )

    def _resolve_children(self) -> None:
        """The label children every per-event call updates, created up front."""
        self._refusals = {reason: self.model_refusals.labels(reason) for reason in MODEL_REFUSAL_REASONS}
        self._sign_ins = {outcome: self.review_sign_ins.labels(outcome) for outcome in SIGN_IN_OUTCOMES}
        self._verdicts = {verdict: self.feedback_decisions.labels(verdict) for verdict in VERDICTS}
        self._out = {outcome: self.events_out.labels(outcome) for outcome in OUTCOMES}
        self._tagged = {tag: self.tagged_events.labels(tag) for tag in APPROVED_TAGS}
        self._confidence = {tag: self.confidence.labels(tag) for tag in APPROVED_TAGS}
        self._deadletters = {reason: self.deadletters.labels(reason) for reason in DEADLETTER_REASONS}
        self._duplicates = {match: self.duplicates.labels(match) for match in MATCHES}
        self._skipped = {
            (topic, reason): self.skipped_records.labels(topic, reason)
            for topic in SKIPPED_TOPICS
            for reason in SKIP_REASONS
        }
        self._served: dict[tuple[str, str], Counter] = {}
        self._versions: dict[str, Counter] = {}
        """Each model version with series of its own, and its child of ``online_shown``."""

    def consumed(self, n: int = 1) -> None:
        """Count consumed input messages."""
        self.events_consumed.inc(n)

    def emitted(self, outcome: str, n: int = 1) -> None:
        """Count records emitted to one output topic (an item of :data:`OUTCOMES`)."""
        self._out[outcome].inc(n)

    def classified(self, tag: str, confidence: float) -> None:
        """Observe the confidence of one classified event, tagged or sent to review."""
        self._confidence[tag].observe(confidence)

    def classified_many(self, tags: Sequence[str], confidences: Sequence[float]) -> None:
        """:meth:`classified` of each of a batch's events, ``tags[i]`` predicted with ``confidences[i]``."""
        by_tag: dict[str, list[float]] = {}
        for tag, confidence in zip(tags, confidences, strict=True):
            by_tag.setdefault(tag, []).append(confidence)
        for tag, values in by_tag.items():
            self._confidence[tag].observe_many(values)

    def tagged(self, tag: str) -> None:
        """Count one auto-tagged event."""
        self._tagged[tag].inc()

    def dead_lettered(self, reason: str) -> None:
        """Count one dead letter (``reason`` from :data:`stream_app.errors.DEADLETTER_REASONS`)."""
        self._deadletters[reason].inc()

    def skipped(self, topic: str, reason: str) -> None:
        """Count one skipped record (``topic`` from :data:`SKIPPED_TOPICS`, ``reason`` from
        :data:`stream_app.errors.SKIP_REASONS`)."""
        self._skipped[topic, reason].inc()

    def duplicate(self, match: str) -> None:
        """Count one dropped copy (``match`` from :data:`MATCHES`)."""
        self._duplicates[match].inc()

    def batch(self, size: int, seconds: float) -> None:
        """Observe one ONNX call of ``size`` events that took ``seconds``."""
        self.batch_size.observe(size)
        self.inference_batch.observe(seconds)
        self.inference_message.observe(seconds / size)

    def latency(self, seconds: float) -> None:
        """Observe one event's consume-to-produce time."""
        self.processing_latency.observe_many((seconds,))

    def latencies(self, seconds: Iterable[float]) -> None:
        """Observe the consume-to-produce time of each of a batch's events."""
        self.processing_latency.observe_many(seconds)

    def served(self, version: str, route: str, n: int = 1) -> None:
        """Count events classified by model ``version`` and sent to ``route`` (tagged or review)."""
        child = self._served.get((version, route))
        if child is None:
            child = self._served[version, route] = self.model_served.labels(version, route)
        child.inc(n)

    def routed(
        self,
        outcomes: Sequence[str],
        matches: Sequence[str],
        tagged: Sequence[str],
        served: Sequence[tuple[str, str]],
    ) -> None:
        """Count what a batch made: its records by :data:`OUTCOMES` item, its dropped copies by :data:`MATCHES`
        item, its auto-tagged events by tag, and its classified events by (model version, route). One add per
        series a batch touches, not one per event."""
        for outcome, n in Tally(outcomes).items():
            self._out[outcome].inc(n)
        for match, n in Tally(matches).items():
            self._duplicates[match].inc(n)
        for tag, n in Tally(tagged).items():
            self._tagged[tag].inc(n)
        for (version, route), n in Tally(served).items():
            self.served(version, route, n)

    def shadowed(self, version: str, batch: ShadowCounts) -> None:
        """Count one batch a shadow model of ``version`` classified beside the live one."""
        self.shadow_compared.labels(version).inc(batch.compared)
        self.shadow_agreed.labels(version).inc(batch.agreed)
        self.shadow_review.labels(version, "shadow").inc(batch.review)
        self.shadow_review.labels(version, "live").inc(batch.live_review)

    def set_served_model(self, version: str) -> None:
        """Create a served model's per-version series (served, online precision), so they read 0 from the start.
        A served version is counted whatever the judged counters' bound: versions named by hostile records must
        not crowd out the model the platform serves."""
        self._versions[version] = self.online_shown.labels(version)
        for route in ROUTES:
            self.model_served.labels(version, route)
            for tag in APPROVED_TAGS:
                self.online_judged.labels(version, route, tag)
                self.online_correct.labels(version, route, tag)

    def set_model(self, version: str, threshold: float, reference_below_share: float) -> None:
        """Publish the served model; the previous model's info series is removed."""
        self.model_info.clear()
        self.model_info.labels(version, f"{threshold:.4f}").set(1)
        self.set_served_model(version)
        self.review_threshold.set(threshold)
        self.reference_below_threshold_share.set(reference_below_share)

    def set_drift(self, snapshot: DriftSnapshot) -> None:
        """Publish the drift window's figures."""
        self.drift_confidence_psi.set(snapshot.confidence_psi)
        self.drift_tag_psi.set(snapshot.tag_psi)
        self.below_threshold_share.set(snapshot.below_threshold_share)
        self.drift_window_events.set(snapshot.events)

    def track_dedupe_entries(self, entries: Callable[[], float]) -> None:
        """Publish the title index's size as ``entries()`` says at each scrape: it changes between batches too,
        as the index loads and as other workers' changes arrive."""
        self.dedupe_entries.set_function(entries)

    def index_replicated(self, delay_seconds: float) -> None:
        """Observe the delay of one title index change applied from another worker."""
        self.index_replication_delay.observe(delay_seconds)

    def set_last_event(self, timestamp: float, now: float) -> None:
        """Publish the event time (seconds since the epoch) of the last processed event, no later than ``now``:
        a producer's clock ahead of ours must not make the event age read negative (and hide a stall)."""
        self.last_event_timestamp.set(min(timestamp, now))

    def judged(
        self, verdict: str, version: str | None, route: str | None, predicted_tag: str | None, correct: bool
    ) -> None:
        """Count one feedback decision and, when the prediction it judges is known (the model ``version`` that
        made it, its ``route``, tagged or review, and its tag), whether the model was right."""
        self._verdicts[verdict].inc()
        if version is None or route is None or predicted_tag is None or self._shown_counter(version) is None:
            return
        self.online_judged.labels(version, route, predicted_tag).inc()
        # Made even when not incremented: a query of judged less correct finds both series.
        judged_right = self.online_correct.labels(version, route, predicted_tag)
        if correct:
            judged_right.inc()

    def shown(self, version: str) -> None:
        """Count one auto-tagged item published by the model ``version`` (read off the tagged topic)."""
        child = self._shown_counter(version)
        if child is not None:
            child.inc()

    def _shown_counter(self, version: str) -> Counter | None:
        """The ``online_shown`` child of ``version`` if the version has (or may have) series of its own, else None."""
        child = self._versions.get(version)
        # The version is read off the tagged and review topics: records that each named another would add series
        # without end. A worker sees a handful of real versions in its life.
        if child is None and len(self._versions) < MAX_JUDGED_VERSIONS:
            child = self._versions[version] = self.online_shown.labels(version)
        return child

    def refused(self, reason: str) -> None:
        """Count one refused candidate model (``reason`` from :data:`stream_app.errors.MODEL_REFUSAL_REASONS`)."""
        self._refusals[reason].inc()

    def sign_in(self, outcome: str) -> None:
        """Count one sign-in on the review pages (``outcome`` from :data:`SIGN_IN_OUTCOMES`)."""
        self._sign_ins[outcome].inc()

    def promoted(self) -> None:
        """Count one promoted candidate model."""
        self.model_promotions.inc()

    def set_review_backlog(self, n: int) -> None:
        """Publish how many review items wait for a decision."""
        self.review_backlog.set(n)

    def set_review_board_full(self, full: bool) -> None:
        """Publish whether review items wait on the topic that the full board has not loaded."""
        self.review_board_full.set(int(full))

    def set_lag(self, partition: int, lag: int) -> None:
        """Publish one input partition's consumer lag in messages."""
        self.consumer_lag.labels(str(partition)).set(lag)
        self._lag_partitions.add(partition)

    def keep_lags(self, partitions: Collection[int]) -> None:
        """Stop publishing the lag of every partition but ``partitions`` (this worker's after a rebalance): a
        partition's new owner publishes it, and a last value left here would count it twice."""
        for partition in self._lag_partitions - set(partitions):
            self.consumer_lag.remove(str(partition))
        self._lag_partitions &= set(partitions)
