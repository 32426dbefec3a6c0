"""The worker's processing steps as plain functions of their inputs: no Kafka, so every step is unit-testable.

Stage one, :meth:`Pipeline.admit`, turns raw input bytes into a validated event or a dead-letter record.
Stage two, :meth:`Pipeline.route_batch`, de-duplicates, classifies and routes a batch of validated events.
The Faust agents only move bytes between topics and these two calls.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from stream_app.classifier import Classifier, event_text
from stream_app.dedupe import DedupeVerdict, dedupe_key
from stream_app.drift import DriftMonitor, Reference
from stream_app.errors import InvalidEvent, should_dead_letter
from stream_app.lifecycle import Shadow
from stream_app.metrics import Metrics
from stream_app.schema import (
    ContentEvent,
    dead_letter_record,
    duplicate_record,
    parse_event,
    review_record,
    tagged_record,
)

OutputKind = Literal["tagged", "review", "duplicate", "deadletter"]
OUTCOMES: Final[tuple[OutputKind, ...]] = ("tagged", "review", "duplicate", "deadletter")


@dataclass(frozen=True)
class Output:
    """One record bound for one of the four output topics."""

    kind: OutputKind
    key: str | None
    record: dict[str, Any]


@dataclass(frozen=True)
class Admitted:
    """A validated event on its way to the dedupe stage, keyed by its dedupe key."""

    event: ContentEvent
    dedupe_key: str
    event_time: float
    consumed_at: float

    def to_wire(self) -> dict[str, Any]:
        """The JSON value forwarded on the internal by-title topic."""
        return {
            "event": self.event.fields,
            "dedupe_key": self.dedupe_key,
            "event_time": self.event_time,
            "consumed_at": self.consumed_at,
        }

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> Admitted:
        """Rebuild an admitted event from :meth:`to_wire` output (already validated upstream)."""
        fields = value["event"]
        return cls(
            event=ContentEvent(
                id=fields["id"], title=fields["title"], description=fields.get("description"), fields=fields
            ),
            dedupe_key=value["dedupe_key"],
            event_time=float(value["event_time"]),
            consumed_at=float(value["consumed_at"]),
        )


def utc_iso(timestamp: float) -> str:
    """Seconds since the epoch as an ISO-8601 UTC string."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")


class Pipeline:
    """Validate, de-duplicate, classify and route events, counting every outcome in ``metrics``."""

    def __init__(self, classifier: Classifier, metrics: Metrics, drift: DriftMonitor) -> None:
        self.classifier = classifier
        self.metrics = metrics
        self.drift = drift
        self.shadow: Shadow | None = None
        """A candidate model classifying the same events for comparison; nothing it says is emitted."""

    def swap(self, classifier: Classifier) -> None:
        """Serve ``classifier`` from the next batch on, with its own drift reference and model metrics.

        Batches are routed synchronously, so a swap never lands inside one: each output names the model that
        produced it.
        """
        reference = Reference.from_card(classifier.card)
        self.drift = DriftMonitor(reference, window=self.drift.window, threshold=classifier.threshold)
        self.classifier = classifier
        self.metrics.set_model(classifier.version, classifier.threshold, reference.below_threshold_share)

    def admit(
        self, raw: bytes | None, *, topic: str, partition: int, offset: int, event_time: float
    ) -> Admitted | Output:
        """Validate one input message: an :class:`Admitted` event, or the dead-letter :class:`Output` for it."""
        now = time.time()
        self.metrics.consumed()
        try:
            event = parse_event(raw)
        except Exception as error:
            if not should_dead_letter(error):
                raise
            assert isinstance(error, InvalidEvent)  # noqa: S101 - should_dead_letter admits only these
            self.metrics.dead_lettered(error.reason)
            self.metrics.emitted("deadletter")
            record = dead_letter_record(raw, error, topic, partition, offset, utc_iso(now))
            return Output("deadletter", None, record)
        return Admitted(event, dedupe_key(event.title), event_time, now)

    def route_batch(self, batch: Sequence[Admitted], check: Callable[[Admitted], DedupeVerdict]) -> list[Output]:
        """Route a batch: duplicates by ``check`` (which also records new titles), the rest by the model.

        Outputs come back in input order, one per event, so the caller can emit them and then commit.
        """
        verdicts = [check(item) for item in batch]
        fresh = [item for item, verdict in zip(batch, verdicts, strict=True) if verdict.duplicate_of is None]
        predictions = iter(self._classify(fresh))
        now = time.time()
        processed_at = utc_iso(now)
        threshold = self.classifier.threshold
        outputs: list[Output] = []
        for item, verdict in zip(batch, verdicts, strict=True):
            event = item.event
            if verdict.duplicate_of is not None and verdict.match is not None:
                self.metrics.duplicate(verdict.match)
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
            prediction = next(predictions)
            self.metrics.classified(prediction.tag, prediction.confidence)
            self.drift.observe(prediction.tag, prediction.confidence)
            builder = tagged_record if prediction.confidence >= threshold else review_record
            kind: OutputKind = "tagged" if builder is tagged_record else "review"
            if kind == "tagged":
                self.metrics.tagged(prediction.tag)
            record = builder(
                event,
                prediction.tag,
                prediction.confidence,
                prediction.scores,
                self.classifier.version,
                item.dedupe_key,
                processed_at,
            )
            outputs.append(Output(kind, event.key, record))
        for output in outputs:
            self.metrics.emitted(output.kind)
        if fresh:
            self.metrics.set_drift(self.drift.snapshot())
        return outputs

    def _classify(self, fresh: Sequence[Admitted]) -> list[Any]:
        """Classify the non-duplicates in one model call, timing the call."""
        if not fresh:
            return []
        texts = [event_text(i.event.title, i.event.description) for i in fresh]
        started = time.perf_counter()
        predictions = self.classifier.predict(texts)
        self.metrics.batch(len(fresh), time.perf_counter() - started)
        if self.shadow is not None and not self.shadow.done:
            self.shadow.observe(texts, predictions, self.classifier.threshold)
        return predictions
