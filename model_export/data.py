"""Load and validate the labelled data: the dataset CSV plus optional reviewer feedback."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from stream_app import APPROVED_TAGS
from stream_app.errors import TaggerError

REQUIRED_COLUMNS = ("id", "title", "description", "tag")


class DataValidationError(TaggerError):
    """The training data is unusable; the message names the offending rows."""


@dataclass(frozen=True)
class Example:
    """One labelled item."""

    id: str
    title: str
    description: str
    tag: str


@dataclass(frozen=True)
class Dataset:
    """Validated, de-duplicated examples and what validation removed."""

    examples: list[Example]
    duplicate_rows: list[int]


def load_dataset(path: Path, feedback: Path | None = None) -> Dataset:
    """Read ``path`` (CSV), validate it, append feedback (latest decision per id wins), drop duplicate titles.

    Raises :class:`DataValidationError` naming every bad row (1-based line numbers of the file).
    """
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataValidationError(f"{path}: missing required columns {missing}")
        rows = [(reader.line_num, row) for row in reader]
    examples: list[tuple[int, Example]] = []
    problems: list[str] = []
    for line, row in rows:
        title, tag = (row.get("title") or "").strip(), (row.get("tag") or "").strip()
        if not title:
            problems.append(f"line {line}: empty title")
        if tag not in APPROVED_TAGS:
            problems.append(f"line {line}: tag {tag!r} is not approved")
        examples.append((line, Example(str(row["id"]), title, (row.get("description") or "").strip(), tag)))
    if problems:
        raise DataValidationError(f"{path}: {len(problems)} bad rows: " + "; ".join(problems))
    if feedback is not None:
        examples = _merge_feedback(examples, load_feedback(feedback))
    return _drop_duplicate_titles(examples)


def load_feedback(path: Path) -> list[Example]:
    """Labelled examples from a JSONL feedback file (``{id, title, description, tag}``); latest per id wins."""
    latest: dict[str, Example] = {}
    problems: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            example = Example(
                str(item["id"]), str(item["title"]).strip(), str(item.get("description") or ""), str(item["tag"])
            )
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"line {number}: {error}")
            continue
        if example.tag not in APPROVED_TAGS or not example.title:
            problems.append(f"line {number}: tag {example.tag!r} not approved or empty title")
            continue
        latest[example.id] = example
    if problems:
        raise DataValidationError(f"{path}: {len(problems)} bad feedback lines: " + "; ".join(problems))
    return list(latest.values())


def _merge_feedback(examples: list[tuple[int, Example]], feedback: list[Example]) -> list[tuple[int, Example]]:
    """Feedback relabels an existing id or adds a new example."""
    by_id = {example.id: (line, example) for line, example in examples}
    for example in feedback:
        line = by_id[example.id][0] if example.id in by_id else 0
        by_id[example.id] = (line, example)
    return list(by_id.values())


def _drop_duplicate_titles(examples: list[tuple[int, Example]]) -> Dataset:
    """Keep the first example of each title (case and spacing aside) and report the others' lines."""
    seen: set[str] = set()
    kept: list[Example] = []
    duplicates: list[int] = []
    for line, example in examples:
        key = " ".join(example.title.casefold().split())
        if key in seen:
            duplicates.append(line)
            continue
        seen.add(key)
        kept.append(example)
    return Dataset(kept, duplicates)
