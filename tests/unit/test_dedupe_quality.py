"""Dedupe quality on the whole dataset: planted copies are caught, distinct items are kept."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path
from typing import Any

from stream_app.corpus import hard_negatives, planted_near_duplicates
from stream_app.dedupe import DedupeIndex

ROOT = Path(__file__).resolve().parents[2]


def distinct_rows() -> list[dict[str, Any]]:
    rows = list(csv.DictReader((ROOT / "data/dataset.csv").open(encoding="utf-8")))
    seen: set[str] = set()
    kept = []
    for row in rows:
        plain = " ".join(row["title"].casefold().split())
        if plain not in seen:
            seen.add(plain)
            kept.append(row)
    return kept


def test_planted_copies_are_caught_and_distinct_items_kept() -> None:
    rows = distinct_rows()
    found: Counter[str] = Counter()
    planted_by_kind: Counter[str] = Counter()
    false_drops: list[str] = []
    for seed in (1, 2, 3):
        rng = random.Random(seed)
        dedupe = DedupeIndex({}, ttl_seconds=30 * 86400)
        for n, row in enumerate(rows):
            verdict = dedupe.check_and_add(row["id"], row["title"], row["description"], float(n))
            if verdict.match:
                false_drops.append(row["title"])
        for original, copy, kind in planted_near_duplicates(rows, rng):
            planted_by_kind[kind] += 1
            verdict = dedupe.check_and_add(copy["id"], copy["title"], copy["description"], 1e4)
            found[kind] += verdict.duplicate_of == original["id"]
        for negative in hard_negatives(rows, rng):
            if dedupe.check_and_add(negative["id"], negative["title"], negative["description"], 2e4).match:
                false_drops.append(negative["title"])
    recall = {kind: found[kind] / planted_by_kind[kind] for kind in planted_by_kind}
    print("recall by kind:", {k: round(v, 3) for k, v in sorted(recall.items())})
    assert sum(found.values()) / sum(planted_by_kind.values()) >= 0.95
    assert recall["typo"] >= 0.8
    assert recall["typo_plus_description_edit"] >= 0.8
    assert false_drops == []
