"""The review page of a real worker on a real broker: decisions reach the feedback and tagged topics, bad ones
publish nothing, reports on tagged items are judged against the model, and online precision moves."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app import APPROVED_TAGS
from stream_app.labels import read_labels
from stream_app.replay import event_value, read_rows
from tests.integration.harness import produce, read_outputs, run

pytestmark = [pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]


def post(port: int, form: dict[str, str], origin: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/review", data=urllib.parse.urlencode(form).encode(), method="POST"
    )
    if origin:
        request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test server
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def waiting_ids(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/review", timeout=10) as response:  # noqa: S310
        page = response.read().decode()
    return [part.split('"')[0] for part in page.split('name="id" value="')[1:]]


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer._client.cluster.partitions_for_topic(topic) or ()]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            found: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout
            while len(found) < expected and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    found += [json.loads(r.value) for r in records]
            return found
        finally:
            await consumer.stop()

    return list(run(read()))


def test_decisions_on_the_review_page_reach_feedback_tagged_metrics_and_labels(
    start_worker: Any, new_topic: Any, tmp_path: Path
) -> None:
    feedback_topic = new_topic("feedback")
    labels_path = tmp_path / "labels.jsonl"
    worker, topics = start_worker(
        TAGGER_REVIEW_THRESHOLD="0.9", TAGGER_FEEDBACK_TOPIC=feedback_topic, TAGGER_LABELS_PATH=str(labels_path)
    )
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    rows = read_rows(ROOT / "data" / "dataset.csv")[:80]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in rows]))
    outputs = run(read_outputs(bootstrap, topics, len(rows), 120, settle=1.0))
    assert outputs["review"] and outputs["tagged"], "the threshold should split the rows between the two"
    suggested = {str(r["id"]): r["suggested_tag"] for r in outputs["review"]}
    model_tagged = outputs["tagged"][0]

    deadline = time.monotonic() + 30
    while len(waiting_ids(worker.port)) < min(len(suggested), 50) and time.monotonic() < deadline:
        time.sleep(0.5)
    first, second, *_ = waiting_ids(worker.port)
    other = next(t for t in APPROVED_TAGS if t != suggested[second])
    wrong = next(t for t in APPROVED_TAGS if t != model_tagged["tag"])

    assert post(worker.port, {"id": first, "tag": "robotics", "reviewer": "ann"})[0] == 400
    assert post(worker.port, {"id": first, "tag": suggested[first], "reviewer": "ann"},
                origin="http://evil.example")[0] == 403  # fmt: skip
    assert post(worker.port, {"id": first, "tag": suggested[first], "reviewer": "ann"})[0] == 200
    assert post(worker.port, {"id": second, "tag": other, "reviewer": "bob"})[0] == 200
    report = {"id": str(model_tagged["id"]), "tag": wrong, "reviewer": "user", "action": "report"}
    assert post(worker.port, report)[0] == 200
    assert first not in waiting_ids(worker.port) and second not in waiting_ids(worker.port)

    feedback = read_topic(bootstrap, feedback_topic, 3)
    assert [(f["id"], f["verdict"]) for f in feedback] == [
        (first, "accepted"), (second, "corrected"), (str(model_tagged["id"]), "reported")
    ]  # nothing from the refused forms
    human = [r for r in read_topic(bootstrap, topics.tagged, len(outputs["tagged"]) + 3) if r["tagged_by"] == "human"]
    assert {(r["id"], r["tag"]) for r in human} == {
        (first, suggested[first]), (second, other), (str(model_tagged["id"]), wrong)
    }

    def judged() -> tuple[float, float]:
        samples = [line.split() for line in worker.metrics_text().splitlines() if not line.startswith("#")]
        total = sum(float(v) for name, v in samples if name.startswith("content_tagger_online_judged_total{"))
        right = sum(float(v) for name, v in samples if name.startswith("content_tagger_online_correct_total{"))
        return total, right

    deadline = time.monotonic() + 20
    while judged()[0] < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert judged() == (3.0, 1.0)  # accepted is right; corrected and reported are wrong
    labels, skipped = read_labels(labels_path)
    assert skipped == 0
    assert {label["id"]: label["tag"] for label in labels} == {
        first: suggested[first], second: other, str(model_tagged["id"]): wrong
    }
    assert all(label["title"] for label in labels)
