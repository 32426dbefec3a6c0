"""Replay the sample data through a running worker and summarise where every message ended up.

``python -m tools.replay`` produces ``data/dataset.csv`` with planted near-duplicates and malformed
messages to the input topic (with a progress bar), then reads the four output topics until every message is
accounted for, and prints messages per topic, per tag, dedupe matches by kind and end-to-end latency.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.errors import ConfigError
from stream_app.settings import Settings
from stream_app.topology.retention import KEPT_FOR_EVER
from tools.corpus import planted_near_duplicates
from tools.topics import create_topics

MALFORMED_SAMPLES: tuple[bytes, ...] = (
    b"",
    b"not json at all",
    b'["an", "array"]',
    b'{"id": 1}',
    b'{"id": 2, "title": "   "}',
    b'{"id": 3, "title": 42}',
    b'{"id": 4, "title": "NaN confidence", "score": NaN}',
    b'{"id": "\xff\xfe", "title": "bad bytes"}',
    b'{"id": 5, "title": "' + b"x" * 1200 + b'"}',
    b'{"id": true, "title": "boolean id"}',
)
"""One example of each way an input message can be malformed."""


@dataclass(frozen=True)
class ReplayMessage:
    """One message to produce, and what the worker should make of it."""

    key: bytes | None
    value: bytes
    expected: str  # "event", "duplicate" or "deadletter"


@dataclass
class Summary:
    """Where the replayed messages ended up."""

    sent: int = 0
    per_topic: Counter[str] = field(default_factory=Counter)
    per_tag: Counter[str] = field(default_factory=Counter)
    matches: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def received(self) -> int:
        """Messages found in the output topics."""
        return sum(self.per_topic.values())


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a dataset CSV; raises ValueError naming the line of a row with fewer or more fields than the
    header."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = []
        for row in reader:
            if None in row or None in row.values():  # more fields than the header, or fewer
                raise ValueError(f"{path} line {reader.line_num}: not as many fields as the header has")
            rows.append(row)
        return rows


def event_value(row: dict[str, Any]) -> bytes:
    """A row as an input event's JSON bytes (the training label is not part of an event)."""
    event: dict[str, Any] = {name: row[name] for name in ("id", "title", "description", "created_on") if name in row}
    event["source"] = row.get("source", "made-with-ml")
    event["url"] = row.get("url", f"https://example.org/projects/{row['id']}")
    return json.dumps(event, ensure_ascii=False).encode()


def build_messages(
    rows: Sequence[dict[str, Any]], *, duplicate_share: float, malformed_share: float, seed: int
) -> list[ReplayMessage]:
    """The dataset's events in order, with near-duplicates and malformed messages interleaved at random."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not security
    messages = [ReplayMessage(str(row["id"]).encode(), event_value(row), "event") for row in rows]
    planted = planted_near_duplicates(list(rows), rng)
    rng.shuffle(planted)
    copies = planted[: int(len(rows) * duplicate_share)]
    for original, copy, _kind in copies:
        # A copy arrives after its original, anywhere later in the stream.
        at = next(i for i, m in enumerate(messages) if m.key == str(original["id"]).encode())
        spot = rng.randint(at + 1, len(messages))
        messages.insert(spot, ReplayMessage(str(copy["id"]).encode(), event_value(copy), "duplicate"))
    for index in range(int(len(rows) * malformed_share)):
        sample = MALFORMED_SAMPLES[index % len(MALFORMED_SAMPLES)]
        messages.insert(rng.randint(0, len(messages)), ReplayMessage(None, sample, "deadletter"))
    return messages


def mixed_stream(rows: Sequence[dict[str, Any]], count: int, seed: int) -> list[ReplayMessage]:
    """``count`` messages for load and fault runs: 89% distinct events, 10% near-duplicates, 1% malformed.

    Distinct events cycle through ``rows`` with a serial number appended to each title and id (a digit
    difference is never a near-duplicate), so every good message has an id of its own. Each copy comes after its
    original; malformed messages are anywhere.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not security
    distinct = [
        {**row, "id": f"e{n}", "title": f"{row['title']} {n}"}
        for n, row in zip(range(int(count * 0.89)), itertools.cycle(rows), strict=False)
    ]
    # Sort by a position in [0, len(distinct)): event n sits at n, its copy somewhere after it.
    placed = [
        (float(n), ReplayMessage(str(row["id"]).encode(), event_value(row), "event")) for n, row in enumerate(distinct)
    ]
    planted = planted_near_duplicates(distinct, rng)
    for original, copy, _kind in rng.sample(planted, min(len(planted), int(count * 0.10))):
        after = int(str(original["id"])[1:])
        message = ReplayMessage(str(copy["id"]).encode(), event_value(copy), "duplicate")
        placed.append((rng.uniform(after + 0.5, len(distinct)), message))
    for index in range(count - len(placed)):
        message = ReplayMessage(None, MALFORMED_SAMPLES[index % len(MALFORMED_SAMPLES)], "deadletter")
        placed.append((rng.uniform(0, len(distinct)), message))
    placed.sort(key=lambda item: item[0])
    return [message for _, message in placed]


def _progress(done: int, total: int, label: str) -> None:
    """A progress bar on a terminal; a line every tenth of the way otherwise (logs stay readable)."""
    width = 30
    filled = width * done // max(total, 1)
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
    elif done >= total or done * 10 // max(total, 1) != (done - 1) * 10 // max(total, 1):
        sys.stderr.write(f"{label} {done}/{total}\n")
    sys.stderr.flush()


async def produce(bootstrap: str, topic: str, messages: Sequence[ReplayMessage], rate: float = 0.0) -> dict[bytes, int]:
    """Send ``messages`` (at ``rate`` per second, 0 for full speed); returns each keyed message's send time in ms."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    sent_at: dict[bytes, int] = {}
    started = time.monotonic()
    try:
        for index, message in enumerate(messages):
            if rate > 0:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            timestamp = int(time.time() * 1000)
            await producer.send(topic, message.value, key=message.key, timestamp_ms=timestamp)
            if message.key is not None:
                sent_at[message.key] = timestamp
            if index % 50 == 0 or index == len(messages) - 1:
                _progress(index + 1, len(messages), "replay ")
        await producer.flush()
    finally:
        await producer.stop()
    return sent_at


async def end_offsets(
    bootstrap: str, topics: Sequence[str], partitions: int = 1, configs: Mapping[str, Mapping[str, str]] | None = None
) -> dict[TopicPartition, int]:
    """The current end offset of every partition of ``topics``, creating those that do not exist yet (with the
    topic configuration ``configs`` gives a name)."""
    await create_topics(bootstrap, topics, partitions, configs=configs)
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return dict(await consumer.end_offsets(assigned))
    finally:
        await consumer.stop()


async def collect(
    bootstrap: str,
    topics: dict[str, str],
    start: dict[TopicPartition, int],
    expected: int,
    sent_at: dict[bytes, int],
    timeout: float,
) -> Summary:
    """Read the output topics from ``start`` until ``expected`` records arrived or ``timeout`` passed."""
    summary = Summary(sent=expected)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    by_topic = {name: kind for kind, name in topics.items()}
    deadline = time.monotonic() + timeout
    try:
        while summary.received < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                kind = by_topic[tp.topic]
                for record in records:
                    summary.per_topic[kind] += 1
                    value = json.loads(record.value)
                    if kind == "tagged":
                        summary.per_tag[value["tag"]] += 1
                    if kind == "duplicate":
                        summary.matches[value["match"]] += 1
                    if kind in ("tagged", "review") and record.key in sent_at:
                        summary.latencies_ms.append(record.timestamp - sent_at[record.key])
            _progress(min(summary.received, expected), expected, "outputs")
    finally:
        await consumer.stop()
    return summary


async def replay(settings: Settings, messages: Sequence[ReplayMessage], rate: float, timeout: float) -> Summary:
    """Produce ``messages`` to the input topic and collect what the worker made of them."""
    topics = {
        "tagged": settings.tagged_topic,
        "review": settings.review_topic,
        "duplicate": settings.duplicates_topic,
        "deadletter": settings.deadletter_topic,
    }
    bootstrap = settings.kafka_bootstrap_servers
    # Made as the worker makes it, when the replay comes first: a worker refuses a review topic that deletes records.
    kept = {settings.review_topic: KEPT_FOR_EVER}
    start = await end_offsets(bootstrap, list(topics.values()), settings.partitions, kept)
    await end_offsets(bootstrap, [settings.input_topic], settings.partitions)  # create it before producing
    sent_at = await produce(bootstrap, settings.input_topic, messages, rate)
    return await collect(bootstrap, topics, start, len(messages), sent_at, timeout)


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile of ``values`` by nearest rank (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))])


def render(summary: Summary, rate: float = 0.0) -> str:
    """The summary as a small text report; ``rate`` is the offered rate the latency was measured at (0: all at
    once, so the figure is how long the last of a backlog waited, not what one event takes)."""
    lines = [f"sent {summary.sent} messages, found {summary.received} in the output topics"]
    lines += [f"  {kind:<10} {count:>6}" for kind, count in sorted(summary.per_topic.items())]
    lines.append("tagged per tag:")
    lines += [f"  {tag:<28} {count:>6}" for tag, count in sorted(summary.per_tag.items())]
    lines.append("duplicates by match: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.matches.items())))
    offered = f"at {rate:g} messages/s offered" if rate > 0 else "with every message sent at once (a backlog)"
    lines.append(
        f"end-to-end latency (produce to output) {offered}: p50 {percentile(summary.latencies_ms, 0.5):.1f} ms, "
        f"p99 {percentile(summary.latencies_ms, 0.99):.1f} ms over {len(summary.latencies_ms)} events"
    )
    lines.append(
        "drift: these rows include the ones the model was trained on, so it is more confident here than on new "
        "data and the confidence PSI reads high; that is the replay, not drift."
    )
    return "\n".join(lines)


DEFAULT_RATE = 50.0
"""Messages per second the replay offers by default: a steady stream whose latency is one event's, not a
backlog's."""


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; exit 1 when some messages were not accounted for."""
    parser = argparse.ArgumentParser(prog="python -m tools.replay", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/dataset.csv"), help="dataset CSV to replay")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of planted near-duplicates")
    parser.add_argument("--malformed", type=float, default=0.02, help="share of malformed messages")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="messages per second (0: all at once)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the outputs")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        messages = build_messages(
            read_rows(args.data), duplicate_share=args.duplicates, malformed_share=args.malformed, seed=args.seed
        )
        summary = asyncio.run(replay(settings, messages, args.rate, args.timeout))
    except (OSError, ValueError, KafkaError, ConfigError) as error:  # a missing file, a bad row, no broker
        print(f"replay: {error}", file=sys.stderr)
        return 1
    print(render(summary, args.rate))
    return 0 if summary.received >= len(messages) else 1


if __name__ == "__main__":
    raise SystemExit(main())
