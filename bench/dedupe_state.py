"""Dedupe cost and state size: time per check, store reads and writes per check, bytes per stored title,
and recall per kind of planted copy, on the dataset and on a larger synthetic stream of look-alike titles.

``python -m bench.dedupe_state`` records the results in BENCHMARKS.md (``--no-write`` only prints them).
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from bench.report import write_section
from stream_app.dedupe import DedupeIndex, index_buckets
from stream_app.settings import Settings
from stream_app.title_index.index import TitleIndex
from stream_app.title_index.store import PackedTitles, RefStore, digest_key
from tools.corpus import distinct_rows, hard_negatives, planted_near_duplicates

ROOT = Path(__file__).resolve().parent.parent
TTL = 30 * 86400.0
START = 1_700_000_000.0  # event times like Kafka's: seconds since the epoch, to the millisecond


class CountingStore(MutableMapping[str, Any]):
    """The worker's title index store as the dedupe stage sees it (:class:`PackedTitles`, keyed by ref), counting
    reads and writes."""

    def __init__(self) -> None:
        self.data = RefStore()
        self.data.recording = False
        self.reads = 0
        self.writes = 0

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.writes += 1
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def stored_bytes(store: CountingStore) -> int:
    """Bytes of the store's entries as the index topic's records carry them: the 8-byte key and the value."""
    return sum(len(table_key(key)) + len(value) for key, value in store.data.items())


def table_key(ref: str) -> bytes:
    """A ref's key as the title index keeps it and its topic carries it."""
    return digest_key(ref)


def varint_bytes(value: int) -> int:
    """Length of ``value`` as a Kafka varint (zigzag)."""
    zigzag, length = (value << 1) ^ (value >> 63), 1
    while zigzag >= 0x80:
        zigzag >>= 7
        length += 1
    return length


def log_bytes(store: CountingStore | dict[str, Any]) -> int:
    """Bytes of the entries in the index topic's log once compacted: each a Kafka v2 record (length, attributes,
    timestamp and offset deltas of one byte, key, value, no headers); batch headers not counted."""
    total = 0
    for key, value in (store.data if isinstance(store, CountingStore) else store).items():
        body = 4 + varint_bytes(8) + len(table_key(key)) + varint_bytes(len(value)) + len(value)
        total += varint_bytes(body) + body
    return total


def memory_bytes(mapping: dict[Any, Any], seen: set[int]) -> int:
    """Python heap bytes of a dict, its keys and values (containers and their contents; objects in ``seen``,
    which this adds to, are counted once)."""

    def size(obj: Any) -> int:
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        total = sys.getsizeof(obj)
        if isinstance(obj, dict):
            total += sum(size(k) + size(v) for k, v in obj.items())
        elif isinstance(obj, (list, tuple, set)):
            total += sum(size(item) for item in obj)
        return total

    return size(mapping)


BATCH = Settings.batch_size
"""Titles checked together, as the worker's batches (``TAGGER_BATCH_SIZE``'s default) are at full speed."""


class Timings:
    """Microseconds per check of one stream, both ways: one title at a time, and in batches of :data:`BATCH`."""

    def __init__(self) -> None:
        self.one_by_one: list[float] = []
        self.batched: list[float] = []


def timed(single: DedupeIndex, batched: DedupeIndex, events: list[dict[str, Any]], times: Timings) -> list[Any]:
    """Check ``events`` on both indexes, batch by batch, taking turns at going first: ``single`` one title at a
    time (:meth:`DedupeIndex.check_and_add`), ``batched`` the batch prepared at once (``prepare``, its
    cost shared out evenly among the batch's checks). Returns ``batched``'s verdicts, which must be
    ``single``'s."""
    verdicts: list[Any] = []
    for number, start in enumerate(range(0, len(events), BATCH)):
        batch = events[start : start + BATCH]
        expected: list[Any] = []
        for turn in (0, 1) if number % 2 == 0 else (1, 0):
            if turn == 0:
                for event in batch:
                    started = time.perf_counter()
                    expected.append(
                        single.check_and_add(event["id"], event["title"], event["description"], event["time"])
                    )
                    times.one_by_one.append((time.perf_counter() - started) * 1e6)
                continue
            started = time.perf_counter()
            prepared = batched.prepare([(event["title"], event["description"]) for event in batch])
            shared = (time.perf_counter() - started) * 1e6 / len(batch)
            for event, ready in zip(batch, prepared, strict=True):
                started = time.perf_counter()
                verdicts.append(
                    batched.check_and_add(event["id"], event["title"], event["description"], event["time"], ready)
                )
                times.batched.append(shared + (time.perf_counter() - started) * 1e6)
        assert verdicts[start:] == expected, "a batch must judge as one title at a time does"
    return verdicts


def percentiles(times: list[float]) -> tuple[float, float, float]:
    """Mean, p50 and p99."""
    cuts = statistics.quantiles(times, n=100)
    return statistics.fmean(times), cuts[49], cuts[98]


def synthetic_titles(rows: list[dict[str, Any]], count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Titles of 3 to 8 words drawn from the dataset's title words: look-alikes that share many letter pairs."""
    vocabulary = sorted({word for row in rows for word in row["title"].split()})
    return [
        {"id": f"s{n}", "title": " ".join(rng.sample(vocabulary, rng.randint(3, 8))), "description": None}
        for n in range(count)
    ]


class Pair:
    """One index checked one title at a time and one checked in batches, fed the same streams, with the store
    reads and writes of the batched one counted."""

    def __init__(self) -> None:
        self.single = DedupeIndex(CountingStore(), TTL)
        self.store = CountingStore()
        self.batched = DedupeIndex(self.store, TTL)


def stream(pair: Pair, events: list[dict[str, Any]]) -> tuple[Timings, float, float, list[Any]]:
    """Check ``events`` in order on both of ``pair``: their timings, store reads and writes per check, and
    verdicts."""
    times = Timings()
    reads, writes = pair.store.reads, pair.store.writes
    verdicts = timed(pair.single, pair.batched, events, times)
    return times, (pair.store.reads - reads) / len(events), (pair.store.writes - writes) / len(events), verdicts


def cost_row(name: str, runs: list[tuple[Timings, float, float, list[Any]]]) -> str:
    """A table row: median over ``runs`` of each figure, both ways."""
    one = [percentiles(times.one_by_one) for times, *_ in runs]
    many = [percentiles(times.batched) for times, *_ in runs]
    figures = " | ".join(f"{statistics.median(run[i] for run in one):.0f}" for i in range(3))
    batched = " | ".join(f"{statistics.median(run[i] for run in many):.0f}" for i in range(3))
    ratio = statistics.median(b[1] / a[1] for a, b in zip(one, many, strict=True))
    _, reads, writes, _ = runs[0]
    return f"| {name} | {len(runs[0][3])} | {figures} | {batched} | {ratio:.2f}x | {reads:.1f} | {writes:.1f} |"


def size_row(name: str, dedupe: DedupeIndex, store: CountingStore, titles: int) -> str:
    seen: set[int] = set()
    dedupe.buckets.as_dict()  # merges the pending entries into the arrays
    as_table = {table_key(ref): value for ref, value in store.data.items()}  # keyed as the title table keeps it
    packed = PackedTitles(recent_limit=len(as_table) + 1)
    packed.update(as_table)
    packed._merge()  # as it is between merges: every entry packed
    table, buckets = memory_bytes(as_table, seen), dedupe.buckets.nbytes
    return (
        f"| {name} | {titles} | {stored_bytes(store) / titles:.1f} | {table / titles:.0f} "
        f"| {packed.nbytes / titles:.0f} | {buckets / titles:.0f} "
        f"| {log_bytes(store) / titles:.1f} |"
    )


def follower_apply_us(store: CountingStore) -> float:
    """µs per record for another worker's title index to apply the entries of ``store`` as they come from the
    index topic (:meth:`TitleIndex.apply`): what each worker pays for every title the others store."""
    records = [(digest_key(ref), value) for ref, value in store.data.items()]
    follower = TitleIndex(TTL, max_skew_seconds=300.0)
    follower.finish_loading()
    started = time.perf_counter()
    for key, value in records:
        follower.apply(key, value)
    return (time.perf_counter() - started) * 1e6 / len(records)


def measure(synthetic: int, runs: int) -> str:
    """Run every measurement and return the Markdown body of the report: the costs are the median of ``runs``
    runs, the sizes and recall (the same in every run) are the last run's."""
    with (ROOT / "data" / "dataset.csv").open(newline="", encoding="utf-8") as handle:
        rows = distinct_rows(list(csv.DictReader(handle)))
    streams: dict[str, list[tuple[Timings, float, float, list[Any]]]] = {}
    apply_us: list[float] = []
    for _ in range(runs):
        rng = random.Random(1)
        pair = Pair()
        originals = [{**row, "time": START + n + 0.123} for n, row in enumerate(rows)]
        planted = planted_near_duplicates(rows, rng)
        copies = [{**copy, "time": START + 1e4} for _, copy, _ in planted]
        negatives = [{**row, "time": START + 2e4} for row in hard_negatives(rows, rng)]
        streams.setdefault("dataset titles (all unique)", []).append(stream(pair, originals))
        sizes = [size_row("dataset", pair.batched, pair.store, len(rows))]
        streams.setdefault("planted copies", []).append(stream(pair, copies))
        verdicts = streams["planted copies"][-1][3]
        caught = Counter(kind for (original, _, kind), verdict in zip(planted, verdicts, strict=True)
                         if verdict.duplicate_of == original["id"])  # fmt: skip
        totals = Counter(kind for _, _, kind in planted)
        streams.setdefault("hard negatives", []).append(stream(pair, negatives))
        false_drops = sum(verdict.match is not None for verdict in streams["hard negatives"][-1][3])

        big = Pair()
        events = [{**event, "time": START + n} for n, event in enumerate(synthetic_titles(rows, synthetic, rng))]
        streams.setdefault("synthetic look-alike titles", []).append(stream(big, events))
        distinct = sum(verdict.match is None for verdict in streams["synthetic look-alike titles"][-1][3])
        apply_us.append(follower_apply_us(big.store))
    sizes.append(size_row("synthetic", big.batched, big.store, distinct))
    started = time.perf_counter()
    rebuilt = index_buckets(big.store.data)
    rebuild_us = (time.perf_counter() - started) * 1e6 / len(big.store.data)
    assert rebuilt == big.batched.buckets

    recall = ", ".join(f"{kind} {caught[kind] / totals[kind]:.3f}" for kind in sorted(totals))
    return "\n".join(
        [
            "Cost of a dedupe check over the worker's title index store (one process, no Kafka), two ways on two "
            "indexes fed the same stream, batch by batch in turns: one title at a time "
            f"(`DedupeIndex.check_and_add`), and in batches of {BATCH} as the worker checks them (`DedupeIndex.prepare` "
            "makes the batch's signatures at once, its time shared out among the batch's checks, then each check). "
            f"µs per check; each figure is the median of {runs} runs, the ratio (batched / one by one, p50) is "
            "taken within each run first.",
            "",
            "| stream | checks | one by one: mean µs | p50 µs | p99 µs | in batches: mean µs | p50 µs | p99 µs "
            "| p50 batched / one by one | store reads/check | store writes/check |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *(cost_row(name, measured) for name, measured in streams.items()),
            "",
            "State per stored title: key and value (both binary), as the index topic carries them (event ids as in "
            "the dataset, up to 4 digits: each more character adds a byte); in memory (the worker's store, "
            "`stream_app.title_index.store.PackedTitles`: its arrays and value arena once merged; for comparison a dict of "
            "the same 8-byte keys and bytes values in Python objects; and the LSH bucket index, which lives in memory "
            "only, in numpy arrays, and is rebuilt from the entries); and on disk, in the index topic's compacted log "
            "(each a Kafka record with its framing; batch headers not counted). "
            "Target: <= 64 bytes of entry per title.",
            "",
            "| state | titles | B/title (key and value) | memory B/title, dict | memory B/title, packed store "
            "| memory B/title, LSH buckets | B/title in the topic's log |",
            "|---|---|---|---|---|---|---|",
            *sizes,
            "",
            f"Recall on planted copies (seed 1): {recall}. Hard negatives dropped: {false_drops} of {len(negatives)}.",
            "",
            f"Rebuilding the LSH bucket index from the stored entries (after a restart or a rebalance): "
            f"{rebuild_us:.1f} µs per stored entry ({len(big.store.data):,} entries), so about "
            f"{rebuild_us:.0f} s per 1,000,000 titles in the index.",
            "",
            f"Applying another worker's index records (`TitleIndex.apply`, each worker does it for every title the "
            f"others store): {statistics.median(apply_us):.1f} µs per record (the synthetic stream's "
            f"{len(big.store.data):,} entries, median of {runs} runs).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synthetic", type=int, default=20000, help="synthetic look-alike titles to stream")
    parser.add_argument("--runs", type=int, default=3, help="runs of the cost measurement; the table shows medians")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    body = measure(args.synthetic, args.runs)
    print(body)
    if not args.no_write:
        write_section("dedupe_state", "Dedupe: cost per check and state per title", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
