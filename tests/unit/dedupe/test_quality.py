"""Dedupe quality on the whole dataset: planted copies are caught, distinct items are kept.

Run with ``-s`` to see the measured recall per kind.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path
from typing import Any

from stream_app.dedupe import DedupeIndex
from tools.corpus import TYPO_EDITS, distinct_rows, hard_negatives, planted_near_duplicates, typo

ROOT = Path(__file__).resolve().parents[3]
TTL = 30 * 86400.0
SEEDS = (1, 2, 3)


def dataset() -> list[dict[str, Any]]:
    with (ROOT / "data" / "dataset.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def indexed(rows: list[dict[str, Any]]) -> DedupeIndex:
    dedupe = DedupeIndex({}, TTL)
    for n, row in enumerate(rows):
        dedupe.check_and_add(row["id"], row["title"], row["description"], float(n))
    return dedupe


def test_the_dataset_as_a_stream_loses_only_its_repeated_titles() -> None:
    rows = dataset()
    dedupe = DedupeIndex({}, TTL)
    dropped = set()
    for n, row in enumerate(rows):
        if dedupe.check_and_add(row["id"], row["title"], row["description"], float(n)).match:
            dropped.add(row["id"])
    repeated = {row["id"] for row in rows} - {row["id"] for row in distinct_rows(rows)}
    print("\ndataset rows dropped as repeats:", [(r["id"], r["title"]) for r in rows if r["id"] in dropped])
    assert dropped == repeated


def test_planted_copies_are_caught_and_hard_negatives_kept() -> None:
    rows = distinct_rows(dataset())
    caught: Counter[str] = Counter()
    planted: Counter[str] = Counter()
    false_drops: list[str] = []
    for seed in SEEDS:
        rng = random.Random(seed)
        dedupe = indexed(rows)
        for original, copy, kind in planted_near_duplicates(rows, rng):
            planted[kind] += 1
            verdict = dedupe.check_and_add(copy["id"], copy["title"], copy["description"], 1e4)
            expected_match = "near" if kind.startswith("typo") else "exact"
            caught[kind] += verdict.duplicate_of == original["id"] and verdict.match == expected_match
        for negative in hard_negatives(rows, rng):
            if dedupe.check_and_add(negative["id"], negative["title"], negative["description"], 2e4).match:
                false_drops.append(negative["title"])
    recall = {kind: caught[kind] / planted[kind] for kind in planted}
    print("\nrecall by kind:", {kind: f"{value:.3f} of {planted[kind]}" for kind, value in sorted(recall.items())})
    assert set(planted) == {"case", "decoration", "whitespace_punctuation", "word_order", "typo",
                            "typo_plus_description_edit"}  # fmt: skip
    assert sum(caught.values()) / sum(planted.values()) >= 0.95
    assert all(recall[kind] == 1.0 for kind in planted if not kind.startswith("typo"))
    assert recall["typo"] >= 0.8 and recall["typo_plus_description_edit"] >= 0.8
    assert false_drops == []


def test_a_stream_checked_in_batches_gets_the_verdicts_and_entries_of_one_checked_title_by_title() -> None:
    """The worker checks a batch at once: a copy in the same batch as its original is caught as it would be
    one batch later, and the store ends the same."""
    rows = distinct_rows(dataset())
    rng = random.Random(4)
    stream = [(row["id"], row["title"], row["description"], float(n)) for n, row in enumerate(rows)]
    copies = [copy for _, copy, _ in planted_near_duplicates(rows, rng)]
    stream += [(copy["id"], copy["title"], copy["description"], 1e4) for copy in copies]
    stream += [(row["id"], row["title"], row["description"], 2e4) for row in hard_negatives(rows, rng)]
    stream += [("blank", "!!!", None, 3e4), ("empty", "", "a description", 3e4)]
    rng.shuffle(stream)  # copies land in their original's batch, or before it
    one_by_one, batched = DedupeIndex({}, TTL), DedupeIndex({}, TTL)
    expected = [one_by_one.check_and_add(*event) for event in stream]
    got = [verdict for start in range(0, len(stream), 64) for verdict in batched.check_many(stream[start : start + 64])]
    assert got == expected
    assert sum(verdict.match is not None for verdict in got) > 500
    assert batched.store == one_by_one.store and batched.buckets == one_by_one.buckets


def test_each_kind_of_single_letter_typo_is_caught() -> None:
    rows = distinct_rows(dataset())
    rng = random.Random(7)
    recall = {}
    for edit in TYPO_EDITS:
        dedupe = indexed(rows)  # afresh, so a missed copy of one edit is not the original of the next
        caught = tried = 0
        for row in rows:
            title = typo(row["title"], rng, edit)
            if title is None:
                continue
            tried += 1
            verdict = dedupe.check_and_add(f"{row['id']}-{edit}", title, row["description"], 1e4)
            caught += verdict.duplicate_of == row["id"]
        recall[edit] = caught / tried
    print("\ntypo recall by edit:", {edit: round(value, 3) for edit, value in recall.items()})
    assert all(value >= 0.8 for value in recall.values())
