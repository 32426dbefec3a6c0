"""Seeded generators of planted near-duplicates and hard negatives, for tests, the demo and benchmarks.

A planted copy is what a scraper really produces when it meets the same item twice: another case, a source
decoration, other punctuation or word order, a typo, a reworded description. A hard negative is a distinct
item that looks close: another version number, or one key word changed or added.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

Row = dict[str, Any]
DECORATIONS = (" | Reddit", " - Medium", " - YouTube", " - Towards Data Science", "[P] ", "[R] ")
KEYWORD_SWAPS = {
    "text": "token", "image": "video", "images": "videos", "classification": "segmentation",
    "detection": "tracking", "english": "french", "training": "inference", "python": "rust",
    "supervised": "unsupervised", "generation": "summarization", "speech": "music", "2d": "3d",
}
ADDED_KEYWORDS = ("Video", "Multilingual", "Quantized", "3D", "Federated", "Medical")
_WORD = re.compile(r"[A-Za-z]{4,}")


def _case(row: Row, rng: random.Random) -> Row | None:
    return {**row, "title": rng.choice((str.upper, str.lower, str.title))(row["title"])}


def _decoration(row: Row, rng: random.Random) -> Row | None:
    decoration = rng.choice(DECORATIONS)
    title = decoration + row["title"] if decoration.startswith("[") else row["title"] + decoration
    return {**row, "title": title}


def _punctuation(row: Row, rng: random.Random) -> Row | None:
    words = row["title"].split()
    return {**row, "title": "  ".join(words) + rng.choice(("!", " ...", " :)", "?"))}


def _word_order(row: Row, rng: random.Random) -> Row | None:
    words = row["title"].split()
    if len(set(words)) < 2:
        return None
    i, j = rng.sample(range(len(words)), 2)
    words[i], words[j] = words[j], words[i]
    return {**row, "title": " ".join(words)} if words != row["title"].split() else None


def typo(title: str, rng: random.Random) -> str | None:
    """One substitution, deletion, insertion or transposition inside a word of 4+ letters; None if none fits."""
    spots = [m for m in _WORD.finditer(title)]
    if len(title) < 20 or not spots:
        return None
    word = rng.choice(spots)
    at = rng.randrange(word.start() + 1, word.end() - 1)  # keep the first and last letters, as people do
    kind = rng.choice(("substitute", "delete", "insert", "transpose"))
    letter = rng.choice([c for c in string.ascii_lowercase if c != title[at].lower()])
    if kind == "substitute":
        return title[:at] + letter + title[at + 1 :]
    if kind == "delete":
        return title[:at] + title[at + 1 :]
    if kind == "insert":
        return title[:at] + letter + title[at:]
    if title[at] == title[at + 1]:
        return title[:at] + letter + title[at + 1 :]
    return title[:at] + title[at + 1] + title[at] + title[at + 2 :]


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


PLANTERS: dict[str, Callable[[Row, random.Random], Row | None]] = {
    "case": _case,
    "decoration": _decoration,
    "whitespace_punctuation": _punctuation,
    "word_order": _word_order,
    "typo": _typo,
    "typo_plus_description_edit": _typo_and_description,
}


def planted_near_duplicates(rows: Sequence[Row], rng: random.Random) -> list[tuple[Row, Row, str]]:
    """One copy of every row, of a kind drawn at random among those that apply: ``(original, copy, kind)``."""
    planted = []
    kinds = list(PLANTERS)
    for row in rows:
        for kind in rng.sample(kinds, len(kinds)):
            copy = PLANTERS[kind](row, rng)
            if copy is not None and copy["title"] != row["title"]:
                planted.append((row, {**copy, "id": f"{row['id']}-copy-{kind}"}, kind))
                break
    return planted


def hard_negatives(rows: Sequence[Row], rng: random.Random) -> list[Row]:
    """Distinct items close to a row: a changed version number, a swapped key word, or an added key word."""
    negatives = []
    for row in rows:
        title = row["title"]
        digits = re.search(r"\d+", title)
        swappable = [w for w in re.findall(r"[A-Za-z0-9]+", title) if w.lower() in KEYWORD_SWAPS]
        if digits and rng.random() < 0.7:
            number = str(int(digits.group()) + rng.randint(1, 3))
            changed = title[: digits.start()] + number + title[digits.end() :]
            kind = "version"
        elif swappable:
            word = rng.choice(swappable)
            changed = re.sub(rf"\b{re.escape(word)}\b", KEYWORD_SWAPS[word.lower()], title, count=1)
            kind = "keyword_swap"
        else:
            unused = [k for k in ADDED_KEYWORDS if k.lower() not in title.lower()]
            changed = f"{rng.choice(unused)} {title}"
            kind = "keyword_added"
        negatives.append({**row, "title": changed, "id": f"{row['id']}-distinct-{kind}"})
    return negatives
