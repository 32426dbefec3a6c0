"""Scale-out on a real broker: two workers in one consumer group share a 4-partition input topic, copies of a
title planted on different partitions still meet and are dropped (each worker holds the whole title index), and
when one worker is killed (-9) mid-stream the other takes over its partitions, losing nothing; a worker that joins
mid-stream takes partitions over, exactly once, with nothing lost, repeated or shown twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.integration.harness import OUTPUT_KINDS, Topics, WorkerProcess, run
from tests.integration.test_worker import dataset_rows, distinct_rows
from tools.replay import event_value

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4
SESSION_TIMEOUT_SECONDS = "10"
"""Faust reads BROKER_SESSION_TIMEOUT from the environment: the group notices the killed member within 10 s
instead of Faust's default 60 s."""


LOST_DIAGNOSTICS = ("content_tagger_consumer_lag", "content_tagger_events_consumed_total", "content_tagger_events_out")


def planted_stream(rows: list[dict[str, Any]]) -> list[tuple[bytes, bytes, int]]:
    """Each row on one partition, then a copy of it on each other partition: ``(key, value, partition)``.

    All originals come first and the copies after, spread over the stream, so copies produced after the kill
    must be matched against titles stored by either worker.
    """
    originals = [(str(r["id"]), r, index % PARTITIONS) for index, r in enumerate(rows)]
    copies = []
    for shift in range(1, PARTITIONS):
        for key, row, partition in originals:
            copy = dict(row, id=f"{key}-copy{shift}")
            copies.append((copy["id"], copy, (partition + shift) % PARTITIONS))
    return [(key.encode(), event_value(row), partition) for key, row, partition in originals + copies]


async def stream_and_act(
    bootstrap: str,
    topics: Topics,
    messages: list[tuple[bytes, bytes, int]],
    act: Callable[[], Awaitable[float]],
    timeout: float,
    pause: float = 0.4,
    held_back: int = 0,
) -> tuple[dict[str, list[dict[str, Any]]], int, float]:
    """Produce ``messages`` in chunks of 50, ``pause`` seconds apart, while reading the outputs; await ``act`` once
    a third of the outputs arrived (while input still flows), and send the last ``held_back`` messages only after
    it. Returns the outputs, how many had arrived then, and what ``act`` returned."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    # read_committed: records of transactions the killed worker left open (aborted) are not outputs.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await producer.start()
    await consumer.start()
    kind_of = {name: kind for kind, name in topics.outputs().items()}
    partitions = [TopicPartition(name, p) for name in kind_of for p in range(PARTITIONS)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    found: dict[str, list[dict[str, Any]]] = {kind: [] for kind in OUTPUT_KINDS}

    acted_event = asyncio.Event()

    async def send_paced() -> None:
        for start in range(0, len(messages), 50):
            if start >= len(messages) - held_back:
                await acted_event.wait()
            for key, value, partition in messages[start : start + 50]:
                await producer.send(topics.input, value, key=key, partition=partition)
            await asyncio.sleep(pause)  # 0.4: about 10 s of stream, and the third comes after commits (every 1 s)
        await producer.flush()

    sending = asyncio.create_task(send_paced())
    acted_at, acted, settle_until, deadline = -1, 0.0, None, time.monotonic() + timeout
    waiting = {key.decode() for key, _, _ in messages}
    try:
        while time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                batch = [json.loads(r.value) for r in records]
                found[kind_of[tp.topic]] += batch
                waiting.difference_update(str(record.get("id")) for record in batch)
            total = sum(len(v) for v in found.values())
            if acted_at < 0 and total >= len(messages) // 3:
                assert not sending.done(), "the stream ended before the third: pace it slower"
                acted = await act()
                acted_at = total
                acted_event.set()
            # Every id landed (not just as many records: repeats would count), then a while for late repeats.
            if not waiting and sending.done():
                settle_until = settle_until or time.monotonic() + 5.0
                if time.monotonic() >= settle_until:
                    break
        await sending
    finally:
        sending.cancel()
        await producer.stop()
        await consumer.stop()
    return found, acted_at, acted


def sent_and_landed(
    messages: list[tuple[bytes, bytes, int]], outputs: dict[str, list[dict[str, Any]]]
) -> tuple[Counter[str], Counter[str]]:
    """Each id sent, and each id that reached tagged, review or duplicates, with how often."""
    sent = Counter(key.decode() for key, _, _ in messages)
    landed = Counter(str(r["id"]) for kind in ("tagged", "review", "duplicate") for r in outputs[kind])
    return sent, landed


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions (0 for a partition never committed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)])
    finally:
        await consumer.stop()


def consumed(worker: WorkerProcess) -> float:
    """The worker's ``content_tagger_events_consumed_total``."""
    return worker.value("content_tagger_events_consumed_total")


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_two_workers_share_partitions_drop_copies_across_them_and_survive_losing_one(
    start_worker: Any, guarantee: str
) -> None:
    rows = distinct_rows(dataset_rows())[:300]
    messages = planted_stream(rows)
    env = {"BROKER_SESSION_TIMEOUT": SESSION_TIMEOUT_SECONDS, "TAGGER_PROCESSING_GUARANTEE": guarantee}
    first, topics = start_worker(partitions=PARTITIONS, **env)
    second, _ = start_worker(partitions=PARTITIONS, topics=topics, app_id=first.app_id, **env)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]

    async def kill() -> float:
        victim_consumed = consumed(second)
        second.kill()
        return victim_consumed

    started = time.monotonic()
    outputs, killed_at, victim_consumed = run(stream_and_act(bootstrap, topics, messages, kill, timeout=150))
    elapsed = time.monotonic() - started

    assert first.process is not None and first.process.poll() is None, first.log_tail()
    # The survivor's last assignment holds every input partition.
    last_assignment = first.log_text().rsplit("Setting newly assigned partitions", 1)[-1].split("for group")[0]
    assert any(topics.input in line and "{0-3}" in line for line in last_assignment.splitlines()), last_assignment
    # Both members had work before the kill: the group really was shared.
    assert victim_consumed > 0, second.log_tail()

    # Zero lost: every id reached an output; the kill may make at-least-once repeat a few (counted, reported).
    sent, landed = sent_and_landed(messages, outputs)
    assert not outputs["deadletter"]
    lost = sorted(sent - landed)
    lost_partitions = Counter(partition for key, _, partition in messages if key.decode() in set(lost))
    survivor_state = [line for line in first.metrics_text().splitlines() if line.startswith(LOST_DIAGNOSTICS)]
    assert not lost, f"lost {len(lost)} on input partitions {dict(lost_partitions)}: {lost[:10]}; {survivor_state}"
    assert set(landed) <= set(sent), f"records for ids never sent: {sorted(set(landed) - set(sent))[:10]}"
    repeats = sum((landed - sent).values())
    time.sleep(6)  # several commit intervals: what the survivor commits once it is done
    committed = run(committed_total(bootstrap, first.app_id, topics.input))

    # Copies met their originals across partitions and across the kill: one survivor per title, the rest
    # dropped. A repeat after the kill is recognised as the stored event itself, never emitted as a second title.
    survivors = {str(r["id"]) for kind in ("tagged", "review") for r in outputs[kind]}
    per_title = Counter(i.split("-copy")[0] for i in survivors)
    assert max(per_title.values()) == 1, [t for t, n in per_title.items() if n != 1][:10]
    # A title with no survivor is a near-copy of another row: all four of its events were dropped for it.
    duplicate_of = {str(d["id"]): str(d["duplicate_of"]).split("-copy")[0] for d in outputs["duplicate"]}
    for row in rows:
        if str(row["id"]) not in per_title:
            group = [str(row["id"])] + [f"{row['id']}-copy{s}" for s in range(1, PARTITIONS)]
            assert all(duplicate_of.get(i, str(row["id"])) != str(row["id"]) for i in group), group
    assert len(per_title) >= 0.95 * len(rows)
    shown_twice = Counter(str(r["id"]) for kind in ("tagged", "review") for r in outputs[kind])
    repeated_shown = sum(n - 1 for n in shown_twice.values())
    if guarantee == "exactly_once":  # read_committed: the killed worker's open transactions were aborted
        assert repeats == 0, f"{repeats} repeated outputs in exactly-once mode"
    print(
        f"scale-out ({guarantee}): {len(messages)} events, second worker consumed {victim_consumed} and was killed "
        f"after {killed_at} outputs; {repeats} repeated outputs ({repeated_shown} tagged/review), {elapsed:.1f} s; "
        f"committed offsets at the end: input {committed} of {len(messages)}"
    )


def test_a_worker_joining_mid_stream_takes_partitions_over_and_nothing_is_lost_repeated_or_shown_twice(
    start_worker: Any,
) -> None:
    # Scaling out while the stream flows, exactly once: the first worker gives up partitions with batches in
    # flight, and the newcomer's producers fence the first worker's for them. (At least once, the survivor of the
    # kill above goes through the same revocation mid-stream.)
    guarantee = "exactly_once"
    rows = distinct_rows(dataset_rows())[:300]
    messages = planted_stream(rows)
    env = {"BROKER_SESSION_TIMEOUT": SESSION_TIMEOUT_SECONDS, "TAGGER_PROCESSING_GUARANTEE": guarantee}
    first, topics = start_worker(partitions=PARTITIONS, **env)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    joined: list[WorkerProcess] = []

    async def join() -> float:
        first_consumed = consumed(first)
        worker, _ = await asyncio.to_thread(start_worker, PARTITIONS, topics, first.app_id, **env)
        joined.append(worker)
        return first_consumed

    outputs, joined_at, first_consumed = run(
        # The last 100 only once the second worker is ready, however long it took to start: it has work left.
        stream_and_act(bootstrap, topics, messages, join, timeout=150, pause=0.8, held_back=100)
    )

    [second] = joined
    for worker in (first, second):
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    assert consumed(second) > 0, second.log_tail()  # it took partitions over mid-stream
    sent, landed = sent_and_landed(messages, outputs)
    assert not outputs["deadletter"]
    assert not sorted(sent - landed), f"lost {len(sent - landed)}"
    assert set(landed) <= set(sent)
    repeats = sum((landed - sent).values())
    assert repeats == 0, f"{repeats} repeated outputs in exactly-once mode"
    shown = Counter(str(r["id"]).split("-copy")[0] for kind in ("tagged", "review") for r in outputs[kind])
    assert max(shown.values()) == 1, [title for title, n in shown.items() if n != 1][:10]
    print(
        f"scale-out while streaming ({guarantee}): {len(messages)} events, the second worker started after "
        f"{joined_at} outputs ({first_consumed:.0f} consumed by the first) and consumed "
        f"{consumed(second):.0f}; {repeats} repeated outputs"
    )
