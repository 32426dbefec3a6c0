"""Near-duplicate detection over a key-value store (a Faust table in the worker, a dict in tests).

Tier 1, exact: titles that normalise to the same sorted token set share a 16-hex-digit key.
Tier 2, near: a copy with one mistyped word shares all its other tokens with the original. Every stored title
posts each of its "all tokens but one" sets, so a copy finds its original in one look-up per token; the two
differing words must then be one edit apart, agree on their digits (YOLOv5 is not YOLOv7), and the
descriptions, when both exist, must agree too. A different word (text/token, image/video) is never one edit.

Store values are JSON lists, never mutated in place: Faust writes the changelog only on assignment.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Final

MATCH_KINDS: Final = ("exact", "near")
STOPWORDS: Final = frozenset("a an the of for to in on with and or by from using via your my our is are at as".split())
DESCRIPTION_SIMILARITY: Final = 0.3
"""Least description similarity (MinHash estimate of word Jaccard) that confirms a near-duplicate title."""
MIN_TYPO_WORD: Final = 4
"""Shortest word in which a one-character difference is taken for a typo (CNN/RNN are different things);
the mistyped form may be one letter shorter (with/wth)."""
_DESCRIPTION_HASHES: Final = 8
_DECORATION_SUFFIX = re.compile(
    r"\s*(?:[|\-–—:]\s*(?:reddit|r/[a-z0-9_]+|medium|youtube|towards data science|hacker news|github|"
    r"arxiv|twitter|linkedin|kaggle|substack|dev\.to|papers with code))+\s*$"
)
_DECORATION_PREFIX = re.compile(r"^\s*(?:\[(?:p|r|d|n|project|research|discussion|news)\]\s*)+")
_NON_WORD = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\d+")


def _digest(text: str, size: int = 8) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).hexdigest()


def normalize_title(title: str) -> str:
    """A title's canonical form: NFKC, case-folded, source decorations and punctuation gone, token set sorted."""
    text = unicodedata.normalize("NFKC", title).casefold()
    previous = None
    while previous != text:
        previous = text
        text = _DECORATION_PREFIX.sub("", _DECORATION_SUFFIX.sub("", text))
    return " ".join(sorted(set(_NON_WORD.sub(" ", text).split())))


def dedupe_key(title: str) -> str:
    """The exact-tier key of a title: 16 hex digits of the hash of its normalised form."""
    return _digest(normalize_title(title))


def description_signature(description: str | None) -> str:
    """A MinHash signature (8 x 16 bits, as hex) of a description's word set; empty for no description."""
    words = set(_NON_WORD.sub(" ", unicodedata.normalize("NFKC", description or "").casefold()).split())
    if not words:
        return ""
    hashes = [
        min(int.from_bytes(hashlib.blake2b(w.encode(), digest_size=2, salt=bytes([seed])).digest(), "big")
            for w in words)
        for seed in range(_DESCRIPTION_HASHES)
    ]
    return "".join(f"{h:04x}" for h in hashes)


def signature_similarity(left: str, right: str) -> float | None:
    """Estimated word Jaccard of two descriptions, or None when either has no description."""
    if not left or not right:
        return None
    pairs = [(left[i : i + 4], right[i : i + 4]) for i in range(0, len(left), 4)]
    return sum(a == b for a, b in pairs) / len(pairs)


def one_edit_apart(left: str, right: str) -> bool:
    """True when one substitution, insertion, deletion or adjacent transposition turns ``left`` into ``right``."""
    if left == right or abs(len(left) - len(right)) > 1:
        return False
    if len(left) == len(right):
        diffs = [i for i, (a, b) in enumerate(zip(left, right, strict=True)) if a != b]
        if len(diffs) == 1:
            return True
        return len(diffs) == 2 and diffs[1] == diffs[0] + 1 and left[diffs[0]] == right[diffs[1]] \
            and left[diffs[1]] == right[diffs[0]]
    short, long = sorted((left, right), key=len)
    index = next((i for i, (a, b) in enumerate(zip(short, long, strict=False)) if a != b), len(short))
    return short[index:] == long[index + 1 :]


def is_typo_of(word: str, other: str) -> bool:
    """Whether two words differ by a typo rather than in meaning or version."""
    if max(len(word), len(other)) < MIN_TYPO_WORD or _DIGITS.findall(word) != _DIGITS.findall(other):
        return False
    return one_edit_apart(word, other)


@dataclass(frozen=True)
class DedupeVerdict:
    """What the index made of one title."""

    dedupe_key: str
    duplicate_of: str | None
    match: str | None
    similarity: float


class DedupeIndex:
    """Titles seen within the TTL, in ``store``: ``t:<key>`` -> [id, time, description signature] and
    ``n:<hash of the tokens but one>`` -> [[key, left-out token, time], ...]."""

    def __init__(self, store: MutableMapping[str, Any], ttl_seconds: float) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds

    def check_and_add(
        self, event_id: str, title: str, description: str | None, event_time: float
    ) -> DedupeVerdict:
        """Judge a title against those seen within the TTL before ``event_time``; remember it if it is new."""
        tokens = normalize_title(title).split()
        key = _digest(" ".join(tokens))
        oldest = event_time - self.ttl_seconds
        first = self.store.get("t:" + key)
        if first is not None and first[1] >= oldest:
            if first[0] == event_id:  # a replay of the same event is not a copy of itself
                return DedupeVerdict(key, None, None, 0.0)
            return DedupeVerdict(key, str(first[0]), "exact", 1.0)
        signature = description_signature(description)
        near = self._near(tokens, key, signature, oldest)
        if near is not None and near.duplicate_of != event_id:
            return near
        self._remember(tokens, key, event_id, signature, event_time)
        return DedupeVerdict(key, None, None, 0.0)

    def _near(self, tokens: list[str], key: str, signature: str, oldest: float) -> DedupeVerdict | None:
        """The earliest stored title one typo or one extra stop word away, confirmed by the description."""
        candidates: list[tuple[str, float]] = []
        if len(tokens) >= 2:
            for token in tokens:
                rest = " ".join(t for t in tokens if t != token)
                for other_key, other_token, time in self.store.get("n:" + _digest(rest), ()):
                    if other_key != key and time >= oldest and is_typo_of(token, other_token):
                        candidates.append((other_key, 1.0 - 1.0 / (2 * len(tokens))))
                if token in STOPWORDS:  # the copy has one stop word more than its original
                    candidates.append((_digest(rest), 1.0 - 1.0 / (2 * len(tokens))))
        for other_key, other_token, time in self.store.get("n:" + _digest(" ".join(tokens)), ()):
            if other_token in STOPWORDS and time >= oldest:  # the original has one stop word more
                candidates.append((other_key, 1.0 - 1.0 / (2 * len(tokens) + 2)))
        for other_key, similarity in candidates:
            first = self.store.get("t:" + other_key)
            if first is None or first[1] < oldest:
                continue
            described = signature_similarity(signature, first[2])
            if described is None or described >= DESCRIPTION_SIMILARITY:
                return DedupeVerdict(key, str(first[0]), "near", round(similarity, 4))
        return None

    def _remember(self, tokens: list[str], key: str, event_id: str, signature: str, event_time: float) -> None:
        """Store the title and post each of its all-tokens-but-one sets."""
        self.store["t:" + key] = [event_id, event_time, signature]
        if len(tokens) < 2:
            return
        for token in tokens:
            slot = "n:" + _digest(" ".join(t for t in tokens if t != token))
            postings = [p for p in self.store.get(slot, ()) if p[0] != key]
            self.store[slot] = [*postings, [key, token, event_time]]

    def expire(self, now: float) -> int:
        """Delete titles (and their postings) last seen more than the TTL before ``now``; returns titles removed."""
        oldest = now - self.ttl_seconds
        removed = 0
        for slot in list(self.store):
            value = self.store.get(slot)
            if value is None:
                continue
            if slot.startswith("t:") and value[1] < oldest:
                del self.store[slot]
                removed += 1
            elif slot.startswith("n:"):
                fresh = [p for p in value if p[2] >= oldest]
                if not fresh:
                    del self.store[slot]
                elif len(fresh) != len(value):
                    self.store[slot] = fresh
        return removed
