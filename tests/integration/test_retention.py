"""A title index, sign-outs, review or feedback topic made beforehand with a retention shorter than its records are
needed stops the worker at start with one clear line, instead of losing titles, sign-outs, items waiting for review
or decisions at the next restart; the review and feedback topics the worker makes keep every record (real
broker)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.harness import Topics, run
from tests.integration.test_hostile_topics import create_topics

pytestmark = [pytest.mark.kafka]

WEEK_MS = "604800000"
"""What a broker gives a topic it creates on first use: cleanup.policy=delete and seven days."""


@pytest.mark.parametrize("kept", ["title-index", "sign-outs"])
def test_a_kept_topic_made_with_a_short_retention_stops_the_start_with_a_clear_error(
    start_worker: Any, kafka_bootstrap: str, kept: str
) -> None:
    app_id = f"tagger-test-{uuid.uuid4().hex[:8]}"
    run(create_topics(kafka_bootstrap, {f"{app_id}-{kept}": {"cleanup.policy": "delete", "retention.ms": WEEK_MS}}))
    with pytest.raises(RuntimeError, match="worker exited") as raised:
        start_worker(app_id=app_id)
    said = str(raised.value)
    assert f"{app_id}-{kept} deletes records after 7 days" in said, said
    assert "retention.ms=604800000" in said and "cleanup.policy=compact" in said, said


def test_a_kept_topic_made_compacted_by_hand_is_taken(start_worker: Any, kafka_bootstrap: str) -> None:
    app_id = f"tagger-test-{uuid.uuid4().hex[:8]}"
    made = {"cleanup.policy": "compact", "retention.ms": WEEK_MS}  # compaction keeps each key's last record
    run(create_topics(kafka_bootstrap, {f"{app_id}-title-index": made, f"{app_id}-sign-outs": made}))
    worker, _ = start_worker(app_id=app_id)
    assert worker.page("/ready")[0] == 200


async def topic_configs(bootstrap: str, name: str) -> dict[str, str]:
    """The broker's configuration of the topic ``name``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    ((error_code, _, _, _, entries),) = response.resources
    assert not error_code, error_code
    return {entry[0]: entry[1] for entry in entries}


async def set_topic_configs(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    """Give the topic ``name`` the configuration ``configs`` (the others back to the broker's defaults)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)])
    finally:
        await admin.close()


def topics_without_review(new_topic: Callable[..., str]) -> Topics:
    """Fresh topics for a worker, but for the review topic, which is only named: the worker makes it."""
    review = f"review-{uuid.uuid4().hex[:10]}"
    names = (new_topic(kind) for kind in ("content", "tagged", "duplicates", "deadletter"))
    content, tagged, duplicates, deadletter = names
    return Topics(input=content, tagged=tagged, review=review, duplicate=duplicates, deadletter=deadletter)


def test_the_worker_makes_review_and_feedback_topics_that_keep_every_record(
    start_worker: Any, new_topic: Any, kafka_bootstrap: str
) -> None:
    feedback = f"feedback-{uuid.uuid4().hex[:10]}"
    worker, topics = start_worker(topics=topics_without_review(new_topic), TAGGER_FEEDBACK_TOPIC=feedback)

    assert worker.page("/ready")[0] == 200
    for name in (topics.review, feedback):
        configs = run(topic_configs(kafka_bootstrap, name))
        assert (configs["cleanup.policy"], configs["retention.ms"]) == ("delete", "-1"), (name, configs)


@pytest.mark.parametrize("kept", ["review", "feedback"])
def test_a_review_or_feedback_topic_that_deletes_records_stops_the_start_until_it_keeps_them(
    start_worker: Any, new_topic: Any, kafka_bootstrap: str, kept: str
) -> None:
    topics = topics_without_review(new_topic)
    feedback = f"feedback-{uuid.uuid4().hex[:10]}"
    name = topics.review if kept == "review" else feedback
    # As an older worker made it, or a broker that creates topics on first use: Kafka's defaults.
    run(create_topics(kafka_bootstrap, {name: {"cleanup.policy": "delete", "retention.ms": WEEK_MS}}))
    with pytest.raises(RuntimeError, match="worker exited") as raised:
        start_worker(topics=topics, TAGGER_FEEDBACK_TOPIC=feedback)
    said = str(raised.value)
    assert f"{name} deletes records after 7 days (cleanup.policy=delete, retention.ms=604800000)" in said, said
    assert "needed for ever" in said and f"--entity-name {name} --add-config retention.ms=-1" in said, said

    run(set_topic_configs(kafka_bootstrap, name, {"retention.ms": "-1"}))  # the fix the error names
    worker, _ = start_worker(topics=topics, TAGGER_FEEDBACK_TOPIC=feedback)
    assert worker.page("/ready")[0] == 200
