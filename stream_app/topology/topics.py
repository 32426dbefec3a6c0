"""The topics one worker reads and writes, declared once each on the Faust app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faust.types import AppT, TopicT

from stream_app.pipeline import OUTCOMES
from stream_app.review.sign_outs import LONGEST_SESSION_SECONDS
from stream_app.settings import Settings
from stream_app.topology.retention import KEPT_FOR_EVER


@dataclass(frozen=True)
class WorkerTopics:
    """The input topic, the four output topics by outcome, the feedback topic, the title index's topic and the
    reviewers' sign-outs topic."""

    input: TopicT
    outputs: dict[str, TopicT]
    feedback: TopicT
    index: TopicT
    sign_outs: TopicT

    @classmethod
    def declare(cls, app: AppT, settings: Settings) -> WorkerTopics:
        """Declare every topic on ``app`` (raw keys and values: the worker encodes its records itself)."""

        def topic(name: str, **options: Any) -> TopicT:
            options.setdefault("partitions", settings.partitions)
            return app.topic(name, key_serializer="raw", value_serializer="raw", **options)

        names = dict(
            zip(
                OUTCOMES,
                (settings.tagged_topic, settings.review_topic, settings.duplicates_topic, settings.deadletter_topic),
                strict=True,
            )
        )
        return cls(
            # internal=True: Faust creates the topic with ``settings.partitions`` partitions when it is missing.
            input=topic(settings.input_topic, internal=True),
            outputs={
                kind: topic(name, config=dict(KEPT_FOR_EVER)) if kind == "review" else topic(name)
                for kind, name in names.items()
            },
            feedback=topic(settings.feedback_topic, config=dict(KEPT_FOR_EVER)),
            # Read whole by every worker: one partition keeps every title's changes in one order.
            index=topic(settings.index_topic, partitions=1, compacting=True, internal=True),
            # Each sign-out is needed until its session would have expired: kept as long as the longest can last.
            sign_outs=topic(
                settings.sign_outs_topic,
                partitions=1,
                compacting=True,
                deleting=True,
                retention=LONGEST_SESSION_SECONDS,
                internal=True,
            ),
        )

    def name(self, kind: str) -> str:
        """The topic name of the output ``kind``."""
        return str(self.outputs[kind].get_topic_name())

    async def create_missing(self) -> None:
        """Create the output, feedback, index and sign-outs topics that are missing, so consumers can subscribe
        before the first event."""
        for topic in (*self.outputs.values(), self.feedback, self.index, self.sign_outs):
            await topic.maybe_declare()
