"""The worker's processing steps as plain functions of their inputs: no Kafka, so every step is unit-testable.

Stage one, :meth:`Pipeline.admit`, turns raw input bytes into a validated event or a dead-letter record.
Stage two, :meth:`Pipeline.route_batch`, de-duplicates, classifies and routes a batch of validated events
(:meth:`Pipeline.dedupe`, :meth:`CheckedBatch.classify`, :meth:`Pipeline.route`).
The Faust agent only moves bytes between topics and these calls.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, TypeVar

from stream_app.classifier import Classifier, Prediction, event_text
from stream_app.dedupe import DedupeVerdict, dedupe_key
from stream_app.drift import DriftMonitor, Reference
from stream_app.errors import InvalidEvent, ModelError, should_dead_letter
from stream_app.lifecycle.shadow import Shadow
from stream_app.metrics import Metrics
from stream_app.schema import (
    ContentEvent,
    dead_letter_record,
    duplicate_record,
    parse_event,
    review_record,
    tagged_record,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

OutputKind = Literal["tagged", "review", "duplicate", "deadletter"]
OUTCOMES: Final[tuple[OutputKind, ...]] = ("tagged", "review", "duplicate", "deadletter")


# A named tuple, not a frozen dataclass: several are made for every event, at half the cost.
class Output(NamedTuple):
    """One record bound for one of the four output topics."""

    kind: OutputKind
    key: str | None
    record: dict[str, Any]


class Admitted(NamedTuple):
    """A validated event on its way to the dedupe stage."""

    event: ContentEvent
    event_time: float
    consumed_at: float
    """When it was admitted, on the monotonic clock: the processing latency is measured from it, and a step of
    the wall clock must not make that negative."""

    @property
    def dedupe_key(self) -> str:
        """Its title's dedupe key; the dedupe check finds it on its way, and the outputs take the check's."""
        return dedupe_key(self.event.title)


def canary_share(event_id: str) -> float:
    """Where an event id falls in [0, 1): events below the canary fraction are served by the canary. A hash of the
    id, so a replayed event meets the same model, and every worker splits the same way."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big") / 2**64


def utc_iso(timestamp: float) -> str:
    """Seconds since the epoch as an ISO-8601 UTC string; never raises: a time before the epoch (or not a number)
    reads as the epoch, one past what a ``datetime`` holds as its last second (a broker's timestamp is whatever a
    producer wrote)."""
    if not timestamp > 0.0:  # also NaN
        timestamp = 0.0
    return dt.datetime.fromtimestamp(min(timestamp, _MAX_TIMESTAMP), dt.UTC).isoformat(timespec="milliseconds")


_MAX_TIMESTAMP: Final = 253_402_300_799.0
"""9999-12-31T23:59:59Z, the last whole second a ``datetime`` holds."""


class Pipeline:
    """Validate, de-duplicate, classify and route events, counting every outcome in ``metrics``."""

    def __init__(self, classifier: Classifier, metrics: Metrics, drift: DriftMonitor) -> None:
        self.classifier = classifier
        self.metrics = metrics
        self.drift = drift
        self.shadow: Shadow | None = None
        """A candidate model classifying the same events for comparison; nothing it says is emitted."""
        self.canary: Classifier | None = None
        """A model serving the events whose :func:`canary_share` is below ``canary_fraction``."""
        self.canary_fraction = 0.0
        self.failed_canaries: dict[str, str] = {}
        """Versions that raised :class:`ModelError` as a canary, and why: the live model served their events
        instead, and the fleet refuses them (:class:`~stream_app.lifecycle.fleet.FleetModel`)."""

    def set_canary(self, classifier: Classifier | None, fraction: float = 0.0) -> None:
        """Serve ``fraction`` of the events (by a hash of their id) with ``classifier`` from the next batch on;
        None stops the canary. A model that failed as a canary in this process is not served again."""
        if classifier is not None and classifier.version in self.failed_canaries:
            classifier = None
        self.canary, self.canary_fraction = classifier, fraction if classifier is not None else 0.0
        if classifier is not None:
            self.metrics.set_served_model(classifier.version)

    def swap(self, classifier: Classifier) -> None:
        """Serve ``classifier`` from the next batch on, with its own drift reference and model metrics.

        A batch keeps the model it was bound to in :meth:`dedupe`, so a swap never lands inside one: each output
        names the model that produced it.
        """
        reference = Reference.from_card(classifier.card)
        self.drift = DriftMonitor(reference, window=self.drift.window, threshold=classifier.card_threshold)
        self.classifier = classifier
        self.metrics.set_model(classifier.version, classifier.threshold, reference.below_threshold_share)
        # The replaced model's window must not stay published (and keep its drift alerts firing) until a batch
        # comes: the new, empty one is published now.
        self.metrics.set_drift(self.drift.snapshot())

    def _canary_failed(self, canary: Classifier, failure: str) -> None:
        """Stop serving a canary that failed (its events went to the live model), once, counted as refused."""
        if canary.version not in self.failed_canaries:
            self.failed_canaries[canary.version] = failure
            self.metrics.refused("corrupt")
            log.error("canary model %s failed and is no longer served: %s", canary.version, failure)
        if self.canary is canary:
            self.set_canary(None)

    def admit(
        self, raw: bytes | None, *, topic: str, partition: int, offset: int, event_time: float | None
    ) -> Admitted | Output:
        """Validate one input message: an :class:`Admitted` event, or the dead-letter :class:`Output` for it. A
        message without a timestamp (a record of Kafka's message formats before 0.10, which Faust hands over with
        None) is dated when it is admitted."""
        self.metrics.consumed()
        try:
            event = parse_event(raw)
        except Exception as error:
            if not should_dead_letter(error):
                raise
            assert isinstance(error, InvalidEvent)  # noqa: S101 - should_dead_letter admits only these
            self.metrics.dead_lettered(error.reason)
            self.metrics.emitted("deadletter")
            record = dead_letter_record(raw, error, topic, partition, offset, utc_iso(time.time()))
            return Output("deadletter", None, record)
        return Admitted(event, time.time() if event_time is None else event_time, time.monotonic())

    def route_batch(self, batch: Sequence[Admitted], check: Callable[[Admitted], DedupeVerdict]) -> list[Output]:
        """Route a batch: duplicates by ``check`` (which also records new titles), the rest by the model.

        Outputs come back in input order, one per event, so the caller can emit them and then commit. The worker
        makes the same two calls as here, with the model's call on a thread of its own in between.
        """
        checked = self.dedupe(batch, check)
        return self.route(checked, checked.classify())

    def dedupe(self, batch: Sequence[Admitted], check: Callable[[Admitted], DedupeVerdict]) -> CheckedBatch:
        """Find the batch's duplicates with ``check``, and bind the rest to the model serving now."""
        verdicts = [check(item) for item in batch]
        fresh = [item for item, verdict in zip(batch, verdicts, strict=True) if verdict.duplicate_of is None]
        texts = [event_text(item.event.title, item.event.description) for item in fresh]
        shadow = self.shadow if self.shadow is not None and not self.shadow.done else None
        checked = CheckedBatch(batch, verdicts, texts, self.classifier, self.drift, shadow)
        if self.canary is not None and self.canary_fraction > 0:
            checked.canary = self.canary
            checked.canary_mask = [canary_share(str(item.event.id)) < self.canary_fraction for item in fresh]
        return checked

    def route(self, checked: CheckedBatch, predictions: Sequence[Prediction]) -> list[Output]:
        """The outputs of a checked batch, given the model's ``predictions`` for its non-duplicates."""
        classifier, drift = checked.classifier, checked.drift  # a swap since dedupe() does not apply to this batch
        if checked.canary_failure is not None and checked.canary is not None:
            self._canary_failed(checked.canary, checked.canary_failure)
        if checked.texts:
            self.metrics.batch(len(checked.texts), checked.model_seconds)
            if checked.shadow is not None:
                if checked.shadow_predictions is None:  # classified here, not through classify()
                    checked.shadow_predictions = checked.shadow.predict(checked.texts)
                if checked.shadow_predictions is not None:
                    batch = checked.shadow.compare(checked.shadow_predictions, predictions, classifier.threshold)
                    self.metrics.shadowed(checked.shadow.candidate.version, batch)
        remaining = iter(predictions)
        served_by = iter(checked.models())
        processed_at = utc_iso(time.time())
        outputs: list[Output] = []
        # Counted per batch, after the loop: one add per series instead of one per event.
        matches: list[str] = []
        tagged: list[str] = []
        served: list[tuple[str, str]] = []
        for item, verdict in zip(checked.batch, checked.verdicts, strict=True):
            event = item.event
            if verdict.duplicate_of is not None and verdict.match is not None:
                matches.append(verdict.match)
                record = duplicate_record(
                    event,
                    verdict.duplicate_of,
                    verdict.dedupe_key,
                    verdict.match,
                    verdict.similarity,
                    processed_at,
                )
                outputs.append(Output("duplicate", event.key, record))
                continue
            prediction = next(remaining)
            model = next(served_by)
            if model is classifier:  # the drift reference is the live model's
                drift.observe(prediction.tag, prediction.confidence)
            builder = tagged_record if prediction.confidence >= model.threshold else review_record
            kind: OutputKind = "tagged" if builder is tagged_record else "review"
            if kind == "tagged":
                tagged.append(prediction.tag)
            served.append((model.version, kind))
            record = builder(
                event,
                prediction.tag,
                prediction.confidence,
                prediction.scores,
                model.version,
                verdict.dedupe_key,
                processed_at,
            )
            outputs.append(Output(kind, event.key, record))
        self.metrics.classified_many([p.tag for p in predictions], [p.confidence for p in predictions])
        self.metrics.routed([output.kind for output in outputs], matches, tagged, served)
        if checked.texts and drift is self.drift:  # after a swap, the new model's window stays published
            self.metrics.set_drift(drift.snapshot())
        return outputs


@dataclass
class CheckedBatch:
    """A batch whose duplicates are known, with the texts of the others for the model bound to it."""

    batch: Sequence[Admitted]
    verdicts: list[DedupeVerdict]
    texts: list[str]
    classifier: Classifier
    drift: DriftMonitor
    shadow: Shadow | None = None
    """The candidate shadowing the live model on this batch, if any."""
    shadow_predictions: list[Prediction] | None = None
    canary: Classifier | None = None
    """The canary model bound to this batch, if any."""
    canary_mask: list[bool] | None = None
    """Per text, whether the canary serves it."""
    canary_failure: str | None = None
    """Why the canary failed on this batch (the live model then served its texts too), if it did."""
    model_seconds: float = 0.0

    def models(self) -> list[Classifier]:
        """The model serving each text."""
        if self.canary is None or self.canary_mask is None:
            return [self.classifier] * len(self.texts)
        return [self.canary if on else self.classifier for on in self.canary_mask]

    def turn_copies(self, copies: Mapping[int, DedupeVerdict], predictions: Sequence[Prediction]) -> list[Prediction]:
        """Make the events at the positions of ``copies`` in :attr:`batch`, found new when the batch was checked,
        the copies their verdicts say (a second look found their originals); their texts leave the batch with their
        models' predictions. Returns what is left of ``predictions``, one per text left."""
        kept: list[bool] = []
        for position, verdict in enumerate(self.verdicts):
            if verdict.duplicate_of is None:
                kept.append(position not in copies)
        for position, copy in copies.items():
            self.verdicts[position] = copy

        def left(values: Sequence[_T]) -> list[_T]:
            return [value for value, keep in zip(values, kept, strict=True) if keep]

        self.texts = left(self.texts)
        if self.canary_mask is not None:
            self.canary_mask = left(self.canary_mask)
        if self.shadow_predictions is not None:
            self.shadow_predictions = left(self.shadow_predictions)
        return left(predictions)

    def classify(self) -> list[Prediction]:
        """The model's predictions for ``texts``, timed into ``model_seconds``, and the shadow's into
        ``shadow_predictions``. It touches only the models and this batch, so it may run on another thread:
        onnxruntime releases the GIL while it computes."""
        if not self.texts:
            return []
        started = time.perf_counter()
        if self.canary is None or self.canary_mask is None or not any(self.canary_mask):
            predictions = self.classifier.predict(self.texts)
        else:
            mask = self.canary_mask
            try:
                served = self.canary.predict([t for t, on in zip(self.texts, mask, strict=True) if on])
            except ModelError as error:
                # A canary is a candidate on trial: its failure (a probability that is not a number, say) must
                # not stop the fleet that serves it. The live model serves its texts, and the pipeline drops it.
                self.canary_failure, self.canary_mask = str(error), [False] * len(self.texts)
                predictions = self.classifier.predict(self.texts)
            else:
                canary = iter(served)
                live = iter(self.classifier.predict([t for t, on in zip(self.texts, mask, strict=True) if not on]))
                predictions = [next(canary) if on else next(live) for on in mask]
        self.model_seconds = time.perf_counter() - started
        if self.shadow is not None:
            self.shadow_predictions = self.shadow.predict(self.texts)
        return predictions
