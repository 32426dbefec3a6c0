"""A batch whose processing fails, by an error or a cancellation, inside publishing or inside the model's call:
the worker stops, no input offset past a record it did not deliver is committed, and a restarted worker
delivers every record."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.harness import ids_in, produce, read_outputs, run
from tests.integration.test_worker import dataset_rows, distinct_rows
from tools.replay import event_value

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 400
BATCH = "16"


async def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of the topic's partition 0 (0 if none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("where", "how", "at_call"),
    [("publish", "raise", 30), ("publish", "cancel", 30), ("model", "raise", 4), ("model", "cancel", 4)],
)
def test_a_failed_batch_is_never_committed_and_is_delivered_after_a_restart(
    start_worker: Any, where: str, how: str, at_call: int
) -> None:
    rows = distinct_rows(dataset_rows())[:EVENTS]
    worker, topics = start_worker(
        module="tests.integration.failing_app",
        TAGGER_BATCH_SIZE=BATCH,
        CONTENT_TAGGER_TEST_FAIL_IN=where,
        CONTENT_TAGGER_TEST_FAIL_WITH=how,
        CONTENT_TAGGER_TEST_FAIL_AT_CALL=str(at_call),
    )
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), 0) for r in rows]))
    deadline = time.monotonic() + 60
    while worker.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.process.poll() is not None, f"the worker did not stop after the failure:\n{worker.log_tail()}"
    assert "injected failure" in worker.log_text() or how == "cancel", worker.log_tail()

    committed = run(committed_offset(bootstrap, worker.app_id, topics.input))
    delivered = run(read_outputs(bootstrap, topics, EVENTS, timeout=5, settle=0.0))
    landed = set(ids_in(delivered["tagged"]) + ids_in(delivered["review"]) + ids_in(delivered["duplicate"]))
    undelivered = [offset for offset in range(committed) if str(rows[offset]["id"]) not in landed]
    assert not undelivered, f"committed {committed} past undelivered offsets {undelivered[:10]}"
    assert len(landed) < EVENTS, "the failure came after the last batch: the test proves nothing"

    start_worker(topics=topics, app_id=worker.app_id)
    outputs = run(read_outputs(bootstrap, topics, EVENTS, timeout=120))
    landed = set(ids_in(outputs["tagged"]) + ids_in(outputs["review"]) + ids_in(outputs["duplicate"]))
    assert {str(r["id"]) for r in rows} <= landed
    print(f"failure in {where} ({how}): stopped with {committed} of {EVENTS} committed, all delivered after")


async def set_topic_config(bootstrap: str, topic: str, name: str, value: str | None) -> None:
    """Set (or, with None, reset to the broker's default) one config of the compacted ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # AlterConfigs replaces the topic's whole set of overrides: the compaction the worker made it with is given
        # again (without it, a restarted worker refuses the topic's 7-day retention).
        configs = {"cleanup.policy": "compact", **({} if value is None else {name: value})}
        (response,) = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
        assert all(error_code == 0 for error_code, *_ in response.resources), response
    finally:
        await admin.close()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_an_output_is_never_stored_without_its_title_index_change(start_worker: Any, guarantee: str) -> None:
    # The broker refuses the index's records (too large for the topic) and takes the outputs of the same batch:
    # the worker must stop without storing those outputs, or a replay would show the titles' copies as new.
    # Exactly-once too: the index changes are stored ahead of the transaction, outside it.
    rows = distinct_rows(dataset_rows())[:60]
    copies = [{**row, "id": f"copy-{row['id']}"} for row in rows[:20]]
    env = {"TAGGER_PROCESSING_GUARANTEE": guarantee}
    worker, topics = start_worker(TAGGER_BATCH_SIZE="8", TAGGER_DEDUPE_TTL_DAYS="30", **env)
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    index_topic = f"{worker.app_id}-title-index"
    run(set_topic_config(bootstrap, index_topic, "max.message.bytes", "16"))
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), 0) for r in rows]))
    deadline = time.monotonic() + 60
    while worker.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.process.poll() is not None, f"the worker went on without its index:\n{worker.log_tail()}"
    stored = run(read_outputs(bootstrap, topics, len(rows), timeout=5, settle=0.0))
    assert stored["tagged"] == [] and stored["review"] == [], "outputs stored without their index changes"

    run(set_topic_config(bootstrap, index_topic, "max.message.bytes", None))
    start_worker(topics=topics, app_id=worker.app_id, **env)
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), 0) for r in copies]))
    outputs = run(read_outputs(bootstrap, topics, len(rows) + len(copies), timeout=120))
    landed = ids_in(outputs["tagged"]) + ids_in(outputs["review"]) + ids_in(outputs["duplicate"])
    assert sorted(landed) == sorted(str(r["id"]) for r in rows + copies)  # each in one output, once
    assert {str(r["id"]) for r in copies} <= set(ids_in(outputs["duplicate"]))  # no copy shown
