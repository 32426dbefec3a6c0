"""The title index every worker holds whole, on a real broker: copies of every planted kind meet their
originals on other partitions and other workers, before and after a worker is killed; a worker started late has
the whole index before it says it is ready; copies racing their originals are shown once."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from stream_app.title_index.index import TitleIndex
from tests.integration.harness import WorkerProcess, grow_topic, ids_in, produce, produce_paced, read_outputs, run
from tests.integration.test_worker import dataset_rows
from tools.corpus import distinct_rows, hard_negatives, planted_near_duplicates
from tools.replay import event_value

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4
ENV = {"BROKER_SESSION_TIMEOUT": "10", "TAGGER_SESSION_TIMEOUT_SECONDS": "10"}
Message = tuple[bytes, bytes, int]


def entries(worker: WorkerProcess) -> float:
    """The worker's ``content_tagger_dedupe_entries``."""
    return worker.value("content_tagger_dedupe_entries")


def on_other_partitions(
    planted: list[tuple[dict[str, Any], dict[str, Any], str]], home: dict[str, int], suffix: str
) -> list[Message]:
    """Each copy, renamed with ``suffix``, on a partition other than its original's."""
    messages = []
    for number, (original, copy, _) in enumerate(planted):
        partition = (home[str(original["id"])] + 1 + number % (PARTITIONS - 1)) % PARTITIONS
        renamed = {**copy, "id": f"{copy['id']}{suffix}"}
        messages.append((str(renamed["id"]).encode(), event_value(renamed), partition))
    return messages


def near_recall(planted: list[tuple[dict[str, Any], dict[str, Any], str]], suffix: str, dropped: set[str]) -> float:
    near = {f"{copy['id']}{suffix}" for _, copy, kind in planted if kind.startswith("typo")}
    return len(near & dropped) / len(near)


def test_copies_meet_their_originals_on_any_partition_and_worker_also_after_a_kill(start_worker: Any) -> None:
    rng = random.Random(22)
    rows = distinct_rows(dataset_rows())
    racing, rows = rows[:100], rows[100:500]
    planted = planted_near_duplicates(rows, rng)
    negatives = hard_negatives(rows, rng)
    first, topics = start_worker(partitions=PARTITIONS, **ENV)
    second, _ = start_worker(partitions=PARTITIONS, topics=topics, app_id=first.app_id, **ENV)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    sent: list[Message] = []

    def send(messages: list[Message]) -> None:
        run(produce(bootstrap, topics.input, messages))
        sent.extend(messages)

    def outputs(timeout: float = 120) -> dict[str, list[dict[str, Any]]]:
        return run(read_outputs(bootstrap, topics, len(sent), timeout, settle=1.0))

    # Copies racing their originals (the next message, on another partition): checked at the same time on two
    # workers, and told apart by the second look.
    race = []
    for number, row in enumerate(racing):
        race.append((str(row["id"]).encode(), event_value(row), number % PARTITIONS))
        copy = {**row, "id": f"{row['id']}-race", "title": row["title"].upper()}
        race.append((copy["id"].encode(), event_value(copy), (number + 1) % PARTITIONS))
    send(race)
    # Originals round-robin, then the hard negatives, each processed before any copy is sent.
    home = {str(row["id"]): number % PARTITIONS for number, row in enumerate(rows)}
    send([(str(r["id"]).encode(), event_value(r), home[str(r["id"])]) for r in rows])
    send([(str(n["id"]).encode(), event_value(n), number % PARTITIONS) for number, n in enumerate(negatives)])
    assert sum(len(v) for v in outputs().values()) >= len(sent)
    time.sleep(1.0)

    # A worker started now has the whole index before its /ready says 200.
    late, _ = start_worker(partitions=PARTITIONS, topics=topics, app_id=first.app_id, **ENV)
    assert late.start_answers[-1][1] == 200
    assert entries(late) == entries(first) >= len(rows) + len(negatives), late.log_tail()

    send(on_other_partitions(planted, home, "-before"))
    before = outputs()
    late.kill()
    send(on_other_partitions(planted, home, "-after"))
    after = outputs(timeout=180)

    assert first.process is not None and first.process.poll() is None, first.log_tail()
    landed = Counter(ids_in(after["tagged"]) + ids_in(after["review"]) + ids_in(after["duplicate"]))
    expected = Counter(key.decode() for key, _, _ in sent)
    assert not expected - landed, f"lost: {sorted(expected - landed)[:20]}"
    assert not after["deadletter"]

    dropped_before = set(ids_in(before["duplicate"]))
    dropped = set(ids_in(after["duplicate"]))
    for suffix, seen in (("-before", dropped_before), ("-after", dropped)):
        exact = {f"{copy['id']}{suffix}" for _, copy, kind in planted if not kind.startswith("typo")}
        assert exact <= seen, sorted(exact - seen)[:20]
        assert near_recall(planted, suffix, seen) >= 0.95
    distinct = {str(r["id"]) for r in rows} | {str(n["id"]) for n in negatives}
    assert not distinct & dropped, sorted(distinct & dropped)[:20]
    by_copy = {str(d["id"]): str(d["duplicate_of"]) for d in after["duplicate"]}
    for original, copy, _ in planted:
        before_id = f"{copy['id']}-before"
        assert by_copy.get(before_id, str(original["id"])) == str(original["id"])
        # A copy the near tier let through was shown, and its twin sent later is an exact copy of it.
        shown = {str(original["id"])} | ({before_id} if before_id not in dropped_before else set())
        assert by_copy.get(f"{copy['id']}-after", str(original["id"])) in shown
    racing_caught = sum(1 for row in racing if f"{row['id']}-race" in dropped)
    shown_ids = set(ids_in(after["tagged"]) + ids_in(after["review"]))
    not_once = [row["id"] for row in racing if len({str(row["id"]), f"{row['id']}-race"} & shown_ids) != 1]
    assert not not_once, f"{len(not_once)} of {len(racing)} racing titles not shown once: {not_once[:10]}"
    print(
        f"title index: near-copy recall {near_recall(planted, '-before', dropped_before):.3f} before the kill, "
        f"{near_recall(planted, '-after', dropped):.3f} after; racing copies caught "
        f"{racing_caught} of {len(racing)}"
    )


async def index_records(bootstrap: str, topic: str, idle_seconds: float = 2.0) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) record of the index topic, read from its start until nothing came for ``idle_seconds``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[tuple[bytes, bytes | None]] = []
    try:
        while batches := await consumer.getmany(timeout_ms=int(idle_seconds * 1000)):
            records += [(record.key, record.value) for part in batches.values() for record in part]
    finally:
        await consumer.stop()
    return records


def test_expired_titles_are_deleted_from_the_index_topic_whatever_tagger_partitions_says(
    start_worker: Any, new_topic: Any
) -> None:
    # TAGGER_PARTITIONS above the input topic's real count: the titles whose digest fell on a partition that
    # does not exist were owned by nobody, and their entries stayed on the compacted topic for ever.
    ttl_days = 6 / 86400  # titles expire 6 s after they are seen (no clock skew allowed)
    worker, topics = start_worker(
        partitions=2, TAGGER_PARTITIONS="4", TAGGER_DEDUPE_TTL_DAYS=str(ttl_days), TAGGER_MAX_CLOCK_SKEW_SECONDS="0"
    )
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    index_topic = f"{worker.app_id}-title-index"
    rows = distinct_rows(dataset_rows())[:40]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in rows]))
    run(read_outputs(bootstrap, topics, len(rows), timeout=60, settle=0.0))
    written = {key for key, value in run(index_records(bootstrap, index_topic)) if value is not None}
    assert len(written) > len(rows) // 2, worker.log_tail()
    time.sleep(8)
    later = {"id": "later", "title": "A title that moves the stream time past the others' TTL"}
    run(produce(bootstrap, topics.input, [(b"later", json.dumps(later).encode(), None)]))
    run(read_outputs(bootstrap, topics, len(rows) + 1, timeout=60, settle=0.0))
    deleted = {key for key, value in run(index_records(bootstrap, index_topic)) if value is None}
    assert written <= deleted, f"{len(written - deleted)} of {len(written)} expired titles never deleted"


def test_each_expired_title_is_deleted_once_by_its_one_owner_on_a_group_of_two(start_worker: Any) -> None:
    """Ownership counted the input's partitions with Faust's ``topic_partitions``, which answers on the group's
    leader only: the other worker fell back to TAGGER_PARTITIONS, and with it set below the real count it owned
    every title (each deleted twice) or none (half never deleted)."""
    ttl_days = 6 / 86400  # titles expire 6 s after they are seen (no clock skew allowed)
    env = {"TAGGER_PARTITIONS": "1", "TAGGER_DEDUPE_TTL_DAYS": str(ttl_days), "TAGGER_MAX_CLOCK_SKEW_SECONDS": "0"}
    first, topics = start_worker(partitions=2, **env)
    second, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **env)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    index_topic = f"{first.app_id}-title-index"
    rows = distinct_rows(dataset_rows())[:40]
    messages = [(str(r["id"]).encode(), event_value(r), n % 2) for n, r in enumerate(rows)]
    run(produce(bootstrap, topics.input, messages))
    run(read_outputs(bootstrap, topics, len(rows), timeout=60, settle=0.0))
    consumed = sorted(w.total("content_tagger_events_consumed_total") for w in (first, second))
    assert 0 < consumed[0] < len(rows), consumed  # each worker holds one input partition
    written = {key for key, value in run(index_records(bootstrap, index_topic)) if value is not None}
    assert len(written) > len(rows) // 2, first.log_tail()
    time.sleep(8)
    later = [{"id": f"later-{n}", "title": f"A title that moves stream time past the others' TTL {n}"} for n in (0, 1)]
    run(produce(bootstrap, topics.input, [(e["id"].encode(), json.dumps(e).encode(), n) for n, e in enumerate(later)]))
    run(read_outputs(bootstrap, topics, len(rows) + 2, timeout=60, settle=0.0))
    time.sleep(3)  # both workers sweep within a second or two of the batch
    deletions = Counter(key for key, value in run(index_records(bootstrap, index_topic)) if value is None)
    missing = [key for key in written if deletions[key] == 0]
    twice = [key for key in written if deletions[key] > 1]
    assert not missing and not twice, f"{len(missing)} never deleted, {len(twice)} deleted more than once"


def test_partitions_added_to_the_index_topic_scatter_no_title(start_worker: Any) -> None:
    """Index records went wherever the partitioner put them and a running worker read the partitions it found at
    start: once an operator grew the topic, a restarted worker's titles went to partitions the other never read,
    and their copies were shown on it."""
    first, topics = start_worker(partitions=2, **ENV)
    second, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **ENV)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    rows = distinct_rows(dataset_rows())[:90]
    run(
        produce(
            bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), n % 2) for n, r in enumerate(rows[:30])]
        )
    )
    run(read_outputs(bootstrap, topics, 30, timeout=60, settle=0.0))
    run(grow_topic(bootstrap, f"{first.app_id}-title-index", 3))
    second.stop()
    second, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **ENV)  # its producer sees 3
    later = rows[30:]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), n % 2) for n, r in enumerate(later)]))
    run(read_outputs(bootstrap, topics, len(rows), timeout=60, settle=0.0))
    time.sleep(1.0)
    copies = [({**r, "id": f"{r['id']}-copy"}, (n + 1) % 2) for n, r in enumerate(rows)]  # on the other partition
    run(produce(bootstrap, topics.input, [(str(c["id"]).encode(), event_value(c), p) for c, p in copies]))
    outputs = run(read_outputs(bootstrap, topics, 2 * len(rows), timeout=60, settle=1.0))
    shown = [i for i in ids_in(outputs["tagged"]) + ids_in(outputs["review"]) if i.endswith("-copy")]
    assert not shown, f"{len(shown)} of {len(copies)} copies shown: {shown[:10]}"
    late, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **ENV)
    assert entries(late) == entries(first) >= len(rows), late.log_tail()


def test_an_entry_a_deletion_came_after_in_the_topic_is_written_again_for_workers_started_later(
    start_worker: Any,
) -> None:
    # The owner of an expired title deletes it from the topic; another worker that saw the title again meanwhile
    # wrote it first. The topic's log then ends with the deletion, and a worker started later would show copies.
    # Here the deletion is written by hand after the worker's entry, in the order that race leaves them.
    worker, topics = start_worker()
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    index_topic = f"{worker.app_id}-title-index"
    row = distinct_rows(dataset_rows())[0]
    run(produce(bootstrap, topics.input, [(b"first", event_value({**row, "id": "first"}), None)]))
    run(read_outputs(bootstrap, topics, 1, timeout=60, settle=0.0))
    [(key, value)] = [(k, v) for k, v in run(index_records(bootstrap, index_topic)) if v is not None]
    run(produce(bootstrap, index_topic, [(key, None, None)]))
    # The worker sweeps at most once a second, and only in a batch: it gets one each 1.2 s until the entry is back.
    nudges = 0
    while nudges < 20:
        time.sleep(1.2)
        nudges += 1
        nudge = {"id": f"nudge-{nudges}", "title": f"A title that only gives the worker a batch to sweep with {nudges}"}
        run(produce(bootstrap, topics.input, [(nudge["id"].encode(), json.dumps(nudge).encode(), None)]))
        run(read_outputs(bootstrap, topics, 1 + nudges, timeout=60, settle=0.0))
        if dict(run(index_records(bootstrap, index_topic, idle_seconds=0.5))).get(key) is not None:
            break
    assert dict(run(index_records(bootstrap, index_topic)))[key] == value, worker.log_tail()
    worker.stop()
    restarted, _ = start_worker(topics=topics, app_id=worker.app_id)
    run(produce(bootstrap, topics.input, [(b"copy", event_value({**row, "id": "copy"}), None)]))
    outputs = run(read_outputs(bootstrap, topics, 2 + nudges, timeout=90, settle=1.0))
    assert ids_in(outputs["duplicate"]) == ["copy"], restarted.log_tail()


@pytest.mark.parametrize("replayed_by", ["a running worker", "a worker started after the crash"])
@pytest.mark.parametrize("match", ["exact", "near"])
def test_a_title_replayed_after_its_worker_crashed_before_its_second_look_is_shown_once(
    start_worker: Any, replayed_by: str, match: str
) -> None:
    """Two workers checked a title and its copy (exact, or one typo away) at once; the copy's worker stored its
    entry first and showed it. The other stored its own entry, then crashed before its second look and its outputs,
    so its event is replayed, and its entry is the last record of its key. Here both records are written by hand in
    that order, as ``TitleIndex`` makes them; the replayed event must go to the duplicates topic, naming the copy
    shown."""
    row = distinct_rows(dataset_rows())[0]
    title, description = str(row["title"]), "A detector that runs on video streams in real time."
    if match == "exact":
        shown_title, replayed_title = title.upper(), title
    else:
        shown_title, replayed_title = (
            "Realtime object detection with transformers",
            "Realtime object detecton with transformers",
        )
    now = time.time()
    claims = []
    for event_id, claimed in (("shown", shown_title), ("replayed", replayed_title)):
        writer = TitleIndex(30 * 86400.0, 300.0)
        writer.finish_loading()
        _, [claim] = writer.check(event_id, claimed, description, now)
        claims.append((claim.key, claim.value, None))
    worker, topics = start_worker()
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    index_topic = f"{worker.app_id}-title-index"
    if replayed_by == "a worker started after the crash":
        worker.stop()
    run(produce(bootstrap, index_topic, claims))
    if replayed_by == "a worker started after the crash":
        worker, _ = start_worker(topics=topics, app_id=worker.app_id)
    replayed = {**row, "id": "replayed", "title": replayed_title, "description": description}
    run(produce(bootstrap, topics.input, [(b"replayed", event_value(replayed), None)]))
    outputs = run(read_outputs(bootstrap, topics, 1, timeout=60, settle=1.0))
    found = [(d["id"], d["duplicate_of"], d["match"]) for d in outputs["duplicate"]]
    assert found == [("replayed", "shown", match)], worker.log_tail()
    assert not outputs["tagged"] and not outputs["review"] and not outputs["deadletter"]
    assert worker.total("content_tagger_second_look_copies_total") == 1
    records = dict(run(index_records(bootstrap, index_topic)))
    if match == "exact":  # the copy's entry is the key's last record again: a worker started later holds it
        assert records[claims[0][0]] == claims[0][1]
    else:  # the replayed title's key now holds a near copy's entry
        assert records[claims[1][0]] != claims[1][1]


@pytest.mark.slow
def test_a_worker_given_no_events_lets_expired_titles_go_like_the_one_that_takes_them(start_worker: Any) -> None:
    """Expiry used to run only in a batch: a worker without an input partition (more workers than partitions)
    kept every title it read, past the TTL, and grew without end."""
    ttl, rate, count = 15.0, 2.0, 120
    env = {"TAGGER_DEDUPE_TTL_DAYS": str(ttl / 86400), "TAGGER_MAX_CLOCK_SKEW_SECONDS": "1"}
    first, topics = start_worker(partitions=1, **env)
    second, _ = start_worker(partitions=1, topics=topics, app_id=first.app_id, **env)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    events = [
        {"id": f"e{n}", "title": f"Distinct title number {n} about topic {n * 7919 % 1000}"} for n in range(count)
    ]
    run(produce_paced(bootstrap, topics.input, [(str(e["id"]).encode(), event_value(e), 0) for e in events], rate=rate))
    time.sleep(3.0)
    held = {w.port: (w.value("content_tagger_dedupe_entries"), w.total("content_tagger_events_consumed_total"))
            for w in (first, second)}  # fmt: skip
    assert sorted(consumed for _, consumed in held.values()) == [0, count], held  # one takes every event
    # About a TTL's worth of titles (30 at 2 a second), on both: before, the idle one held 66 and growing.
    assert all(entries <= rate * (ttl + 5) for entries, _ in held.values()), held
