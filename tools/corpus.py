"""Seeded generators of planted near-duplicates and hard negatives, for tests, the demo and benchmarks.

A planted copy is what a scraper really produces when it meets the same item twice: another case, a source
decoration, other punctuation or word order, a typo, a reworded description. A hard negative is a distinct
item that looks close: another version number, one key word swapped for another, or one key word added.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence
from typing import Any, Final

from stream_app.dedupe import dedupe_key

Row = dict[str, Any]
DECORATIONS: Final = (
    " | Reddit", " - Medium", " - YouTube", " - Towards Data Science", "[P] ", "[R] ", "[D] ", "[N] ",
)  # fmt: skip
TYPO_EDITS: Final = ("substitution", "deletion", "insertion", "transposition")
TYPO_MIN_TITLE: Final = 20
"""Only titles this long get a planted typo: in shorter ones one letter is as likely another word."""
KEYWORD_SWAPS: Final = {
    "text": "token", "image": "video", "images": "videos", "classification": "segmentation",
    "detection": "tracking", "english": "french", "training": "inference", "python": "rust",
    "supervised": "unsupervised", "generation": "summarization", "speech": "music", "2d": "3d",
    "graph": "tree", "audio": "video", "tensorflow": "pytorch", "pytorch": "jax", "keras": "flax",
    "language": "vision", "learning": "unlearning", "neural": "symbolic", "deep": "shallow",
}  # fmt: skip
ADDED_KEYWORDS: Final = ("Video", "Multilingual", "Quantized", "3D", "Federated", "Medical")
_TYPO_WORD = re.compile(r"[A-Za-z]{4,}")
_NUMBER = re.compile(r"\d+")
_WORD = re.compile(r"[A-Za-z0-9]+")


def distinct_rows(rows: Sequence[Row]) -> list[Row]:
    """The rows whose title, case and spacing aside, does not repeat an earlier row's."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        plain = " ".join(row["title"].casefold().split())
        if plain not in seen:
            seen.add(plain)
            kept.append(row)
    return kept


def typo(title: str, rng: random.Random, edit: str | None = None) -> str | None:
    """One substituted, deleted, inserted or transposed letter in a word of 4+ letters of a title of 20+
    characters (``edit`` picks the kind, else it is drawn); None if the title has no room for one."""
    spots = list(_TYPO_WORD.finditer(title))
    if len(title) < TYPO_MIN_TITLE or not spots:
        return None
    word = rng.choice(spots)
    edit = edit or rng.choice(TYPO_EDITS)
    at = rng.randrange(word.start(), word.end() - (edit == "transposition"))
    letter = rng.choice([c for c in string.ascii_lowercase if c != title[at].lower()])
    if edit == "transposition" and title[at].lower() != title[at + 1].lower():
        return title[:at] + title[at + 1] + title[at] + title[at + 2 :]
    if edit == "deletion":
        return title[:at] + title[at + 1 :]
    if edit == "insertion":
        return title[:at] + letter + title[at:]
    return title[:at] + letter + title[at + 1 :]  # a substitution, also for a transposition of equal letters


def _case(row: Row, rng: random.Random) -> Row | None:
    return {**row, "title": rng.choice((str.upper, str.lower, str.title))(row["title"])}


def _decoration(row: Row, rng: random.Random) -> Row | None:
    decoration = rng.choice(DECORATIONS)
    title = decoration + row["title"] if decoration.startswith("[") else row["title"] + decoration
    return {**row, "title": title}


def _punctuation(row: Row, rng: random.Random) -> Row | None:
    words = row["title"].split()
    title = words[0]
    for word in words[1:]:
        title += rng.choice((" ", "  ", ", ", ": ", " / ", "\t")) + word
    return {**row, "title": title + rng.choice(("!", " ...", " :)", "?", " !!"))}


def _word_order(row: Row, rng: random.Random) -> Row | None:
    words = row["title"].split()
    if len(set(words)) < 2:
        return None
    i, j = rng.sample(range(len(words)), 2)
    words[i], words[j] = words[j], words[i]
    return {**row, "title": " ".join(words)} if words != row["title"].split() else None


def _typo(row: Row, rng: random.Random) -> Row | None:
    title = typo(row["title"], rng)
    return None if title is None else {**row, "title": title}


def _typo_and_description(row: Row, rng: random.Random) -> Row | None:
    copy = _typo(row, rng)
    if copy is None:
        return None
    words = (row.get("description") or "").split()
    if len(words) > 6:
        del words[rng.randrange(len(words))]
    return {**copy, "description": " ".join(words) + " (reposted)"}


PLANTERS: Final[dict[str, Callable[[Row, random.Random], Row | None]]] = {
    "case": _case,
    "decoration": _decoration,
    "whitespace_punctuation": _punctuation,
    "word_order": _word_order,
    "typo": _typo,
    "typo_plus_description_edit": _typo_and_description,
}
"""Each kind of planted copy; those starting with ``typo`` are near copies, the others exact ones."""


def planted_near_duplicates(rows: Sequence[Row], rng: random.Random) -> list[tuple[Row, Row, str]]:
    """One copy of every row, of a kind drawn at random among those that apply: ``(original, copy, kind)``.

    A copy has a new id, ``<original id>-copy-<kind>``, and a title that differs from the original's.
    """
    planted = []
    kinds = list(PLANTERS)
    for row in rows:
        if not str(row.get("title") or "").split():
            continue  # a blank title (a malformed row the worker dead-letters) has nothing to copy
        for kind in rng.sample(kinds, len(kinds)):
            copy = PLANTERS[kind](row, rng)
            if copy is not None and copy["title"] != row["title"]:
                planted.append((row, {**copy, "id": f"{row['id']}-copy-{kind}"}, kind))
                break
    return planted


def hard_negatives(rows: Sequence[Row], rng: random.Random) -> list[Row]:
    """One distinct item close to each row: a changed version number, a swapped key word, or an added key
    word. None repeats the title of any row; each keeps its row's description, so only the title tells it
    apart, and has the id ``<row id>-distinct-<kind>``."""
    taken = {dedupe_key(row["title"]) for row in rows}
    negatives = []
    for row in rows:
        title = row["title"]
        number = _NUMBER.search(title)
        swappable = [w for w in _WORD.findall(title) if w.lower() in KEYWORD_SWAPS]
        if number and rng.random() < 0.7:
            bumped = str(int(number.group()) + rng.randint(1, 3))
            changed, kind = title[: number.start()] + bumped + title[number.end() :], "version"
        elif swappable:
            word = rng.choice(swappable)
            swapped = KEYWORD_SWAPS[word.lower()]
            changed, kind = re.sub(rf"\b{re.escape(word)}\b", swapped, title, count=1), "keyword_swap"
        else:
            unused = [k for k in ADDED_KEYWORDS if k.lower() not in title.lower().split()]
            changed, kind = f"{rng.choice(unused)} {title}", "keyword_added"
        if dedupe_key(changed) not in taken:
            taken.add(dedupe_key(changed))
            negatives.append({**row, "title": changed, "id": f"{row['id']}-distinct-{kind}"})
    return negatives
