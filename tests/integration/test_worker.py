"""The worker on a real broker: every message ends in exactly one output topic, copies are dropped, distinct
items are kept, malformed messages are dead-lettered, and dedupe state survives a restart."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stream_app.schema import load_schema
from tests.integration.harness import ids_in, produce, read_outputs, run
from tools.corpus import distinct_rows, hard_negatives, planted_near_duplicates
from tools.replay import event_value, read_rows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

# Each way a message can be malformed, with the reason the dead letter must carry.
MALFORMED: list[tuple[bytes, str]] = [
    (b"", "not_json"),
    (b"{not json", "not_json"),
    (b'["an", "array"]', "not_object"),
    (b'{"id": 1}', "missing_field"),
    (b'{"title": "no id"}', "missing_field"),
    (b'{"id": 3, "title": 42}', "wrong_type"),
    (b'{"id": true, "title": "boolean id"}', "wrong_type"),
    (b'{"id": 4, "title": "NaN inside", "score": NaN}', "invalid_value"),
    (b'{"id": "\xff\xfe", "title": "bad bytes"}', "not_utf8"),
    (b'{"id": 5, "title": "' + b"x" * 1001 + b'"}', "too_large"),
    (b'{"id": 6, "title": "long description", "description": "' + b"d" * 20001 + b'"}', "too_large"),
]


def dataset_rows() -> list[dict[str, Any]]:
    return read_rows(ROOT / "data" / "dataset.csv")


def schema_check(outputs: dict[str, list[dict[str, Any]]]) -> None:
    names = {
        "tagged": "content-tagged",
        "review": "content-review",
        "duplicate": "content-duplicates",
        "deadletter": "content-deadletter",
    }
    for kind, records in outputs.items():
        validator = jsonschema.Draft202012Validator(load_schema(names[kind]))
        for record in records:
            validator.validate(record)


def test_every_message_lands_in_exactly_one_topic_and_copies_are_dropped(start_worker: Any) -> None:
    rng = random.Random(11)
    rows = distinct_rows(dataset_rows())
    planted = planted_near_duplicates(rows, rng)
    negatives = hard_negatives(rows, rng)
    worker, topics = start_worker()
    originals = [(str(r["id"]).encode(), event_value(r), None) for r in rows]
    copies = [(str(c["id"]).encode(), event_value(c), None) for _, c, _ in planted]
    distinct = [(str(n["id"]).encode(), event_value(n), None) for n in negatives]
    malformed = [(None, value, None) for value, _ in MALFORMED]
    # Originals first: a copy or a hard negative is judged against titles already seen.
    messages = originals + malformed[:5] + copies + distinct + malformed[5:]
    produced = run(produce(worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"], topics.input, messages))
    outputs = run(read_outputs(worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"], topics, len(messages), 180))

    # Accounting: each event id in exactly one of tagged/review/duplicate, each malformed one dead-lettered once.
    landed = Counter(ids_in(outputs["tagged"]) + ids_in(outputs["review"]) + ids_in(outputs["duplicate"]))
    expected_ids = Counter(key.decode() for key, _, _ in messages if key is not None)
    missing, repeated = expected_ids - landed, landed - expected_ids
    assert landed == expected_ids, f"missing {sorted(missing)[:20]}, repeated {sorted(repeated)[:20]}"
    letters = {(d["partition"], d["offset"]): d for d in outputs["deadletter"]}
    assert len(letters) == len(outputs["deadletter"]) == len(MALFORMED)
    positions = [(p.partition, p.offset) for p in produced]
    for (value, reason), (key, sent, _), position in zip(
        MALFORMED, malformed, [positions[messages.index(m)] for m in malformed], strict=True
    ):
        assert sent == value and key is None
        assert letters[position]["error"] == reason, letters[position]
    assert sum(len(v) for v in outputs.values()) == len(messages)

    duplicate_ids = set(ids_in(outputs["duplicate"]))
    exact_copies = {str(c["id"]) for _, c, kind in planted if not kind.startswith("typo")}
    near_copies = {str(c["id"]) for _, c, kind in planted if kind.startswith("typo")}
    assert exact_copies <= duplicate_ids, sorted(exact_copies - duplicate_ids)
    # Typo copies are caught by similarity, not identity: the product target is recall >= 0.95.
    assert len(near_copies & duplicate_ids) >= 0.95 * len(near_copies), sorted(near_copies - duplicate_ids)
    assert not {str(n["id"]) for n in negatives} & duplicate_ids
    assert not {str(r["id"]) for r in rows} & duplicate_ids
    by_copy = {str(d["id"]): d for d in outputs["duplicate"]}
    for original, copy, _ in planted:
        if str(copy["id"]) in by_copy:
            assert by_copy[str(copy["id"])]["duplicate_of"] == str(original["id"])
    schema_check(outputs)
    assert {r["tag"] for r in outputs["tagged"]} <= {"natural-language-processing", "computer-vision", "mlops", "other"}


def test_the_worker_reads_no_leader_election_topic(start_worker: Any) -> None:
    """Faust's leader-election topic is never written to: its partition would sit in the consumer's fetches with
    nothing in it, and hold the input's (decision 0039)."""
    worker, topics = start_worker()

    async def names() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"])
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    existing = run(names())
    made = {name for name in existing if name.startswith(f"{worker.app_id}-")}
    assert topics.input in existing
    assert not {name for name in made if "leader" in name}, sorted(made)


def test_titles_seen_before_a_restart_are_still_dropped_after_it(start_worker: Any) -> None:
    rows = distinct_rows(dataset_rows())[:120]
    worker, topics = start_worker()
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in rows]))
    first = run(read_outputs(bootstrap, topics, len(rows), 120, settle=1.0))
    assert sum(len(v) for v in first.values()) == len(rows)
    worker.stop()

    again, _ = start_worker(topics=topics, app_id=worker.app_id)  # type: ignore[attr-defined]
    copies = [dict(r, id=f"again-{r['id']}") for r in rows]
    run(produce(bootstrap, topics.input, [(c["id"].encode(), event_value(c), None) for c in copies]))
    outputs = run(read_outputs(bootstrap, topics, 2 * len(rows), 120))
    dropped = {d["id"]: d for d in outputs["duplicate"]}
    kept = sorted({c["id"] for c in copies} - set(dropped))
    assert sorted(dropped) == sorted(c["id"] for c in copies), f"not dropped after the restart: {kept}"
    assert all(dropped[c["id"]]["duplicate_of"] == str(r["id"]) for c, r in zip(copies, rows, strict=True))
    assert sum(len(v) for v in outputs.values()) == 2 * len(rows)


def test_copies_on_different_input_partitions_meet_and_one_survives(start_worker: Any) -> None:
    rows = distinct_rows(dataset_rows())[:40]
    worker, topics = start_worker(partitions=4)
    messages = []
    for row in rows:
        for partition in range(4):
            copy = dict(row, id=f"{row['id']}-p{partition}")
            messages.append((copy["id"].encode(), event_value(copy), partition))
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    run(produce(bootstrap, topics.input, messages))
    outputs = run(read_outputs(bootstrap, topics, len(messages), 120))
    survivors = Counter(i.rsplit("-p", 1)[0] for i in ids_in(outputs["tagged"]) + ids_in(outputs["review"]))
    assert survivors == Counter({str(r["id"]): 1 for r in rows}), worker.log_tail()
    assert len(outputs["duplicate"]) == 3 * len(rows)
    assert all(json.dumps(d["match"]) == '"exact"' for d in outputs["duplicate"])
