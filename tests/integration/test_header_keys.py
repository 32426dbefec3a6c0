"""Records whose header keys are not UTF-8, on the input topic and on every topic the worker reads back, are read
like any other: the worker stays up, and each input event still reaches exactly one output (real broker)."""

from __future__ import annotations

import json
import time
from typing import Any

import aiokafka.consumer.fetcher as fetcher_module
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record import default_records

from stream_app.faust_patches import header_keys
from tests.integration.harness import read_outputs, run
from tests.unit.faust_patches.test_header_keys import NotUtf8

pytestmark = [pytest.mark.kafka]


async def send_with_headers(bootstrap: str, topic: str, records: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    """Send each record in a batch of its own, written by aiokafka's Python builder (which writes a
    :class:`NotUtf8` key as bytes that are not UTF-8; the broker keeps header keys as they come)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value, headers in records:
            batch = producer.create_batch()
            batch._builder = default_records._DefaultRecordBatchBuilderPy(
                2, 0, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=0, batch_size=1 << 20
            )
            assert batch.append(timestamp=None, key=b"k", value=value, headers=headers) is not None
            batch.close()
            await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()


def test_header_keys_that_are_not_utf8_stop_no_worker_and_lose_no_event(
    start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test reads the tagged topic back too: its own consumer needs the worker's fix.
    monkeypatch.setattr(fetcher_module, "MemoryRecords", header_keys.TolerantMemoryRecords)
    worker, topics = start_worker()
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    bad = [(NotUtf8("trace"), b"v")]
    tagged = {"id": "h1", "title": "t", "tag": "mlops", "tagged_by": "human", "model_version": "v"}
    run(send_with_headers(bootstrap, topics.tagged, [(json.dumps(tagged).encode(), bad)]))
    run(send_with_headers(bootstrap, f"{worker.app_id}-title-index", [(b"not an entry", bad)]))
    events = [
        {"id": f"e{n}", "title": f"Distinct project number {n} about transformers", "description": "Text."}
        for n in range(3)
    ]
    run(send_with_headers(bootstrap, topics.input, [(json.dumps(e).encode(), bad if n == 1 else []) for n, e in
                                                    enumerate(events)]))  # fmt: skip
    outputs = run(read_outputs(bootstrap, topics, 3, timeout=60, settle=1.0))
    ids = sorted(str(r["id"]) for kind in ("tagged", "review", "duplicate", "deadletter") for r in outputs[kind]
                 if str(r.get("id", "")).startswith("e"))  # fmt: skip
    assert ids == ["e0", "e1", "e2"], outputs
    assert worker.process.poll() is None, worker.log_tail()
    # Every topic is read again from its start by a restarted worker: it starts and gets ready.
    worker.stop()
    again, _ = start_worker(topics=topics, app_id=worker.app_id)
    time.sleep(2.0)
    assert again.process.poll() is None and again.page("/ready")[0] == 200, again.log_tail()
