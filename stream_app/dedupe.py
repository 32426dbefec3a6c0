"""Near-duplicate detection over a key-value store (a Faust table in the worker, a dict in tests).

Tier 1, exact: titles that normalise to the same sorted token set share a 16-hex-digit key.

Tier 2, near: MinHash over the letter pairs of each word, split into LSH bands, finds stored titles that look
alike. A candidate is confirmed only if it is one typo away: the same words but one, that one word a single
edit (substitution, insertion, deletion, transposition) from its counterpart, with the same digits (YOLOv5 is
not YOLOv7), title similarity of at least :data:`NEAR_TITLE_SIMILARITY`, and descriptions that agree when both
exist. A different word (text/token, image/video) is never one edit, so it vetoes the match.

The store holds two kinds of entries, each one string (one Python object per title keeps the memory small),
replaced and never mutated (Faust writes the changelog only on assignment):

* ``<ref>`` -> ``"<event time>|<word hashes>|<description signature>|<LSH buckets>|<event id>"``, one per
  first-seen title, where ``<ref>`` is the dedupe key in 11 base64url characters, the word hashes are the sorted
  :func:`word_hash` of each word (repeats included), the buckets are the title's :func:`bucket_ids` (4 bytes
  each), and all three are base64url strings;
* ``<ref>`` -> ``"~<event time>|<similarity>|<original's ref>|<original's event id>"``, one per near copy
  found: a replayed copy (after a crash) or a copy of the copy gets the same verdict even when the original has
  since left its capped LSH buckets.

:func:`entry_fields` reads both, and the JSON lists earlier versions stored.

The LSH buckets themselves (bucket id -> refs, newest last) live in memory only, rebuilt from the entries by
:func:`index_buckets` after a restart or a rebalance: one store write per new title instead of one per bucket.

Every hash is a BLAKE2b with a fixed personalisation string, so two processes, or one process before and
after a restart, agree on every key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import string
import struct
import unicodedata
from collections import Counter
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

MATCH_KINDS: Final = ("exact", "near")
BANDS: Final = 4
ROWS: Final = 3
"""LSH layout: BANDS buckets per title, each keyed by ROWS MinHash values. One typo in a title of 20+
characters leaves 75-90% of its letter pairs in common, and titles that share 80% (90%) of them share a
bucket with probability 0.94 (0.99)."""
BUCKET_LIMIT: Final = 8
"""Most refs kept in one bucket (the newest); bounds both an entry's size and the candidates per look-up."""
NEAR_TITLE_SIMILARITY: Final = 0.6
"""Least Jaccard similarity of the letter pairs of two titles one typo apart; shorter titles fall below it
because in a word of a few letters one changed letter is as likely another word as a typo."""
DESCRIPTION_SIMILARITY: Final = 0.5
"""Least estimated Jaccard similarity of the word sets of two descriptions that confirms a near match."""
MIN_TYPO_WORD: Final = 4
"""Shortest word in which one changed letter is taken for a typo (CNN and RNN are different things); the
mistyped form may be a letter shorter (with/wth)."""
DESCRIPTION_CHARS: Final = 1000
"""Only the start of a description is signed: it tells a repost from another item and bounds the cost."""

_NEAR_COPY_FIELDS: Final = 6
_DESCRIPTION_HASHES: Final = 12
_WORD_HASH_BYTES: Final = 4
_REF_CHARS: Final = 11
_TITLE_FIELDS: Final = 5
_COPY_MARK: Final = "~"
_TYPO_LETTERS: Final = string.ascii_lowercase + "ßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ"
"""Letters a typo may have replaced or dropped, besides those of the word itself: Latin-1 lower case."""
_SOURCES = (
    r"reddit|r/\w+|medium|youtube|towards data science|hacker news|github|arxiv|twitter|linkedin|kaggle|"
    r"substack|dev\.to|papers with code"
)
# A separator after a space: "Title - Medium" is decorated, "Awesome-GitHub" is a name.
_DECORATION_SUFFIX = re.compile(rf"(?:\s+[|\-–—]\s*(?:{_SOURCES}))+\s*$")
_DECORATION_PREFIX = re.compile(r"^\s*(?:\[(?:p|r|d|n|project|research|discussion|news)\]\s*)+")
_NON_WORD = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class DedupeVerdict:
    """What the index made of one title."""

    dedupe_key: str
    duplicate_of: str | None
    """Id of the first-seen event this one copies, None if it is unique."""
    match: str | None
    """``"exact"``, ``"near"``, or None if unique."""
    similarity: float
    """1.0 for exact, the title similarity for near, 0.0 if unique."""


def _nfkc_casefold(text: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def title_words(title: str) -> list[str]:
    """A title's words in order, repeats included: NFKC, case-folded, without known source decorations,
    split at punctuation and spaces."""
    text = _nfkc_casefold(title)
    previous = None
    while previous != text:  # decorations can be stacked: "[P] Title - Medium | Reddit"
        previous = text
        text = _DECORATION_PREFIX.sub("", _DECORATION_SUFFIX.sub("", text))
    return _NON_WORD.sub(" ", text).split()


def normalize_title(title: str) -> str:
    """A title's canonical form: NFKC, case-folded, known source decorations and punctuation removed, the set
    of its words sorted and joined by single spaces."""
    return " ".join(sorted(set(title_words(title))))


def _key_digest(normalized: str) -> bytes:
    return hashlib.blake2b(normalized.encode(), digest_size=8, person=b"tagger-key").digest()


def dedupe_key(title: str) -> str:
    """The exact-tier key of a title: 16 hex digits of the BLAKE2b hash of its normalised form."""
    return _key_digest(normalize_title(title)).hex()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _minhash(elements: set[str], person: bytes, count: int) -> list[int]:
    """``count`` MinHash values of a set: each element's BLAKE2b digest is read as ``count`` independent
    32-bit hashes (``count`` <= 16), and each value is the least of one of them over the set."""
    hashed = [_element_hashes(element, person, count) for element in elements]
    return [min(column) for column in zip(*hashed, strict=True)]


@functools.lru_cache(maxsize=16384)  # letter pairs and common words recur from title to title
def _element_hashes(element: str, person: bytes, count: int) -> tuple[int, ...]:
    digest = hashlib.blake2b(element.encode(), digest_size=4 * count, person=person).digest()
    return struct.unpack(f">{count}I", digest)


def letter_pairs(words: set[str] | list[str]) -> set[str]:
    """A title's shingles: the letter pairs of each word padded with spaces, so word order does not count."""
    pairs: set[str] = set()
    for word in words:
        padded = f" {word} "
        pairs.update(padded[i : i + 2] for i in range(len(padded) - 1))
    return pairs


def jaccard(left: set[str], right: set[str]) -> float:
    """Jaccard similarity of two sets (1.0 for two empty sets)."""
    union = len(left | right)
    return len(left & right) / union if union else 1.0


def bucket_ids(words: list[str]) -> list[int]:
    """The LSH buckets of a title's words: for each band, the band number in the high bits above a 32-bit
    hash of that band's MinHash rows."""
    signature = _minhash(letter_pairs(words), b"tagger-title", BANDS * ROWS)
    ids = []
    for band in range(BANDS):
        rows = ",".join(map(str, signature[band * ROWS : (band + 1) * ROWS]))
        bucket = hashlib.blake2b(rows.encode(), digest_size=4, person=b"tagger-band").digest()
        ids.append(band << 32 | int.from_bytes(bucket, "big"))
    return ids


def _pack_buckets(ids: list[int]) -> str:
    return _b64(b"".join((bucket & 0xFFFFFFFF).to_bytes(4, "big") for bucket in ids))


def _unpack_buckets(packed: str) -> list[int]:
    raw = _unb64(packed)
    return [band << 32 | int.from_bytes(raw[4 * band : 4 * band + 4], "big") for band in range(len(raw) // 4)]


Buckets = dict[int, str]
"""The LSH buckets of one store: bucket id -> refs of the titles in it, concatenated, oldest first, at most
BUCKET_LIMIT. Most buckets hold one title, whose ref string they then share with the others: a str per bucket
costs a fraction of a list."""


def entry_fields(value: Any) -> list[Any] | None:
    """A stored value as a list: ``[event id, event time, word hashes, description signature, LSH buckets]`` for
    a first-seen title, ``[original's event id, event time, "", "", original's ref, similarity]`` for a near
    copy; None for a value of no known shape. Lists (as earlier versions stored them) are returned as they are."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        return None
    try:
        if value.startswith(_COPY_MARK):
            event_time, similarity, original_ref, original = value[1:].split("|", 3)
            return [original, float(event_time), "", "", original_ref, float(similarity)]
        event_time, hashes, signature, buckets, event_id = value.split("|", 4)
        return [event_id, float(event_time), hashes, signature, buckets]
    except ValueError:
        return None


def _title_value(event_id: str, event_time: float, hashes: str, signature: str, buckets: str) -> str:
    return f"{_compact_time(event_time)}|{hashes}|{signature}|{buckets}|{event_id}"


def _copy_value(original: str, event_time: float, original_ref: str, similarity: float) -> str:
    return f"{_COPY_MARK}{_compact_time(event_time)}|{similarity}|{original_ref}|{original}"


def index_buckets(store: MutableMapping[str, Any]) -> Buckets:
    """The LSH buckets of the first-seen titles in ``store``, filled in event-time order as they were live."""
    titles = []
    for ref, value in store.items():
        entry = entry_fields(value) if len(ref) == _REF_CHARS else None
        if entry is not None and len(entry) == _TITLE_FIELDS:
            titles.append((entry[1], ref, entry[4]))
    buckets: Buckets = {}
    for _, ref, packed in sorted(titles):
        _add_ref(buckets, _unpack_buckets(packed), ref)
    return buckets


def _add_ref(buckets: Buckets, ids: list[int], ref: str) -> None:
    for bucket in ids:
        # "".join of one str returns that str: a bucket of one title shares the title's ref object.
        others = [other for other in _split_refs(buckets.get(bucket, "")) if other != ref]
        buckets[bucket] = "".join([*others, ref][-BUCKET_LIMIT:])


def _code_sum(word: str) -> int:
    return sum(map(ord, word)) % 256


def word_hash(word: str) -> bytes:
    """The 4 bytes a stored title keeps of each word: the sum of its code points modulo 256, which tells a
    typo search what letter changed, then 3 bytes of its BLAKE2b hash."""
    digest = hashlib.blake2b(word.encode(), digest_size=_WORD_HASH_BYTES - 1, person=b"tagger-word").digest()
    return bytes([_code_sum(word)]) + digest


def description_signature(description: str | None) -> str:
    """A MinHash signature (12 one-byte values, base64url) of a description's words; empty if it has none."""
    words = set(_NON_WORD.sub(" ", _nfkc_casefold((description or "")[:DESCRIPTION_CHARS])).split())
    if not words:
        return ""
    return _b64(bytes(value & 0xFF for value in _minhash(words, b"tagger-text", _DESCRIPTION_HASHES)))


def signature_similarity(left: str, right: str) -> float | None:
    """Estimated word Jaccard of two described items, or None when either has no description."""
    if not left or not right:
        return None
    pairs = list(zip(_unb64(left), _unb64(right), strict=True))
    return sum(a == b for a, b in pairs) / len(pairs)


def _letters_by_code_sum(letters: set[str]) -> dict[int, list[str]]:
    """The letters a typo may use, by code point modulo 256: those of :data:`_TYPO_LETTERS` and ``letters``."""
    by_sum: dict[int, list[str]] = {}
    for letter in sorted(_TYPO_LETTER_SET | letters):
        by_sum.setdefault(ord(letter) % 256, []).append(letter)
    return by_sum


_TYPO_LETTER_SET: Final = frozenset(_TYPO_LETTERS)
_TYPO_LETTERS_BY_CODE_SUM: Final = _letters_by_code_sum(set())


def _one_edit_sources(word: str, code_sum: int) -> Iterator[str]:
    """The words a single deleted, transposed, replaced or inserted letter away from ``word`` that have its
    digits and whose code points sum to ``code_sum`` (modulo 256): the sum leaves a few dozen to try rather
    than hundreds.

    Digits are never deleted, inserted or replaced, nor a letter inserted between two of them: a changed number
    is another version, not a typo. Skipping those edits up front makes a number that differs cheap to reject.
    """
    shift = (code_sum - _code_sum(word)) % 256
    digits = _DIGITS.findall(word)
    extra = {c for c in word if c.isalpha()} - _TYPO_LETTER_SET
    letters = _letters_by_code_sum(extra) if extra else _TYPO_LETTERS_BY_CODE_SUM
    if shift == 0:
        for i in range(len(word) - 1):
            swapped = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            if not (word[i].isdigit() or word[i + 1].isdigit()) or _DIGITS.findall(swapped) == digits:
                yield swapped
    for i, old in enumerate(word):
        if old.isdigit():
            continue
        if (ord(old) + shift) % 256 == 0:
            yield word[:i] + word[i + 1 :]
        for new in letters.get((ord(old) + shift) % 256, ()):
            if new != old:
                yield word[:i] + new + word[i + 1 :]
    for new in letters.get(shift, ()):
        for i in range(len(word) + 1):
            if 0 < i < len(word) and word[i - 1].isdigit() and word[i].isdigit():
                continue
            yield word[:i] + new + word[i:]


def typo_source(word: str, stored_hash: bytes) -> str | None:
    """The word one edit from ``word`` whose :func:`word_hash` is ``stored_hash``, if ``word`` is a typo of
    it: a word of 4+ letters with the same digits."""
    if len(word) < MIN_TYPO_WORD - 1:
        return None
    for source in _one_edit_sources(word, stored_hash[0]):
        if word_hash(source) == stored_hash:
            long_enough = max(len(source), len(word)) >= MIN_TYPO_WORD
            return source if long_enough and _DIGITS.findall(source) == _DIGITS.findall(word) else None
    return None


def _compact_time(event_time: float) -> float | int:
    """The event time to the millisecond (Kafka's resolution), as an int when it is whole: fewer bytes."""
    rounded = round(float(event_time), 3)
    return int(rounded) if rounded.is_integer() else rounded


def _packed_length(words: int) -> int:
    """Length of the base64url (unpadded) of ``words`` word hashes."""
    return -(-_WORD_HASH_BYTES * words * 4 // 3)


@functools.lru_cache(maxsize=8192)
def _stored_hash_counts(packed: str) -> Counter[bytes]:
    """The word hashes of a stored title, counted. Cached: the titles in busy buckets are compared again and
    again."""
    raw = _unb64(packed)
    return Counter(raw[i : i + _WORD_HASH_BYTES] for i in range(0, len(raw), _WORD_HASH_BYTES))


@dataclass(frozen=True)
class _Incoming:
    """A title being checked, as the near tier compares it."""

    words: list[str]
    """Its words in order, repeats included: a typo in one of two "learning"s replaces one of them."""
    hashes: list[bytes]
    """The :func:`word_hash` of each word."""
    counts: Counter[bytes]
    """How often each hash occurs."""
    signature: str
    """The :func:`description_signature` of its description."""


class DedupeIndex:
    """Titles seen within the TTL, kept in ``store`` (see the module docstring for its layout).

    Its LSH buckets are indexed from ``store`` when it is made and kept up to date by its own writes: keep one
    index per store, and make a new one when the store may have been written by someone else.
    """

    def __init__(self, store: MutableMapping[str, Any], ttl_seconds: float) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.buckets = index_buckets(store)

    def check_and_add(self, event_id: str, title: str, description: str | None, event_time: float) -> DedupeVerdict:
        """Judge a title against those seen within the TTL before ``event_time``; remember it if it is new.

        A replay of the stored event itself (same id) is not a duplicate; a duplicate never replaces its
        original. A title with no words at all is never a duplicate and is not remembered.
        """
        words = title_words(title)
        normalized = " ".join(sorted(set(words)))
        digest = _key_digest(normalized)
        key, ref = digest.hex(), _b64(digest)
        unique = DedupeVerdict(key, None, None, 0.0)
        if not normalized:
            return unique
        first = entry_fields(self.store.get(ref))
        if first is not None and self._fresh(first, event_time):
            if len(first) == _NEAR_COPY_FIELDS:
                if self._live_copy(first, event_time):
                    return DedupeVerdict(key, str(first[0]), "near", float(first[5]))
            elif first[0] == event_id:
                return unique
            else:
                return DedupeVerdict(key, str(first[0]), "exact", 1.0)
        hashes = [word_hash(word) for word in words]
        incoming = _Incoming(words, hashes, Counter(hashes), description_signature(description))
        buckets = bucket_ids(normalized.split())
        near = self._near(event_id, ref, buckets, incoming, event_time)
        if near is not None:
            original, original_ref, similarity = near
            self.store[ref] = _copy_value(original, event_time, original_ref, similarity)
            return DedupeVerdict(key, original, "near", similarity)
        packed = _b64(b"".join(sorted(incoming.hashes)))
        self.store[ref] = _title_value(event_id, event_time, packed, incoming.signature, _pack_buckets(buckets))
        _add_ref(self.buckets, buckets, ref)
        return unique

    def expire(self, now: float) -> int:
        """Delete titles whose event time is more than the TTL before ``now``, and their bucket refs; returns
        the number of titles deleted. Keys of any other shape (state of an older layout) are deleted too."""
        removed = 0
        live: set[str] = set()
        copies: list[tuple[str, list[Any]]] = []
        for key in list(self.store):
            entry = entry_fields(self.store.get(key)) if len(key) == _REF_CHARS else None
            if entry is None:
                if key in self.store:
                    del self.store[key]
                continue
            if len(entry) == _NEAR_COPY_FIELDS:
                copies.append((key, entry))
            elif self._fresh(entry, now):
                live.add(key)
            else:
                del self.store[key]
                removed += 1
        for key, entry in copies:
            if not self._live_copy(entry, now):
                del self.store[key]
        for bucket, refs in list(self.buckets.items()):
            kept = [ref for ref in _split_refs(refs) if ref in live]
            if not kept:
                del self.buckets[bucket]
            elif len(kept) * _REF_CHARS < len(refs):
                self.buckets[bucket] = "".join(kept)
        return removed

    def _fresh(self, entry: list[Any], event_time: float) -> bool:
        return bool(entry[1] + self.ttl_seconds >= event_time)

    def _live_copy(self, copy: list[Any], event_time: float) -> bool:
        """Whether a near copy's entry still stands: it and its original are fresh, and the original's ref still
        holds that original (a title seen again after its TTL is stored anew, under another event)."""
        original = entry_fields(self.store.get(copy[4]))
        if original is None or len(original) == _NEAR_COPY_FIELDS or original[0] != copy[0]:
            return False
        return self._fresh(copy, event_time) and self._fresh(original, event_time)

    def _near(
        self, event_id: str, ref: str, buckets: list[int], incoming: _Incoming, event_time: float
    ) -> tuple[str, str, float] | None:
        """The first-seen title in ``buckets`` confirmed as one typo away: (its event id, its ref, similarity)."""
        candidates: set[str] = set()
        for bucket in buckets:
            candidates.update(_split_refs(self.buckets.get(bucket, "")))
        candidates.discard(ref)
        confirmed: list[tuple[float, float, str, str]] = []
        for candidate in sorted(candidates):
            entry = entry_fields(self.store.get(candidate))
            if entry is None or len(entry) == _NEAR_COPY_FIELDS:
                continue  # gone, or the ref was reused by a near copy (its title expired and came back as one)
            if entry[0] == event_id or not self._fresh(entry, event_time):
                continue
            similarity = self._confirm(incoming, entry)
            if similarity is not None:
                confirmed.append((entry[1], -similarity, str(entry[0]), candidate))
        if not confirmed:
            return None
        _, negative_similarity, original, original_ref = min(confirmed)
        return original, original_ref, round(-negative_similarity, 4)

    @staticmethod
    def _confirm(incoming: _Incoming, entry: list[Any]) -> float | None:
        """The title similarity if ``incoming`` is one typo from the stored entry and the descriptions agree."""
        if len(entry[2]) != _packed_length(len(incoming.hashes)):
            return None  # a typo keeps the number of words
        stored = _stored_hash_counts(entry[2])
        if len(stored) == len(incoming.hashes) == len(incoming.counts):  # no repeated word: key sets will do
            added = incoming.counts.keys() - stored.keys()
            if len(added) != 1:
                return None  # a typo replaces one word: here more differ
            dropped = stored.keys() - incoming.counts.keys()
        else:
            added_counts = incoming.counts - stored
            if added_counts.total() != 1:
                return None
            added, dropped = set(added_counts), set(stored - incoming.counts)
        new_word = incoming.words[incoming.hashes.index(next(iter(added)))]
        old_word = typo_source(new_word, next(iter(dropped)))
        if old_word is None:
            return None
        old_words = Counter(incoming.words) - Counter([new_word]) + Counter([old_word])
        similarity = jaccard(letter_pairs(list(old_words)), letter_pairs(incoming.words))
        if similarity < NEAR_TITLE_SIMILARITY:
            return None
        described = signature_similarity(incoming.signature, entry[3])
        if described is not None and described < DESCRIPTION_SIMILARITY:
            return None
        return similarity


def _split_refs(refs: str) -> list[str]:
    return [refs[i : i + _REF_CHARS] for i in range(0, len(refs), _REF_CHARS)]
