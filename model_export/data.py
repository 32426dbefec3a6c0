"""Load and validate the labelled data: the dataset CSV plus optional reviewer feedback."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stream_app import APPROVED_TAGS
from stream_app.dedupe import DedupeIndex, description_signature, signature_similarity
from stream_app.dedupe.normalize import dedupe_key, folded_text, split_words
from stream_app.errors import TaggerError
from stream_app.review.labels import latest_decisions

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
    """First line (1-based, in the CSV) of every row dropped because it copies an earlier row, as the worker's
    dedupe judges copies (:func:`copies_of_held_rows`)."""


def load_dataset(path: Path) -> Dataset:
    """Read ``path`` (CSV), validate it and drop the rows that copy an earlier one; feedback is applied after the split
    (:func:`apply_feedback`), so it never moves rows between splits.

    Raises :class:`DataValidationError` naming every bad row by the line it starts on in the file.
    """
    return _drop_duplicate_titles(_read_csv(path))


def _read_csv(path: Path) -> list[tuple[int, Example]]:
    """Every row of the CSV with the line it starts on; raises naming all bad rows at once."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise DataValidationError(f"cannot read the dataset {path}: {error.strerror or error}") from error
    with handle:
        reader = csv.DictReader(handle)
        rows = []
        try:
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataValidationError(f"{path}: missing required columns {missing}")
            start = reader.line_num + 1
            for row in reader:
                # line_num is where a record ends; a quoted description can span lines, so keep the start.
                rows.append((start, row))
                start = reader.line_num + 1
        except (UnicodeDecodeError, csv.Error) as error:  # not UTF-8; a field past the csv module's limit
            raise DataValidationError(f"{path}: line {reader.line_num + 1}: {error}") from error
    examples: list[tuple[int, Example]] = []
    problems: list[str] = []
    first_line_of_id: dict[str, int] = {}
    for line, row in rows:
        example = Example(
            id=(row.get("id") or "").strip(),
            title=(row.get("title") or "").strip(),
            description=(row.get("description") or "").strip(),
            tag=(row.get("tag") or "").strip(),
        )
        if not example.id:
            problems.append(f"line {line}: empty id")
        elif example.id in first_line_of_id:
            # Feedback relabels by id, so an id must name one row.
            problems.append(f"line {line}: id {example.id!r} already used on line {first_line_of_id[example.id]}")
        first_line_of_id.setdefault(example.id, line)
        if not example.title:
            problems.append(f"line {line}: empty title")
        if example.tag not in APPROVED_TAGS:
            problems.append(f"line {line}: tag {example.tag!r} is not approved")
        examples.append((line, example))
    if problems:
        raise DataValidationError(f"{path}: {len(problems)} problems: " + "; ".join(problems))
    return examples


@dataclass(frozen=True)
class Feedback:
    """The latest usable decision per id, and what was skipped."""

    examples: list[Example]
    skipped: list[str]
    """Why each unusable line was skipped (``line N: ...``): the worker appends whatever decisions it reads, so
    one bad line must not stop every retrain."""


def load_feedback(path: Path) -> Feedback:
    """Labelled examples from a JSONL file of ``{id, title, description, tag}``, read as the worker reads its
    labelled store (:func:`~stream_app.review.labels.latest_decisions`): per id, the decision made last, else
    the later line; an unusable line is skipped and named in :attr:`Feedback.skipped`. Lines written by hand
    may leave out ``decided_at``."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataValidationError(f"cannot read the feedback {path}: {error.strerror or error}") from error
    labels, skipped = latest_decisions(raw, dated=False)
    # Ids as they are: the worker and latest_decisions tell " 1" from "1" (two events), so one decision each.
    examples = [
        Example(label["id"], label["title"].strip(), (label.get("description") or "").strip(), label["tag"].strip())
        for label in labels
    ]
    return Feedback(examples, skipped)


def apply_feedback(examples: list[Example], feedback: list[Example]) -> list[Example]:
    """Feedback replaces the example with its id or, being the newer human decision, the one with its title (as
    :func:`title_key` keys it)."""
    replaced_ids = {e.id for e in feedback}
    replaced_titles = {title_key(e.title) for e in feedback}
    kept = [e for e in examples if e.id not in replaced_ids and title_key(e.title) not in replaced_titles]
    latest_by_title = {title_key(e.title): e for e in feedback}  # of two ids with one title, the later wins
    return kept + list(latest_by_title.values())


HELD_COPY_TTL_SECONDS = 1e9
"""Longer than any time between the rows compared, all dated 0 or 1 s: no row's title expires before the last."""


SHARED_DESCRIPTION_SIMILARITY: Final = 0.75
"""Least estimated word Jaccard similarity (:func:`~stream_app.dedupe.signature_similarity`) at which a
decision's description counts as a held row's: a few words edited or cut, not another text."""
MIN_SHARED_DESCRIPTION_WORDS: Final = 8
"""Fewest words a description needs to be compared: short ones ("A library for X.") are shared by chance."""


def copies_of_held_rows(
    held: Sequence[Example], feedback: Sequence[Example], *, by_description: bool = True
) -> set[int]:
    """The positions in ``feedback`` of the decisions on a copy of one of ``held`` (the validation and test rows):
    as the worker's dedupe judges copies (the same words in any case, width, order or decoration, or one typo
    away with a description that agrees), or with a held row's description (of at least
    :data:`MIN_SHARED_DESCRIPTION_WORDS` words), the same or a few words edited, under any title (unless not
    ``by_description``). Trained on, such a decision would put a held-out row's text into training, and the gate
    would judge the candidate on data it learned."""
    index = DedupeIndex({}, ttl_seconds=HELD_COPY_TTL_SECONDS)
    held_texts: set[str] = set()
    held_signatures: list[bytes] = []
    for example in held:
        index.check_and_add(f"held\x00{example.id}", example.title, example.description or None, 0.0)
        words = _description_words(example.description) if by_description else []
        if len(words) >= MIN_SHARED_DESCRIPTION_WORDS:
            held_texts.add(" ".join(words))
            held_signatures.append(description_signature(example.description))
    copies = set()
    for position, example in enumerate(feedback):
        verdict = index.check_and_add(f"feedback\x00{position}", example.title, example.description or None, 1.0)
        if verdict.duplicate_of is not None and verdict.duplicate_of.startswith("held\x00"):
            copies.add(position)
            continue
        if not held_texts:
            continue
        words = _description_words(example.description)
        if len(words) < MIN_SHARED_DESCRIPTION_WORDS:
            continue
        signature = description_signature(example.description)
        if " ".join(words) in held_texts or any(
            (signature_similarity(signature, theirs) or 0.0) >= SHARED_DESCRIPTION_SIMILARITY
            for theirs in held_signatures
        ):
            copies.add(position)
    return copies


def _description_words(description: str) -> list[str]:
    """A description's words as the dedupe reads them (:func:`~stream_app.dedupe.normalize.folded_text`)."""
    return split_words(folded_text(description)) if description else []


def title_key(title: str) -> str:
    """A title as the worker's exact tier of dedupe keys it: the same words in any case, width, order or
    decoration (:func:`~stream_app.dedupe.normalize.dedupe_key`)."""
    return dedupe_key(title)


def _drop_duplicate_titles(examples: list[tuple[int, Example]]) -> Dataset:
    """Keep the first of each item and report the lines of its copies, as the worker's dedupe judges copies: the
    same words in any case, width, order or decoration, or one typo away with a description that agrees. A copy
    kept would put one item in two splits, and the test split would score what training saw."""
    index = DedupeIndex({}, ttl_seconds=HELD_COPY_TTL_SECONDS)
    kept: list[Example] = []
    duplicates: list[int] = []
    for line, example in examples:
        verdict = index.check_and_add(f"row\x00{line}", example.title, example.description or None, 0.0)
        if verdict.duplicate_of is not None:
            duplicates.append(line)
        else:
            kept.append(example)
    return Dataset(kept, duplicates)
