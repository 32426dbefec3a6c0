"""Hostile input through a real worker: over 10,000 malformed messages of every kind interleaved with good
events. Every malformed one is dead-lettered once with a known reason and its input offset, every good one is
processed, the worker stays alive and its memory does not keep growing."""

from __future__ import annotations

import json
import random
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_app.errors import DEADLETTER_REASONS
from stream_app.schema import MAX_DEAD_LETTER_VALUE_BYTES, MAX_MESSAGE_BYTES
from stream_app.topology.retention import KEPT_FOR_EVER
from tests.integration.harness import OUTPUT_KINDS, Topics, produce, run
from tests.integration.test_worker import dataset_rows, distinct_rows
from tools.replay import event_value

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MALFORMED_COUNT = 10_500
INPUT_MAX_MESSAGE_BYTES = 4 * MAX_MESSAGE_BYTES
"""The test's input topic takes messages over the worker's cap, so the worker sees and refuses them."""
ANY_REASON = "*"


@dataclass(frozen=True)
class Hostile:
    """One input message and what must become of it: a dead-letter reason, or ``good`` for a valid event."""

    value: bytes | None
    expect: str
    kind: str


def nested(depth: int) -> bytes:
    return b'{"id": "n", "title": "deep", "extra": ' + b"[" * depth + b"]" * depth + b"}"


def malformed_generators(rng: random.Random) -> dict[str, Callable[[], tuple[bytes | None, str]]]:
    """Each kind of malformed message, as a generator of ``(value, reason)``; ANY_REASON for fuzzed bytes."""

    def text(n: int) -> str:
        return "".join(rng.choice("abcdefghij klmnop") for _ in range(n))

    def ident() -> str:
        return uuid.UUID(int=rng.getrandbits(128)).hex

    def obj(**fields: Any) -> bytes:
        return json.dumps({"id": ident(), "title": text(20), **fields}).encode()

    def invalid_utf8() -> bytes:
        bad = rng.choice([b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
        return b'{"id": "' + ident().encode() + b'", "title": "' + bad + b'"}'

    return {
        "fuzzed-bytes": lambda: (rng.randbytes(rng.randint(1, 300)), ANY_REASON),
        "truncated-event": lambda: (obj(description=text(50))[: rng.randint(0, 60)], "not_json"),
        "empty": lambda: (rng.choice([b"", b" ", b"\n\t "]), "not_json"),
        "null-record": lambda: (None, "not_json"),
        "json-null": lambda: (b"null", "not_object"),
        "array": lambda: (json.dumps([ident(), text(5)]).encode(), "not_object"),
        "scalar": lambda: (rng.choice([b"42", b'"a string"', b"true", b"-1.5e3"]), "not_object"),
        "deep-nesting": lambda: (nested(rng.choice([65, 200, 5_000, 100_000])), "invalid_value"),
        "huge-title": lambda: (obj(title=text(rng.randint(1_001, 5_000))), "too_large"),
        "huge-description": lambda: (obj(description=text(rng.randint(20_001, 60_000))), "too_large"),
        "wrong-type-id": lambda: (
            json.dumps({"id": rng.choice([1.5, [1], {"a": 1}, True, False]), "title": text(9)}).encode(),
            "wrong_type",
        ),
        "wrong-type-field": lambda: (
            obj(**{rng.choice(["description", "url", "source", "created_on"]): rng.choice([1, [], {}, 2.5, True])}),
            "wrong_type",
        ),
        "wrong-type-title": lambda: (
            json.dumps({"id": ident(), "title": rng.choice([7, ["t"], {"t": 1}, False])}).encode(),
            "wrong_type",
        ),
        "missing-field": lambda: (
            json.dumps(rng.choice([{"title": text(9)}, {"id": ident()}, {"id": ident(), "title": None}])).encode(),
            "missing_field",
        ),
        "blank": lambda: (
            json.dumps({"id": ident(), "title": rng.choice(["", "   ", "\n"])}).encode(),
            "invalid_value",
        ),
        "invalid-utf8": lambda: (invalid_utf8(), "not_utf8"),
        "duplicate-keys": lambda: (
            b'{"id": "' + ident().encode() + b'", "title": "a", "title": "b"}',
            "invalid_value",
        ),
        "nan-infinity": lambda: (
            b'{"id": "'
            + ident().encode()
            + b'", "title": "n", "score": '
            + rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400"])
            + b"}",
            "invalid_value",
        ),
        "control-character-id": lambda: (
            json.dumps(
                {"id": ident() + rng.choice(["\r", "\n", "\r\n", "\x00", "\x85", "\u202e"]), "title": text(9)}
            ).encode(),
            "invalid_value",
        ),
        "lone-surrogate": lambda: (b'{"id": "' + ident().encode() + b'", "title": "\\ud800"}', "invalid_value"),
        "huge-integer": lambda: (
            b'{"id": ' + rng.choice([b"9" * 30, b"9" * 5_000]) + b', "title": "big"}',
            "invalid_value",
        ),
    }


def good_events(rng: random.Random, count: int) -> list[Hostile]:
    """Valid events: dataset rows with fresh ids (past the rows, repeated titles: duplicates), some odd but allowed."""
    rows = distinct_rows(dataset_rows())
    events = []
    for index in range(count):
        row = dict(rows[index % len(rows)], id=f"good-{index}")
        event = json.loads(event_value(row))
        odd = rng.random()
        if odd < 0.05:
            event["extra"] = {"nested": [[[{"ok": True}]]], "emoji": "\U0001f916", "n": 1e300}
        elif odd < 0.1:
            event["title"] = event["title"] + " \u00e9\u4e2d\u6587"
        events.append(Hostile(json.dumps(event, ensure_ascii=False).encode(), "good", "good"))
    return events


def huge_events() -> list[Hostile]:
    """Messages near and past the worker's size cap: past it refused as too_large, under it processed."""
    base = json.loads(event_value(distinct_rows(dataset_rows())[0]))
    big = []
    for index, (filler, size) in enumerate(
        [("a", MAX_MESSAGE_BYTES + 1), ("a", 3 * MAX_MESSAGE_BYTES), ("\u4e2d", MAX_MESSAGE_BYTES + 10)]
    ):
        event = dict(base, id=f"huge-{index}", extra=filler * (size // len(filler.encode())))
        big.append(Hostile(json.dumps(event, ensure_ascii=False).encode(), "too_large", "huge-message"))
    # Just under the cap: valid, so processed; its output records must still fit the broker's size limit.
    for index, filler in enumerate(["a", "\u4e2d", "\U0001f916", "\\n"]):
        event = dict(base, id=f"near-cap-{index}", title=f"{base['title']} near cap {index}")
        raw = json.dumps(event, ensure_ascii=False).encode()
        room = MAX_MESSAGE_BYTES - len(raw) - 64
        event["extra"] = json.loads(f'"{filler * (room // len(filler.encode()))}"')
        raw = json.dumps(event, ensure_ascii=False).encode()
        assert MAX_MESSAGE_BYTES - 200 < len(raw) <= MAX_MESSAGE_BYTES
        big.append(Hostile(raw, "good", "near-cap"))
    # The most an output record grows: "9e15" is written back as 9000000000000000.0, 3.8 times its bytes.
    event = dict(base, id="near-cap-numbers", title=f"{base['title']} near cap numbers", extra="-")
    text = json.dumps(event, ensure_ascii=False)
    count = (MAX_MESSAGE_BYTES - len(text) - 64) // len("9e15,")
    raw = text.replace('"extra": "-"', f'"extra": [{",".join(["9e15"] * count)}]').encode()
    assert MAX_MESSAGE_BYTES - 200 < len(raw) <= MAX_MESSAGE_BYTES
    big.append(Hostile(raw, "good", "near-cap"))
    return big


def hostile_corpus(seed: int = 6) -> list[Hostile]:
    rng = random.Random(seed)
    generators = malformed_generators(rng)
    kinds = sorted(generators)
    malformed = []
    for index in range(MALFORMED_COUNT):
        kind = kinds[index % len(kinds)]
        value, reason = generators[kind]()
        malformed.append(Hostile(value, reason, kind))
    corpus = malformed + good_events(rng, 2_000) + huge_events()
    rng.shuffle(corpus)
    return corpus


async def create_topics(bootstrap: str, partitions: int = 1) -> Topics:
    """Fresh topics; the input one accepts messages up to INPUT_MAX_MESSAGE_BYTES."""
    suffix = uuid.uuid4().hex[:10]
    topics = Topics(*(f"hostile-{kind}-{suffix}" for kind in ("content", *OUTPUT_KINDS)))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        big = {"max.message.bytes": str(INPUT_MAX_MESSAGE_BYTES)}
        await admin.create_topics(
            [NewTopic(topics.input, partitions, 1, topic_configs=big)]
            + [NewTopic(name, partitions, 1) for name in (topics.tagged, topics.duplicate, topics.deadletter)]
            + [NewTopic(topics.review, partitions, 1, topic_configs=dict(KEPT_FOR_EVER))]
        )
    finally:
        await admin.close()
    return topics


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def read_all_sampling(
    bootstrap: str, topics: Topics, expected: int, timeout: float, pid: int
) -> tuple[dict[str, list[tuple[int, int, dict[str, Any]]]], list[tuple[int, int]]]:
    """Read the four output topics until ``expected`` records arrived plus a settle time, sampling the worker's
    RSS as ``(records read so far, rss)`` between fetches."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=8 << 20)
    await consumer.start()
    kind_of = {name: kind for kind, name in topics.outputs().items()}
    partitions = [TopicPartition(name, 0) for name in kind_of]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    found: dict[str, list[tuple[int, int, dict[str, Any]]]] = {kind: [] for kind in OUTPUT_KINDS}
    samples: list[tuple[int, int]] = []
    total, deadline, settle_until = 0, time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline:
            samples.append((total, rss_bytes(pid)))
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                for record in records:
                    found[kind_of[tp.topic]].append((record.partition, record.offset, json.loads(record.value)))
                total += len(records)
            if total >= expected:
                settle_until = settle_until or time.monotonic() + 3.0
                if time.monotonic() >= settle_until:
                    break
    finally:
        await consumer.stop()
    return found, samples


def quarter_peaks(samples: list[tuple[int, int]], expected: int) -> Iterator[int]:
    """Peak RSS over each quarter of progress (records read), skipping quarters without a sample."""
    for quarter in range(4):
        low, high = quarter * expected / 4, (quarter + 1) * expected / 4
        inside = [rss for done, rss in samples if low <= done < high or (quarter == 3 and done >= high)]
        if inside:
            yield max(inside)


def test_hostile_corpus_is_dead_lettered_good_events_processed_worker_alive_and_memory_flat(
    start_worker: Any, kafka_bootstrap: str
) -> None:
    corpus = hostile_corpus()
    malformed = [h for h in corpus if h.expect != "good"]
    assert len(malformed) >= 10_000
    topics = run(create_topics(kafka_bootstrap))
    worker, _ = start_worker(topics=topics)
    assert worker.process is not None
    produced = run(
        produce(
            kafka_bootstrap,
            topics.input,
            [(f"h{index}".encode(), h.value, None) for index, h in enumerate(corpus)],  # a null value needs a key
            max_request_size=INPUT_MAX_MESSAGE_BYTES + 4096,
        )
    )
    found, samples = run(read_all_sampling(kafka_bootstrap, topics, len(corpus), 240, worker.process.pid))

    assert worker.process.poll() is None, worker.log_tail()
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/health", timeout=5) as response:  # noqa: S310
        assert json.loads(response.read())["status"] == "ok"

    # Every malformed message: exactly one dead letter, at its own input offset, with the expected reason.
    letters = Counter((d["partition"], d["offset"]) for _, _, d in found["deadletter"])
    assert max(letters.values()) == 1, [k for k, n in letters.items() if n > 1][:10]
    by_offset = {(d["partition"], d["offset"]): d for _, _, d in found["deadletter"]}
    wrong: list[tuple[str, str, str]] = []
    for hostile, where in zip(corpus, produced, strict=True):
        letter = by_offset.pop((where.partition, where.offset), None)
        if hostile.expect == "good":
            assert letter is None, (hostile.kind, letter)
            continue
        assert letter is not None, f"{hostile.kind} at offset {where.offset} was not dead-lettered"
        assert letter["topic"] == topics.input
        assert letter["error"] in DEADLETTER_REASONS
        assert letter["detail"]
        if hostile.expect not in (ANY_REASON, letter["error"]):
            wrong.append((hostile.kind, hostile.expect, letter["error"]))
        value = letter["value"]
        assert value["length"] == len(hostile.value or b"")
        assert value["truncated"] == (len(hostile.value or b"") > MAX_DEAD_LETTER_VALUE_BYTES)
    assert not wrong, Counter(wrong).most_common(10)
    assert not by_offset, f"dead letters for no malformed input: {list(by_offset)[:10]}"

    # Every good event processed exactly once: tagged, review or duplicate.
    good_ids = Counter(json.loads(h.value or b"")["id"] for h in corpus if h.expect == "good")
    processed = Counter(str(r["id"]) for kind in ("tagged", "review", "duplicate") for _, _, r in found[kind])
    assert processed == good_ids, (good_ids - processed, processed - good_ids)

    # Memory: the peak over the last quarter of the run is not far above the peak over the first quarter.
    peaks = list(quarter_peaks(samples, len(corpus)))
    mib = [round(p / 2**20, 1) for p in peaks]
    print(f"hostile: {len(malformed)} malformed + {len(corpus) - len(malformed)} good, RSS peaks by quarter {mib} MiB")
    assert len(peaks) >= 3, samples
    assert peaks[-1] <= 1.25 * peaks[0] + 32 * 2**20, f"RSS kept growing: quarter peaks {mib} MiB"
