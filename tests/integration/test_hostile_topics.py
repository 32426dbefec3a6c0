"""Hostile records on every topic the worker reads, through a real worker on a real broker: over 10,000 generated
records on the review, tagged, feedback and title index topics (tombstones, non-JSON, other JSON types, missing,
wrong and extra fields, huge values, garbage and future-dated index entries) and input events with Kafka
timestamps of 0, the year 2106 and far beyond. Every record ends in an output topic or the skip counter, the
worker never restarts, and no title it holds is lost to an event dated far ahead.

The broker itself refuses a negative CreateTime (-1 means "none" and is replaced by the producer's clock), so
timestamps below 0 cannot reach the worker."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_app.title_index.index import TitleIndex
from stream_app.topology.retention import KEPT_FOR_EVER
from tests.integration.harness import Topics, read_outputs, run
from tests.integration.test_worker import dataset_rows, distinct_rows
from tools.replay import event_value

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PER_TOPIC = 2_600
SEED = 23
NO_TIMESTAMP_LIMIT = {"message.timestamp.after.max.ms": str(2**63 - 1)}
"""Kafka 4 refuses CreateTimes more than an hour ahead by default; the test's input topic takes any."""
FAR_AHEAD_MS = (0, 1, 2**32 * 1000, 2**32 * 1000 + 1, 7_258_118_400_000, 253_402_300_799_000)
"""Kafka timestamps of input events: the epoch, 2106-02-07 (past 4-byte seconds), 2200-01-01, 9999-12-31."""


async def create_topics(bootstrap: str, names: dict[str, dict[str, str]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(name, num_partitions=1, replication_factor=1, topic_configs=configs)
                for name, configs in names.items()
            ]
        )
    finally:
        await admin.close()


def hostile_json(rng: random.Random, template: dict[str, Any]) -> bytes | None:
    """A record no follower may accept: a tombstone, not JSON, not an object, or an object whose ``id`` is
    missing or of a wrong type, with extra and huge fields besides."""
    kind = rng.randrange(6)
    if kind == 0:
        return None
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    if kind == 2:
        return json.dumps(rng.choice([[1, 2], "text", 3.5, None, True])).encode()
    record = dict(template)
    if kind == 3:
        record.pop("id")
    else:
        record["id"] = rng.choice([None, 7.5, True, ["x"], {"id": "x"}, ""])
    record[f"extra_{rng.randrange(1000)}"] = "x" * rng.choice([1, 10, 200_000 if kind == 5 else 100])
    return json.dumps(record).encode()


def hostile_index_record(rng: random.Random, future: list[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None]:
    """A title index record no worker may apply: an empty key or one of another length, garbage or JSON values, or an
    entry dated far past any worker's clock."""
    kind = rng.randrange(5)
    key = bytes(rng.randrange(256) for _ in range(8))
    if kind == 0:
        return b"", b"\x80" + bytes(40)  # an empty key: the broker refuses a record with none on a compacted topic
    if kind == 1:
        return bytes(rng.randrange(1, 8)), b"\x80" + bytes(40)
    if kind == 2:
        return key, bytes([rng.randrange(2, 0x80)]) + bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
    if kind == 3:
        return key, b'{"title": "x"}'
    return rng.choice(future)


def future_entries(count: int) -> list[tuple[bytes, bytes]]:
    """Valid entries as a worker whose clock is a century ahead would write them."""
    ahead = time.time() + 100 * 365 * 86400.0
    index = TitleIndex(30 * 86400.0, 300.0, clock=lambda: ahead)
    index.finish_loading()
    made = []
    for n in range(count):
        _, changes = index.check(f"future-{n}", f"A title from the next century number {n}", None, ahead)
        made += [(change.key, change.value) for change in changes if change.value is not None]
    return made


async def send(
    bootstrap: str, records: list[tuple[str, bytes | None, bytes | None, int | None]], compression: str | None = None
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2**20, compression_type=compression
    )
    await producer.start()
    try:
        futures = [await producer.send(t, v, key=k, timestamp_ms=ts) for t, k, v, ts in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def worker_outputs(bootstrap: str, topics: Topics, wanted: set[str], timeout: float) -> dict[str, Counter[str]]:
    """The ids of ``wanted`` found in each output topic, read from the start until each was found once or
    ``timeout`` passed. The review and tagged topics also hold the hostile records sent there: those are passed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    kinds = topics.outputs()
    found: dict[str, Counter[str]] = {kind: Counter() for kind in kinds}
    try:
        partitions = [TopicPartition(name, 0) for name in kinds.values()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        kind_of = {name: kind for kind, name in kinds.items()}

        def take(fetched: dict[TopicPartition, list[Any]]) -> None:
            for tp, records in fetched.items():
                for record in records:
                    try:
                        identity = str(json.loads(record.value)["id"])
                    except (TypeError, ValueError, KeyError):
                        continue
                    if identity in wanted:
                        found[kind_of[tp.topic]][identity] += 1

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not wanted <= {i for c in found.values() for i in c}:
            take(await consumer.getmany(timeout_ms=300))
        await asyncio.sleep(2.0)  # then a while for repeats
        take(await consumer.getmany(timeout_ms=300))
    finally:
        await consumer.stop()
    return found


def test_every_topic_survives_hostile_records_and_far_future_times(start_worker: Any, kafka_bootstrap: str) -> None:
    rng = random.Random(SEED)
    suffix = uuid.uuid4().hex[:8]
    names = {kind: f"hostile-{kind}-{suffix}" for kind in ("content", "tagged", "review", "duplicates", "deadletter")}
    feedback = f"hostile-feedback-{suffix}"
    run(
        create_topics(
            kafka_bootstrap,
            {
                **{n: {} for n in names.values()},
                names["review"]: dict(KEPT_FOR_EVER),
                feedback: dict(KEPT_FOR_EVER),
                names["content"]: NO_TIMESTAMP_LIMIT,
            },
        )
    )
    topics = Topics(names["content"], names["tagged"], names["review"], names["duplicates"], names["deadletter"])
    worker, _ = start_worker(topics=topics, TAGGER_FEEDBACK_TOPIC=feedback)

    rows = distinct_rows(dataset_rows())
    firsts, laters = rows[:200], rows[200 : 200 + 10 * len(FAR_AHEAD_MS)]
    run(send(kafka_bootstrap, [(topics.input, str(r["id"]).encode(), event_value(r), None) for r in firsts]))
    assert sum(
        len(v) for v in run(read_outputs(kafka_bootstrap, topics, len(firsts), 120, settle=0.5)).values()
    ) == len(firsts)

    template = {
        "id": "x",
        "title": "t",
        "suggested_tag": "mlops",
        "model_version": "v",
        "dedupe_key": "k",
        "confidence": 0.5,
        "tagged_by": "model",
        "verdict": "accepted",
        "tag": "mlops",
        "decided_at": "now",
    }
    hostile = [
        (name, b"hostile", hostile_json(rng, template), None)
        for name in (topics.review, topics.tagged, feedback)
        for _ in range(PER_TOPIC)
    ]
    index_topic = f"{worker.app_id}-title-index"
    future = future_entries(50)
    hostile += [(index_topic, *hostile_index_record(rng, future), None) for _ in range(PER_TOPIC)]
    sign_outs_topic = f"{worker.app_id}-sign-outs"
    hostile += [
        (sign_outs_topic, rng.randbytes(rng.randrange(40)), rng.choice([None, rng.randbytes(rng.randrange(20))]), None)
        for _ in range(PER_TOPIC)
    ]
    rng.shuffle(hostile)
    dated = [
        (topics.input, str(r["id"]).encode(), event_value(r), FAR_AHEAD_MS[n % len(FAR_AHEAD_MS)])
        for n, r in enumerate(laters)
    ]
    copies = [
        (topics.input, f"again-{r['id']}".encode(), event_value({**r, "id": f"again-{r['id']}"}), None) for r in firsts
    ]
    run(send(kafka_bootstrap, hostile + dated))
    run(send(kafka_bootstrap, copies))  # after the events dated far ahead: their titles must still be held

    sent_ids = [str(r["id"]) for r in firsts + laters] + [f"again-{r['id']}" for r in firsts]
    outputs = run(worker_outputs(kafka_bootstrap, topics, set(sent_ids), 180))
    landed = outputs["tagged"] + outputs["review"] + outputs["duplicate"]
    assert sorted(landed.elements()) == sorted(sent_ids), f"missing {sorted(set(sent_ids) - set(landed))[:10]}"
    dropped = set(outputs["duplicate"])
    lost = [r["id"] for r in firsts if f"again-{r['id']}" not in dropped]
    assert not lost, f"titles lost after events dated far ahead: {lost[:10]}"

    per_role = Counter(dict.fromkeys(("review", "tagged", "feedback", "title_index", "sign_outs"), PER_TOPIC))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        skipped = worker.by_label("content_tagger_skipped_records_total", "topic")
        if all(skipped.get(role, 0.0) >= count for role, count in per_role.items()):
            break
        time.sleep(1.0)
    assert {role: skipped.get(role) for role in per_role} == dict(per_role), worker.log_tail()
    assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    assert worker.log_text().count("[^Worker]: Ready") == 1, "the worker restarted"
    print(
        f"hostile topics: {len(hostile)} hostile records and {len(dated)} events dated up to 9999 sent; "
        f"skipped {dict(skipped)}; {len(landed)} events in output topics of {len(sent_ids)} sent; worker restarts 0; "
        f"titles lost to far-future events {len(lost)}"
    )


def test_records_compressed_with_every_codec_are_read_on_every_topic(start_worker: Any, kafka_bootstrap: str) -> None:
    """Input batches compressed with each codec a producer may choose, and topics whose broker recompresses what
    the worker writes (lz4 on the outputs the review follower reads, zstd on the title index): a batch the worker
    could not decompress would stop every worker given its partition, at every start."""
    suffix = uuid.uuid4().hex[:8]
    names = {kind: f"codec-{kind}-{suffix}" for kind in ("content", "tagged", "review", "duplicates", "deadletter")}
    app_id = f"tagger-codec-{suffix}"
    lz4 = {"compression.type": "lz4"}
    configs = {names["content"]: {}, names["tagged"]: lz4, names["review"]: {**lz4, **KEPT_FOR_EVER},
               names["duplicates"]: {}, names["deadletter"]: {},
               f"{app_id}-title-index": {"cleanup.policy": "compact", "compression.type": "zstd"}}  # fmt: skip
    run(create_topics(kafka_bootstrap, configs))
    topics = Topics(names["content"], names["tagged"], names["review"], names["duplicates"], names["deadletter"])
    worker, _ = start_worker(topics=topics, app_id=app_id)

    rows = distinct_rows(dataset_rows())[:80]
    codecs = ("gzip", "snappy", "lz4", "zstd")
    for number, codec in enumerate(codecs):
        chunk = rows[number * 20 : (number + 1) * 20]
        run(send(kafka_bootstrap, [(topics.input, str(r["id"]).encode(), event_value(r), None) for r in chunk], codec))
    copies = [(topics.input, f"again-{r['id']}".encode(), event_value({**r, "id": f"again-{r['id']}"}), None)
              for r in rows[:20]]  # fmt: skip
    run(send(kafka_bootstrap, copies, "zstd"))

    sent_ids = [str(r["id"]) for r in rows] + [f"again-{r['id']}" for r in rows[:20]]
    outputs = run(worker_outputs(kafka_bootstrap, topics, set(sent_ids), 120))
    landed = outputs["tagged"] + outputs["review"] + outputs["duplicate"]
    assert sorted(landed.elements()) == sorted(sent_ids), f"missing {sorted(set(sent_ids) - set(landed))[:10]}"
    assert set(outputs["duplicate"]) == {f"again-{r['id']}" for r in rows[:20]}
    assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    assert worker.log_text().count("[^Worker]: Ready") == 1, "the worker restarted"
