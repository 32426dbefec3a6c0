"""A title index or sign-outs topic made beforehand with a retention shorter than its records are needed stops the
worker at start with one clear line, instead of losing titles or sign-outs at the next restart (real broker)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.harness import run
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
