"""Each outcome of the pipeline goes to the topic its setting names."""

from __future__ import annotations

import faust

from stream_app.pipeline import OUTCOMES
from stream_app.settings import Settings
from stream_app.topology.topics import WorkerTopics


def test_each_outcome_is_declared_on_the_topic_its_setting_names() -> None:
    """The outcomes and the topic settings are paired by position: a reordered or renamed outcome would send
    tagged events to the review topic, or fail only when the first event of that outcome comes."""
    settings = Settings.from_env(
        {"TAGGER_TAGGED_TOPIC": "out-tagged", "TAGGER_REVIEW_TOPIC": "out-review",
         "TAGGER_DUPLICATES_TOPIC": "out-duplicates", "TAGGER_DEADLETTER_TOPIC": "out-deadletter"}
    )  # fmt: skip
    topics = WorkerTopics.declare(faust.App("topics-test"), settings)
    assert set(topics.outputs) == set(OUTCOMES)
    expected = {"tagged": "out-tagged", "review": "out-review", "duplicate": "out-duplicates",
                "deadletter": "out-deadletter"}  # fmt: skip
    assert {kind: topics.name(kind) for kind in OUTCOMES} == expected
    assert topics.input.get_topic_name() == settings.input_topic
